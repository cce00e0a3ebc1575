"""The one GraphQL error type: a message and a stable ``extensions.code`` (plus what a code's client needs, e.g. the
seconds to wait on RATE_LIMITED)."""

from __future__ import annotations

from typing import Any, Literal

from graphql import GraphQLError

from gateway.events.log import CursorExpired

Code = Literal[
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "FORBIDDEN",
    "UNAUTHENTICATED",
    "TIMEOUT",
    "QUERY_TOO_COSTLY",
    "RATE_LIMITED",
    "COST_RATE_LIMITED",
    "CURSOR_EXPIRED",
]


class ApiError(GraphQLError):
    def __init__(self, message: str, code: Code, **details: Any) -> None:
        super().__init__(message, extensions={"code": code, **details})


def is_unauthenticated(result: Any) -> bool:
    """Whether an execution result only says the request carried no valid key (the budget's refusals wait in
    gateway.graphql.budget; this one is found by the fields, so the HTTP view makes it wait)."""
    errors = getattr(result, "errors", None)
    if not errors or getattr(result, "data", None) is not None:
        return False
    return all((error.extensions or {}).get("code") == "UNAUTHENTICATED" for error in errors)


def not_found(what: str, object_id: str) -> ApiError:
    # Another tenant's id answers exactly like a missing one.
    return ApiError(f"{what} {object_id} not found", "NOT_FOUND")


def bad_input(message: str) -> ApiError:
    return ApiError(message, "BAD_USER_INPUT")


def cursor_expired(expired: CursorExpired) -> ApiError:
    """Resuming (``Query.events`` or ``directoryEvents`` ``after``) below what the event retention kept."""
    return ApiError(
        f"The events after cursor {expired.cursor} are older than the event retention and were pruned: re-read the "
        "directory (its users and groups), then resume from the newest event",
        "CURSOR_EXPIRED",
        oldestCursor=str(expired.oldest),
    )
