"""The one JSON codec (orjson): request bodies, responses and JSON columns all go through it."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps_bytes(value: Any) -> bytes:
    return orjson.dumps(value)


def dumps(value: Any) -> str:
    # JSON columns want text (SQLite would store bytes as a BLOB).
    return orjson.dumps(value).decode()


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
