"""Operator input to the operations (names, domains) and the two ways an operation refuses it."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

_Model = TypeVar("_Model")


class InvalidInput(Exception):
    """Invalid input to an operation; the message is safe to show to the caller."""


class NotFound(InvalidInput):
    """The object does not exist (or is outside the caller's scope, which must look the same)."""


def clean_name(name: str, what: str) -> str:
    """``name`` without surrounding blanks; refused when empty or longer than 255 characters."""
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInput(f"{what} name must not be empty")
    if len(cleaned) > 255:
        raise InvalidInput(f"{what} name must be at most 255 characters")
    return cleaned


def get_or_not_found(session: Session, model: type[_Model], object_id: str, what: str, *, lock: bool = False) -> _Model:
    """The ``model`` row an operator named by id, refused with ``NotFound`` (``"<what> <id> not found"``) when
    missing; ``lock`` takes its row lock (``FOR UPDATE`` on PostgreSQL) for an operation that must come first."""
    found = session.get(model, object_id, with_for_update=lock)
    if found is None:
        raise NotFound(f"{what} {object_id} not found")
    return found
