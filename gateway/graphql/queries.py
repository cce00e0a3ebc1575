"""Root queries. Every object is checked against the API key's organization; another tenant's id answers exactly
like a missing one (NOT_FOUND)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry
from sqlalchemy import select
from sqlmodel import col

from gateway.events.log import CursorExpired, check_retained
from gateway.graphql.context import Info
from gateway.graphql.errors import bad_input, cursor_expired, not_found
from gateway.graphql.event_scope import event_scope
from gateway.graphql.pagination import Connection, PageRequest, connection_field, decode_cursor, resolve_connection
from gateway.graphql.types import ApiKey, Directory, DirectoryGroup, DirectoryUser, Event, Node, Organization, table_of
from gateway.graphql.viewer import Viewer, resolve_api_keys, resolve_viewer
from gateway.store import models
from gateway.store.ids import has_prefix


async def visible_directory(info: Info, directory_id: str) -> models.Directory:
    principal = info.context.principal  # authenticate before looking anything up: ids must not leak
    row = await info.context.loaders.directory.load(directory_id)
    if row is None or not principal.can_see(row.organization_id):
        raise not_found("Directory", directory_id)
    return row


async def _get(info: Info, model: type[Any], object_id: str) -> Any:
    """The row with this id, or None if there is none or it is another tenant's."""
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


async def _visible(info: Info, model: type[Any], object_id: str, what: str) -> Any:
    row = await _get(info, model, object_id)
    if row is None:
        raise not_found(what, object_id)
    return row


def _utc(value: datetime, name: str) -> datetime:
    """A DateTime argument in UTC, as the store keeps time (no offset: taken as UTC)."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise bad_input(f"{name} is out of range") from None


@strawberry.type
class Query:
    viewer: Viewer = strawberry.field(resolver=resolve_viewer, description="The API key making this request.")
    api_keys: list[ApiKey] = strawberry.field(
        resolver=resolve_api_keys,
        description="API keys this key may manage (admin: all; organization key: its organization's), oldest first.",
    )

    @connection_field()
    async def organizations(self, info: Info, page: PageRequest) -> Connection[Organization]:
        principal = info.context.principal
        statement = select(table_of(models.Organization))
        if not principal.is_admin:
            statement = statement.where(col(models.Organization.id) == principal.organization_id)
        key = col(models.Organization.id)
        return await resolve_connection(info, statement, key=key, page=page, node=Organization.from_row)

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
        return DirectoryUser.from_row(await _visible(info, models.DirectoryUser, str(id), "Directory user"))

    @strawberry.field
    async def directory_group(self, info: Info, id: strawberry.ID) -> DirectoryGroup:
        info.context.principal  # noqa: B018
        return DirectoryGroup.from_row(await _visible(info, models.DirectoryGroup, str(id), "Directory group"))

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

    @connection_field(description="The change log, in order; resume with `after` = the last edge's cursor.")
    async def events(
        self,
        info: Info,
        organization_id: strawberry.ID | None = None,
        directory_id: strawberry.ID | None = None,
        events: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        page: PageRequest,
    ) -> Connection[Event]:
        scope = await event_scope(
            info, organization_id=organization_id, directory_id=directory_id, events=events, deleted_directories=True
        )
        if page.after is not None:
            after = int(decode_cursor(page.after, numeric=True))
            try:
                await info.context.database.query(lambda session: check_retained(session, after=after))
            except CursorExpired as expired:
                raise cursor_expired(expired) from None
        statement = select(table_of(models.Event)).where(*scope.where())
        if since is not None:
            statement = statement.where(col(models.Event.created_at) >= _utc(since, "since"))
        if until is not None:
            statement = statement.where(col(models.Event.created_at) < _utc(until, "until"))
        key = col(models.Event.cursor)
        return await resolve_connection(info, statement, key=key, page=page, node=Event.from_row, numeric=True)
