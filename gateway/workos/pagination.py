"""Keyset pages in WorkOS's list envelope: ``WHERE key > cursor ORDER BY key LIMIT n+1``, never OFFSET, so a deep
page costs what the first one does. ULID ids sort by creation time, which is WorkOS's order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

from gateway.workos.params import PageRequest


@dataclass(frozen=True)
class Page:
    """The rows of one page and WorkOS's ``list_metadata`` cursors (None at either end of the list)."""

    rows: Sequence[Any]
    before: str | None
    after: str | None

    def envelope(self, render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """``{"object": "list", "data": [...], "list_metadata": {"before", "after"}}``."""
        return {
            "object": "list",
            "data": [render(row) for row in self.rows],
            "list_metadata": {"before": self.before, "after": self.after},
        }


def keyset_page(
    session: Session,
    statement: Select[Any],
    *,
    key: Any,
    limit: int,
    descending: bool,
    after: Any = None,
    before: Any = None,
    cursor_of: Callable[[Any], str] = lambda row: str(row.id),
) -> Page:
    """A page of ``statement``'s rows ordered by ``key``: the ``limit`` rows following key value ``after`` (or
    preceding ``before``) in the list's order; ``cursor_of`` gives a row's public cursor for ``list_metadata``."""

    def follows(value: Any) -> Any:  # the rows after ``value`` in list order
        return key < value if descending else key > value

    def precedes(value: Any) -> Any:
        return key > value if descending else key < value

    forward = before is None
    if forward:
        query = statement.where(follows(after)) if after is not None else statement
        ordering = key.desc() if descending else key.asc()
    else:
        query = statement.where(precedes(before))
        ordering = key.asc() if descending else key.desc()
    fetched = list(session.execute(query.order_by(ordering).limit(limit + 1)).all())
    more = len(fetched) > limit
    rows = fetched[:limit] if forward else list(reversed(fetched[:limit]))
    if not rows:
        return Page(rows=[], before=None, after=None)

    def exists(condition: Any) -> bool:
        return session.execute(statement.where(condition).with_only_columns(key).limit(1)).first() is not None

    first, last = getattr(rows[0], key.key), getattr(rows[-1], key.key)
    has_before = exists(precedes(first)) if forward else more
    has_after = more if forward else exists(follows(last))
    return Page(
        rows=rows,
        before=cursor_of(rows[0]) if has_before else None,
        after=cursor_of(rows[-1]) if has_after else None,
    )


def requested_page(
    session: Session,
    statement: Select[Any],
    *,
    key: Any,
    request: PageRequest,
    key_of: Callable[[str], Any] = lambda cursor: cursor,
    cursor_of: Callable[[Any], str] = lambda row: str(row.id),
) -> Page:
    """The page a WorkOS list request asks for; ``key_of`` turns a public cursor into its ``key`` value (an object
    id is its own key; an event id stands for its log cursor). ``normal`` lists newest first, but its ``after``
    means newer and ``before`` older, in the request and in ``list_metadata`` alike."""
    after, before = request.list_cursors()
    page = keyset_page(
        session,
        statement,
        key=key,
        limit=request.limit,
        descending=request.descending,
        after=key_of(after) if after is not None else None,
        before=key_of(before) if before is not None else None,
        cursor_of=cursor_of,
    )
    if request.order == "normal":
        return Page(rows=page.rows, before=page.after, after=page.before)
    return page
