"""Reading store rows into GraphQL objects: what every type's ``from_row`` and related-object field needs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from gateway.graphql.errors import ApiError

R = TypeVar("R")


def exists(row: R | None) -> R:
    """A related row (held by a foreign key): missing only if it was deleted while the request ran."""
    if row is None:
        raise ApiError("The object was deleted while the request ran", "NOT_FOUND")
    return row


def utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the store keeps UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
