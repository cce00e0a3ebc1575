"""Which events a caller asked for and may see: the ``organizationId`` / ``directoryId`` / ``events`` arguments that
``Query.events`` and ``Subscription.directoryEvents`` share, checked the same way for both (another tenant's id
answers exactly like a missing one: NOT_FOUND)."""

from __future__ import annotations

import strawberry
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.filter import EventFilter
from gateway.graphql.context import Info
from gateway.graphql.errors import not_found
from gateway.graphql.types.event import event_names
from gateway.store import models


def _directory_owner(session: Session, directory_id: str, *, deleted_too: bool) -> str | None:
    owner = session.scalar(
        select(col(models.Directory.organization_id)).where(col(models.Directory.id) == directory_id)
    )
    if owner is None and deleted_too:
        # A deleted directory keeps its events: they say whose it was.
        owner = session.scalar(
            select(col(models.Event.organization_id)).where(col(models.Event.directory_id) == directory_id).limit(1)
        )
    return owner


async def event_scope(
    info: Info,
    *,
    organization_id: strawberry.ID | None,
    directory_id: strawberry.ID | None,
    events: list[str] | None,
    deleted_directories: bool,
) -> EventFilter:
    """The scope the arguments name, refused with NOT_FOUND where the caller may not look. ``deleted_directories``:
    a directory id known only from the log (deleted since) is accepted, for reading the log; a subscription wants a
    live directory.

    The directory is looked up afresh, not through the DataLoaders: a WebSocket connection's context (and its
    loaders) lives as long as the connection."""
    principal = info.context.principal
    scope = principal.organization_id
    if organization_id is not None:
        if not principal.can_see(str(organization_id)):
            raise not_found("Organization", str(organization_id))
        scope = str(organization_id)
    wanted = str(directory_id) if directory_id is not None else None
    if wanted is not None:
        # No id holds a NUL (PostgreSQL text cannot): such an id is simply not found, on every store.
        owner = (
            None
            if "\x00" in wanted
            else await info.context.database.query(
                lambda session: _directory_owner(session, wanted, deleted_too=deleted_directories)
            )
        )
        # An unknown id answers like another tenant's directory (an empty page would tell the two apart).
        if owner is None or not principal.can_see(owner):
            raise not_found("Directory", wanted)
    return EventFilter(organization_id=scope, directory_id=wanted, names=event_names(events))
