"""Query parameters of the WorkOS list endpoints: WorkOS's pagination (``limit``, ``order``, ``before``, ``after``)
and the filters, each refused with a 422 naming the parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from starlette.datastructures import QueryParams

from gateway.workos.errors import invalid

MAX_LIMIT = 100
DEFAULT_LIMIT = 10

Order = Literal["asc", "desc", "normal"]


@dataclass(frozen=True)
class PageRequest:
    """One page as asked: ``after`` / ``before`` are object ids, meaning the objects that follow / precede that one
    in the list's order (for ``normal``: newer / older, WorkOS's reversed cursor semantics)."""

    limit: int
    order: Order
    before: str | None
    after: str | None

    @property
    def descending(self) -> bool:
        return self.order != "asc"

    def list_cursors(self) -> tuple[str | None, str | None]:
        """``(after, before)`` in list-order terms: ``normal`` lists newest first but pages like ``asc``."""
        if self.order == "normal":
            return self.before, self.after
        return self.after, self.before


def text(params: QueryParams, name: str) -> str | None:
    """A string parameter, None when absent or empty (the SDKs drop empty values too)."""
    value = params.get(name)
    if value is None or value == "":
        return None
    # No id, name or email holds a NUL (PostgreSQL text cannot): refused the same way on every store.
    if "\x00" in value:
        raise invalid(name, f"{name} must not contain NUL characters")
    return value


def page_request(params: QueryParams, *, default_order: Order = "desc") -> PageRequest:
    """``limit`` (1 to 100, default 10), ``order`` (``asc``, ``desc``, ``normal``), ``before`` xor ``after``."""
    raw_limit = text(params, "limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise invalid("limit", f"limit must be an integer between 1 and {MAX_LIMIT}")
        limit = int(raw_limit)
    order = text(params, "order") or default_order
    if order not in ("asc", "desc", "normal"):
        raise invalid("order", "order must be one of asc, desc, normal")
    before, after = text(params, "before"), text(params, "after")
    if before is not None and after is not None:
        raise invalid("before", "pass either before or after, not both")
    return PageRequest(limit=limit, order=order, before=before, after=after)  # type: ignore[arg-type]


def names(params: QueryParams, name: str) -> list[str] | None:
    """A list parameter: comma-separated (what both SDKs send), repeated, or as ``name[]``."""
    values = [*params.getlist(name), *params.getlist(f"{name}[]")]
    found = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if any("\x00" in value for value in found):
        raise invalid(name, f"{name} must not contain NUL characters")
    return found or None


def timestamp(params: QueryParams, name: str) -> datetime | None:
    """An ISO 8601 timestamp parameter (``Z`` or an offset; naive means UTC)."""
    value = text(params, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid(name, f"{name} must be an ISO 8601 timestamp, e.g. 2026-01-31T12:00:00.000Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
