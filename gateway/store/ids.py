"""Prefixed, sortable identifiers: ``org_01J…``, ``directory_user_01J…``."""

from __future__ import annotations

from typing import Literal

from ulid import ULID

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


def new_id(prefix: Prefix) -> str:
    """A new public id for an object of that kind; ids sort by creation time (ULID)."""
    return f"{prefix}_{ULID()}"


def has_prefix(value: str, prefix: Prefix) -> bool:
    """True when ``value`` is ``prefix_`` followed by a 26-character ULID (and not a longer prefix's id)."""
    head, _, tail = value.rpartition("_")
    return head == prefix and len(tail) == 26
