"""``Event``: one entry of the change log, with the user or group it recorded (``EventUser``, ``EventGroup``), read
through the typed payloads of gateway.events.payloads; and the ``events`` name filter."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from gateway.events.payloads import EventName, GroupData, UserData, group_of, user_of
from gateway.graphql.errors import bad_input
from gateway.graphql.types.enums import UserState
from gateway.graphql.types.rows import utc
from gateway.store import models


def _slug(role: Any) -> str | None:
    return role.get("slug") if isinstance(role, dict) else None


@strawberry.type
class EventUser:
    id: strawberry.ID
    idp_id: str | None
    user_name: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    state: UserState
    role: str | None = strawberry.field(description="The role's slug as the event recorded it.")
    roles: list[str]

    @classmethod
    def from_payload(cls, payload: UserData) -> EventUser:
        # .get: the log keeps events as they were written, and an old entry may lack a field written today.
        return cls(
            id=strawberry.ID(payload["id"]),
            idp_id=payload.get("idp_id"),
            user_name=payload.get("username"),
            email=payload.get("email"),
            first_name=payload.get("first_name"),
            last_name=payload.get("last_name"),
            state=UserState(payload.get("state", "active")),
            role=_slug(payload.get("role")),
            roles=[r["slug"] for r in payload.get("roles") or () if isinstance(r, dict) and "slug" in r],
        )


@strawberry.type
class EventGroup:
    id: strawberry.ID
    idp_id: str | None
    name: str

    @classmethod
    def from_payload(cls, payload: GroupData) -> EventGroup:
        return cls(id=strawberry.ID(payload["id"]), idp_id=payload.get("idp_id"), name=payload.get("name", ""))


@strawberry.type
class Event:
    id: strawberry.ID
    cursor: str
    event: str
    occurred_at: datetime
    organization_id: strawberry.ID
    directory_id: strawberry.ID | None
    data: JSON
    # Set on events the pump hands to many subscribers: their executions are shared (gateway.graphql.execution).
    shared_results: strawberry.Private[dict[Any, Any] | None] = None

    @classmethod
    def from_row(cls, row: models.Event, *, shared: bool = False) -> Event:
        return cls(
            id=strawberry.ID(row.id),
            cursor=str(row.cursor),
            event=row.event,
            occurred_at=utc(row.created_at),
            organization_id=strawberry.ID(row.organization_id),
            directory_id=strawberry.ID(row.directory_id) if row.directory_id else None,
            data=JSON(row.data),
            shared_results={} if shared else None,
        )

    @strawberry.field(description="The user as the event recorded it (user events and memberships).")
    def user(self) -> EventUser | None:
        user = user_of(self.event, cast(dict[str, Any], self.data))
        return EventUser.from_payload(user) if user is not None else None

    @strawberry.field(description="The group as the event recorded it (group events and memberships).")
    def group(self) -> EventGroup | None:
        group = group_of(self.event, cast(dict[str, Any], self.data))
        return EventGroup.from_payload(group) if group is not None else None


def event_names(events: list[str] | None) -> frozenset[str] | None:
    """The `events` filter: None for every event; a name no event has is refused (a typo would otherwise match
    nothing, silently)."""
    if not events:
        return None
    unknown = sorted(set(events) - {name.value for name in EventName})
    if unknown:
        valid = ", ".join(name.value for name in EventName)
        raise bad_input(f"unknown event name(s) {', '.join(map(repr, unknown))}; valid names: {valid}")
    return frozenset(events)
