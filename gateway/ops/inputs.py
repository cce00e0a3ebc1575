"""Operator input to the operations (names, domains) and the two ways an operation refuses it."""

from __future__ import annotations


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
