"""The event log: the single place that writes change events and reads them back in cursor order.

Events are written in the same transaction as the change they describe, so the log never claims a change that was
rolled back and never misses one that committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from gateway.events.payloads import EventData, EventName, stored
from gateway.store.batch_driver import asyncpg_statements, string_literal
from gateway.store.grouped_writer import defer_rows, insert_rows
from gateway.store.ids import new_id
from gateway.store.models import Event, utcnow
from gateway.store.serialization import dumps

# ``session.info`` key: events recorded in the session's transaction, counted as written once it commits.
EVENTS_RECORDED = "dsync.events_recorded"

# Built once: a Core statement executed with parameters hits SQLAlchemy's compiled cache directly, where an
# ORM-enabled insert(...).values(...) per call costs about three times as much CPU.
_EVENTS = Event.__table__  # type: ignore[attr-defined]
_INSERT_EVENT = _EVENTS.insert()


def record_event(
    session: Session,
    *,
    event: EventName,
    organization_id: str,
    directory_id: str | None,
    data: EventData,
) -> None:
    """Append one event, in the caller's transaction."""
    record_events(session, organization_id=organization_id, directory_id=directory_id, events=[(event, data)])


def record_events(
    session: Session,
    *,
    organization_id: str,
    directory_id: str | None,
    events: Sequence[tuple[EventName, EventData]],
) -> None:
    """Append events in order, in the caller's transaction (one statement however many)."""
    if not events:
        return
    now = utcnow()
    rows = [
        {
            "id": new_id("event"),
            "event": name.value,
            "organization_id": organization_id,
            "directory_id": directory_id,
            "data": stored(data),  # encoded once: the insert writes it as it is
            "created_at": now,
        }
        for name, data in events
    ]
    if session.get_bind().dialect.name == "postgresql":
        defer_rows(session, _insert_in_commit_order, rows, table=_EVENTS, with_commit=_in_commit_order_inlined)
    else:
        insert_rows(session, _INSERT_EVENT, rows)  # SQLite has a single writer: cursors follow commits anyway
    session.info[EVENTS_RECORDED] = session.info.get(EVENTS_RECORDED, 0) + len(rows)


_EVENT_LOCK = 0x64_73_79_6E_63  # "dsync"
# The rows as one JSON array, one element per event: one statement and one parameter (one round trip, prepared by
# the driver after a few uses, serialized by one ``dumps``: arrays of text were dumped element by element in Python)
# for a whole batch's events, whatever their number. The advisory lock is taken in the same statement, before any
# row exists (the join produces a row only once the lock is held), so the cursors (nextval, computed above the
# join) are assigned under it, in the rows' order.
_EVENTS_FROM_ROWS = (
    "INSERT INTO events (id, event, organization_id, directory_id, data, created_at) "
    "SELECT e.item->>'id', e.item->>'event', e.item->>'organization_id', e.item->>'directory_id', e.item->'data', "
    "CAST(e.item->>'created_at' AS TIMESTAMPTZ) "
    f"FROM (SELECT pg_advisory_xact_lock({_EVENT_LOCK})) AS sequenced, "
    "jsonb_array_elements(CAST({rows} AS JSONB)) WITH ORDINALITY AS e(item, position) "
    "ORDER BY e.position"
)
_INSERT_EVENTS_IN_ORDER = text(_EVENTS_FROM_ROWS.format(rows=":rows"))


def _in_commit_order_inlined(rows: list[dict[str, Any]]) -> str:
    """``_insert_in_commit_order``'s statement with the rows inlined, for a batch to send with its COMMIT: the lock
    is then held for that one round trip only."""
    return _EVENTS_FROM_ROWS.format(rows=string_literal(dumps(rows)))


def _insert_in_commit_order(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: transactions that write events hold one advisory lock until they commit, so cursors are assigned
    in commit order: a reader that has seen cursor N never later meets a new event below N. (SQLite has a single
    writer already.) A grouped transaction writes its events at its very end (``defer_rows``), so the lock is held
    for that insert and the commit only, not for the whole transaction."""
    # ``created_at`` is timezone-aware: its JSON text (RFC 3339, microseconds) is the same instant.
    statements = asyncpg_statements(connection)  # straight on the batch's asyncpg connection when it is one
    if statements is not None:
        statements.rows(_INSERT_EVENTS_IN_ORDER, {"rows": dumps(rows)})
    else:
        connection.execute(_INSERT_EVENTS_IN_ORDER, {"rows": dumps(rows)})


def read_events_after(session: Session, *, after: int, where: Sequence[Any] = (), limit: int) -> list[Any]:
    """Up to ``limit`` event rows with a cursor above ``after`` that meet every SQL condition in ``where`` (see
    ``EventFilter.where``), in cursor order: the way to replay the log and to catch up with it."""
    statement = select(_EVENTS).where(_EVENTS.c.cursor > after, *where).order_by(_EVENTS.c.cursor).limit(limit)
    return list(session.execute(statement).all())


def log_head(session: Session) -> int:
    """The highest cursor in the log (0 while it is empty)."""
    return session.scalar(select(func.max(_EVENTS.c.cursor))) or 0


class CursorExpired(ValueError):
    """A reader asked to resume after a cursor whose successors were pruned (older than the retention): what it
    missed is gone from the log, so it must re-read the directory and resume from the log's current head."""

    def __init__(self, cursor: int, oldest: int) -> None:
        super().__init__(f"events after cursor {cursor} were pruned; the oldest retained event has cursor {oldest}")
        self.cursor = cursor
        self.oldest = oldest


def check_retained(session: Session, *, after: int) -> None:
    """Raise ``CursorExpired`` when events right after ``after`` were pruned. ``after`` 0 (from the start of what is
    kept) is always valid. A cursor just below the oldest kept event lost nothing; one further below did (cursors are
    consecutive but for rolled-back transactions on PostgreSQL, so a rare false alarm only asks for a re-read)."""
    if after <= 0:
        return
    oldest = session.scalar(select(func.min(_EVENTS.c.cursor)))
    if oldest is not None and after < oldest - 1:
        raise CursorExpired(after, oldest)


def prune_events(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` of the oldest events created before ``before``; returns how many. The newest event is
    always kept: it holds the log's head, so cursors are never handed out twice (SQLite would reuse the highest
    rowid) and a resume cursor is never mistaken for an unknown one."""
    head = select(func.max(_EVENTS.c.cursor)).scalar_subquery()
    doomed = (
        select(_EVENTS.c.cursor)
        .where(_EVENTS.c.created_at < before, _EVENTS.c.cursor < head)
        .order_by(_EVENTS.c.cursor)
        .limit(limit)
    )
    cursors = list(session.scalars(doomed))
    if cursors:
        session.execute(_EVENTS.delete().where(_EVENTS.c.cursor.in_(cursors)))
    return len(cursors)
