"""The event log: the single place that writes change events and reads them back in cursor order.

Events are written in the same transaction as the change they describe, so the log never claims a change that was
rolled back and never misses one that committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from gateway.events.payloads import EventData, EventName
from gateway.store.grouped_writer import insert_rows
from gateway.store.ids import new_id
from gateway.store.models import Event, utcnow

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
            "data": data,
            "created_at": now,
        }
        for name, data in events
    ]
    _sequence_events(session)
    insert_rows(session, _INSERT_EVENT, rows)
    session.info[EVENTS_RECORDED] = session.info.get(EVENTS_RECORDED, 0) + len(rows)


_EVENT_LOCK = 0x64_73_79_6E_63  # "dsync"


def _sequence_events(session: Session) -> None:
    """On PostgreSQL, transactions that write events hold one advisory lock until they commit, so cursors are
    assigned in commit order: a reader that has seen cursor N never later meets a new event below N. (SQLite has a
    single writer already.)"""
    if session.info.get("dsync.sequenced") or session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _EVENT_LOCK})
    session.info["dsync.sequenced"] = True


def read_events_after(session: Session, *, after: int, where: Sequence[Any] = (), limit: int) -> list[Any]:
    """Up to ``limit`` event rows with a cursor above ``after`` that meet every SQL condition in ``where`` (see
    ``EventFilter.where``), in cursor order: the way to replay the log and to catch up with it."""
    statement = select(_EVENTS).where(_EVENTS.c.cursor > after, *where).order_by(_EVENTS.c.cursor).limit(limit)
    return list(session.execute(statement).all())


def log_head(session: Session) -> int:
    """The highest cursor in the log (0 while it is empty)."""
    return session.scalar(select(func.max(_EVENTS.c.cursor))) or 0
