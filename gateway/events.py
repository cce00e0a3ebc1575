"""The event log: the single place that writes change events, and WorkOS-compatible payload shapes.

Events are written in the same transaction as the change they describe, so the log never claims a change that was
rolled back and never misses one that committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway.ids import new_id
from gateway.models import Directory, DirectoryGroup, DirectoryUser, Event, Organization, utcnow
from gateway.writes import insert_rows


class EventName(StrEnum):
    ACTIVATED = "dsync.activated"
    DELETED = "dsync.deleted"
    USER_CREATED = "dsync.user.created"
    USER_UPDATED = "dsync.user.updated"
    USER_DELETED = "dsync.user.deleted"
    GROUP_CREATED = "dsync.group.created"
    GROUP_UPDATED = "dsync.group.updated"
    GROUP_DELETED = "dsync.group.deleted"
    GROUP_USER_ADDED = "dsync.group.user_added"
    GROUP_USER_REMOVED = "dsync.group.user_removed"


def iso(value: datetime) -> str:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def directory_payload(directory: Directory, *, organization: Organization | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "object": "directory",
        "id": directory.id,
        "organization_id": directory.organization_id,
        "name": directory.name,
        "type": directory.type,
        "state": directory.state,
        "created_at": iso(directory.created_at),
        "updated_at": iso(directory.updated_at),
    }
    if organization is not None:
        payload["domains"] = [{"object": "organization_domain", "domain": d} for d in organization.domains]
    return payload


def user_payload(user: DirectoryUser, *, organization_id: str) -> dict[str, Any]:
    return {
        "object": "directory_user",
        "id": user.id,
        "directory_id": user.directory_id,
        "organization_id": organization_id,
        "idp_id": user.idp_id,
        "username": user.user_name,
        "email": user.email,
        "emails": user.emails,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "display_name": user.display_name,
        "job_title": user.job_title,
        "state": user.state,
        "custom_attributes": user.custom_attributes,
        "raw_attributes": user.raw_attributes,
        "created_at": iso(user.created_at),
        "updated_at": iso(user.updated_at),
    }


def group_payload(group: DirectoryGroup, *, organization_id: str) -> dict[str, Any]:
    return {
        "object": "directory_group",
        "id": group.id,
        "idp_id": group.idp_id,
        "directory_id": group.directory_id,
        "organization_id": organization_id,
        "name": group.name,
        "raw_attributes": group.raw_attributes,
        "created_at": iso(group.created_at),
        "updated_at": iso(group.updated_at),
    }


_NOT_COMPARED = frozenset({"updated_at", "created_at"})


def previous_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Shallow diff: the old value of every top-level field that changed; for ``raw_attributes`` (and
    ``custom_attributes``) the old values of their changed keys, as WorkOS reports them."""
    previous: dict[str, Any] = {}
    for key, old in before.items():
        if key in _NOT_COMPARED or after.get(key) == old:
            continue
        if isinstance(old, dict) and isinstance(after.get(key), dict):
            new = after[key]
            previous[key] = {k: old.get(k) for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        else:
            previous[key] = old
    return previous


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
    data: dict[str, Any],
) -> None:
    record_events(session, organization_id=organization_id, directory_id=directory_id, events=[(event, data)])


def record_events(
    session: Session,
    *,
    organization_id: str,
    directory_id: str | None,
    events: Sequence[tuple[EventName, dict[str, Any]]],
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


def membership_payload(user: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
    return {"directory_id": group["directory_id"], "user": user, "group": group}
