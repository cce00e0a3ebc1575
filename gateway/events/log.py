"""The event log: the single place that writes change events, and WorkOS-compatible payload shapes.

Events are written in the same transaction as the change they describe, so the log never claims a change that was
rolled back and never misses one that committed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway.events.payloads import EventData, EventName
from gateway.store.grouped_writer import insert_rows
from gateway.store.ids import new_id
from gateway.store.models import Event, utcnow

# ``session.info`` key: events recorded in the session's transaction, counted as written once it commits.
EVENTS_RECORDED = "dsync.events_recorded"

# Built once: a Core statement executed with parameters hits SQLAlchemy's compiled cache directly, where an
# ORM-enabled insert(...).values(...) per call costs about three times as much CPU.
_INSERT_EVENT = Event.__table__.insert()  # type: ignore[attr-defined]


def record_event(
    session: Session,
    *,
    event: EventName,
    organization_id: str,
    directory_id: str | None,
    data: EventData,
) -> None:
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
