"""Root queries. Every object is checked against the API key's organization; another tenant's id answers exactly
like a missing one (NOT_FOUND)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry
from sqlalchemy import select
from sqlmodel import col

from gateway.graphql.context import Info
from gateway.graphql.errors import bad_input, not_found
from gateway.graphql.pagination import Connection, PageRequest, paginate
from gateway.graphql.types import (
    Directory,
    DirectoryGroup,
    DirectoryUser,
    Event,
    Node,
    Organization,
    event_names,
    table_of,
)
from gateway.store import models
from gateway.store.ids import has_prefix


async def visible_directory(info: Info, directory_id: str) -> models.Directory:
    principal = info.context.principal  # authenticate before looking anything up: ids must not leak
    row = await info.context.loaders.directory.load(directory_id)
    if row is None or not principal.can_see(row.organization_id):
        raise not_found("Directory", directory_id)
    return row


async def _get(info: Info, model: type[Any], object_id: str) -> Any:
    row = await info.context.database.query(lambda session: session.get(model, object_id))
    if row is None:
        return None
    directory_id = getattr(row, "directory_id", None)
    if directory_id is not None:
        directory = await info.context.loaders.directory.load(directory_id)
        organization_id = directory.organization_id if directory else None
    else:
        organization_id = getattr(row, "organization_id", None) or row.id
    return row if organization_id is not None and info.context.can_see(organization_id) else None


def _utc(value: datetime, name: str) -> datetime:
    """A DateTime argument in UTC, as the store keeps time (no offset: taken as UTC)."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise bad_input(f"{name} is out of range") from None


@strawberry.type
class Query:
    @strawberry.field
    async def organizations(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Organization]:
        principal = info.context.principal
        statement = select(table_of(models.Organization))
        if not principal.is_admin:
            statement = statement.where(col(models.Organization.id) == principal.organization_id)
        request = PageRequest(first=first, after=after, last=last, before=before)
        key = col(models.Organization.id)
        return await paginate(info.context.database, statement, key, request, node=Organization.from_row)

    @strawberry.field
    async def organization(self, info: Info, id: strawberry.ID) -> Organization:
        info.context.principal  # noqa: B018  (authenticates)
        row = await info.context.loaders.organization.load(str(id))
        if row is None or not info.context.can_see(row.id):
            raise not_found("Organization", str(id))
        return Organization.from_row(row)

    @strawberry.field
    async def directory(self, info: Info, id: strawberry.ID) -> Directory:
        info.context.principal  # noqa: B018
        return Directory.from_row(await visible_directory(info, str(id)))

    @strawberry.field
    async def directory_user(self, info: Info, id: strawberry.ID) -> DirectoryUser:
        info.context.principal  # noqa: B018
        row = await _get(info, models.DirectoryUser, str(id))
        if row is None:
            raise not_found("Directory user", str(id))
        return DirectoryUser.from_row(row)

    @strawberry.field
    async def directory_group(self, info: Info, id: strawberry.ID) -> DirectoryGroup:
        info.context.principal  # noqa: B018
        row = await _get(info, models.DirectoryGroup, str(id))
        if row is None:
            raise not_found("Directory group", str(id))
        return DirectoryGroup.from_row(row)

    @strawberry.field(description="Any object by its prefixed id (org_…, directory_…, directory_user_…, …).")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        info.context.principal  # noqa: B018
        object_id = str(id)
        kinds: list[tuple[str, type[Any], Any]] = [
            ("org", models.Organization, Organization.from_row),
            ("directory", models.Directory, Directory.from_row),
            ("directory_user", models.DirectoryUser, DirectoryUser.from_row),
            ("directory_group", models.DirectoryGroup, DirectoryGroup.from_row),
        ]
        for prefix, model, build in kinds:
            if has_prefix(object_id, prefix):  # type: ignore[arg-type]
                row = await _get(info, model, object_id)
                return build(row) if row is not None else None
        if has_prefix(object_id, "event"):
            row = await info.context.database.query(
                lambda session: session.scalar(select(models.Event).where(col(models.Event.id) == object_id))
            )
            return Event.from_row(row) if row is not None and info.context.can_see(row.organization_id) else None
        raise bad_input(f"{object_id!r} is not an id this API knows")

    @strawberry.field(description="The change log, in order; resume with `after` = the last edge's cursor.")
    async def events(
        self,
        info: Info,
        organization_id: strawberry.ID | None = None,
        directory_id: strawberry.ID | None = None,
        events: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Event]:
        principal = info.context.principal
        statement = select(table_of(models.Event))
        if organization_id is not None:
            if not info.context.can_see(str(organization_id)):
                raise not_found("Organization", str(organization_id))
            statement = statement.where(col(models.Event.organization_id) == str(organization_id))
        if not principal.is_admin:
            statement = statement.where(col(models.Event.organization_id) == principal.organization_id)
        if directory_id is not None:
            wanted = str(directory_id)
            directory = await info.context.loaders.directory.load(wanted)
            owner = directory.organization_id if directory is not None else None
            if directory is None:
                # A deleted directory keeps its events: they say whose it was. An id with neither answers NOT_FOUND
                # like another tenant's directory does (an empty page would tell the two apart).
                owner = await info.context.database.query(
                    lambda session: session.scalar(
                        select(col(models.Event.organization_id))
                        .where(col(models.Event.directory_id) == wanted)
                        .limit(1)
                    )
                )
            if owner is None or not info.context.can_see(owner):
                raise not_found("Directory", wanted)
            statement = statement.where(col(models.Event.directory_id) == wanted)
        names = event_names(events)
        if names is not None:
            statement = statement.where(col(models.Event.event).in_(names))
        if since is not None:
            statement = statement.where(col(models.Event.created_at) >= _utc(since, "since"))
        if until is not None:
            statement = statement.where(col(models.Event.created_at) < _utc(until, "until"))
        request = PageRequest(first=first, after=after, last=last, before=before)
        key = col(models.Event.cursor)
        return await paginate(info.context.database, statement, key, request, node=Event.from_row, numeric=True)
