"""The one JSON codec (orjson): request bodies, responses and JSON columns all go through it."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError  # what ``loads`` raises on invalid JSON
_CODEC_MAX_DEPTH = 254  # the deepest nesting of arrays and objects orjson writes


def dumps_bytes(value: Any) -> bytes:
    """JSON for the wire (response bodies)."""
    return orjson.dumps(value)


# JSON already encoded: ``dumps`` (and so a JSON column's insert) writes its bytes as they are, without encoding the
# value again.
Encoded = orjson.Fragment


def encoded(json_bytes: bytes) -> Encoded:
    """``json_bytes`` (valid JSON, from ``dumps_bytes``) to be written as they are by ``dumps``."""
    return orjson.Fragment(json_bytes)


def dumps(value: Any) -> str:
    """JSON text for the store's JSON columns (the engines' ``json_serializer``)."""
    # JSON columns want text (SQLite would store bytes as a BLOB).
    return orjson.dumps(value).decode()


def canonical(value: Any) -> bytes:
    """One spelling per JSON value (object keys sorted): equal values, equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes | str) -> Any:
    """Decode JSON from a request body or a JSON column (the engines' ``json_deserializer``)."""
    return orjson.loads(data)


def contains_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds U+0000 anywhere (keys too): PostgreSQL text cannot store it, so every
    entry point refuses it the same way on every store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False


def fits_store(value: Any, *, max_depth: int) -> bool:
    """Whether ``value`` nests at most ``max_depth`` arrays/objects and the codec can write it back: what is read
    from a request must be storable (deeper than orjson's own limit it cannot be written at all, and stored
    resources are nested again inside event payloads). Checked in C: serialising ``value`` wrapped in enough lists
    that anything deeper than ``max_depth`` passes the codec's limit."""
    wrapped = value
    for _ in range(_CODEC_MAX_DEPTH - max_depth):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return False
    return True
