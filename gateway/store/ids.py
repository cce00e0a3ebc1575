"""Prefixed, sortable identifiers: ``org_01J…``, ``directory_user_01J…``."""

from __future__ import annotations

import os
import threading
import time
from typing import Literal

Prefix = Literal[
    "org",
    "directory",
    "directory_user",
    "directory_group",
    "event",
    "api_key",
    "webhook_endpoint",
    "setup_link",
    "role",
    "role_mapping",
    "attribute",
    "attribute_mapping",
]  # one per object kind


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # base32 as ULIDs spell it
# Every 10-bit value as its two characters: a ULID's 130 bits (two of them 0) are 13 lookups.
_PAIRS = tuple(high + low for high in _CROCKFORD for low in _CROCKFORD)
_SHIFTS = tuple(range(120, -1, -10))
_RANDOM_BITS = 80
_last = 0  # the last ULID made, as its 128 bits
_lock = threading.Lock()  # ids are made on the event loop and on the database threads


def new_id(prefix: Prefix) -> str:
    """A new public id for an object of that kind; ids sort by creation time (ULID)."""
    return f"{prefix}_{_ulid()}"


def _ulid() -> str:
    """A ULID: 48 bits of Unix milliseconds, then 80 random bits; within one millisecond (or if the clock steps
    back) the previous one plus 1, so ids made by this process never sort before an earlier one. Made here rather
    than by python-ulid's generator: a few times cheaper, and ids are made several times per SCIM write."""
    global _last
    milliseconds = time.time_ns() // 1_000_000
    with _lock:
        if milliseconds <= _last >> _RANDOM_BITS:
            value = _last + 1
        else:
            value = milliseconds << _RANDOM_BITS | int.from_bytes(os.urandom(_RANDOM_BITS // 8))
        _last = value
    return "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])


def has_prefix(value: str, prefix: Prefix) -> bool:
    """True when ``value`` is ``prefix_`` followed by a 26-character ULID (and not a longer prefix's id)."""
    head, _, tail = value.rpartition("_")
    return head == prefix and len(tail) == 26
