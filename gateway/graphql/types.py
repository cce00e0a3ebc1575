"""GraphQL object types over the store's rows. Related objects load through the request's DataLoaders."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar, cast

import strawberry
from sqlalchemy import Select, or_, select
from sqlmodel import col
from strawberry.scalars import JSON

from gateway.events.payloads import EventName
from gateway.graphql.context import Info
from gateway.graphql.errors import ApiError, bad_input
from gateway.graphql.pagination import Connection, PageRequest, paginate
from gateway.ops.directories import directory_endpoint
from gateway.store import models


@strawberry.enum
class DirectoryType(Enum):
    JUMPCLOUD = "jumpcloud scim v2.0"
    OKTA = "okta scim v2.0"
    AZURE = "azure scim v2.0"
    ONELOGIN = "onelogin scim v2.0"
    GENERIC = "generic scim v2.0"


@strawberry.enum
class DirectoryState(Enum):
    UNLINKED = "unlinked"
    LINKED = "linked"


@strawberry.enum
class DeprovisionPolicy(Enum):
    KEEP_INACTIVE = "keep_inactive"
    DELETE_INACTIVE = "delete_inactive"


@strawberry.enum
class UserState(Enum):
    ACTIVE = "active"
    INACTIVE = "inactive"


R = TypeVar("R")


def _exists(row: R | None) -> R:
    # Related rows are held by foreign keys: missing only if deleted mid-request.
    if row is None:
        raise ApiError("The object was deleted while the request ran", "NOT_FOUND")
    return row


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def table_of(model: type[Any]) -> Any:
    # Rows of the table's columns read like the model (attribute access by column name), without ORM instances.
    return model.__table__


def _search(term: str) -> str:
    escaped = term.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def users_statement(
    *, directory_id: str, state: UserState | None = None, group_id: str | None = None, search: str | None = None
) -> Select[Any]:
    statement = select(table_of(models.DirectoryUser)).where(col(models.DirectoryUser.directory_id) == directory_id)
    if state is not None:
        statement = statement.where(col(models.DirectoryUser.state) == state.value)
    if group_id is not None:
        members = select(col(models.GroupMembership.user_id)).where(col(models.GroupMembership.group_id) == group_id)
        statement = statement.where(col(models.DirectoryUser.id).in_(members))
    if search:
        pattern = _search(search)
        statement = statement.where(
            or_(
                *(
                    col(column).ilike(pattern, escape="\\")
                    for column in (
                        models.DirectoryUser.user_name,
                        models.DirectoryUser.email,
                        models.DirectoryUser.first_name,
                        models.DirectoryUser.last_name,
                        models.DirectoryUser.display_name,
                    )
                )
            )
        )
    return statement


def groups_statement(*, directory_id: str, search: str | None = None, member_id: str | None = None) -> Select[Any]:
    statement = select(table_of(models.DirectoryGroup)).where(col(models.DirectoryGroup.directory_id) == directory_id)
    if search:
        statement = statement.where(col(models.DirectoryGroup.name).ilike(_search(search), escape="\\"))
    if member_id is not None:
        groups = select(col(models.GroupMembership.group_id)).where(col(models.GroupMembership.user_id) == member_id)
        statement = statement.where(col(models.DirectoryGroup.id).in_(groups))
    return statement


def _page(first: int | None, after: str | None, last: int | None, before: str | None) -> PageRequest:
    return PageRequest(first=first, after=after, last=last, before=before)


@strawberry.type
class Organization:
    id: strawberry.ID
    name: str
    domains: list[str]
    created_at: datetime

    @classmethod
    def from_row(cls, row: models.Organization) -> Organization:
        return cls(id=strawberry.ID(row.id), name=row.name, domains=list(row.domains), created_at=_utc(row.created_at))

    @strawberry.field
    async def directories(self, info: Info) -> list[Directory]:
        rows = await info.context.loaders.directories_of_organization.load(str(self.id))
        return [Directory.from_row(row) for row in rows]


@strawberry.type
class Directory:
    id: strawberry.ID
    organization_id: strawberry.ID
    name: str
    type: DirectoryType
    state: DirectoryState
    deprovision_policy: DeprovisionPolicy
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: models.Directory) -> Directory:
        return cls(
            id=strawberry.ID(row.id),
            organization_id=strawberry.ID(row.organization_id),
            name=row.name,
            type=DirectoryType(row.type),
            state=DirectoryState(row.state),
            deprovision_policy=DeprovisionPolicy(row.deprovision_policy),
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )

    @strawberry.field(description="The SCIM base URL to paste into the identity provider.")
    def endpoint(self, info: Info) -> str:
        return directory_endpoint(public_url=info.context.settings.public_url, directory_id=str(self.id))

    @strawberry.field
    async def organization(self, info: Info) -> Organization:
        return Organization.from_row(_exists(await info.context.loaders.organization.load(str(self.organization_id))))

    @strawberry.field
    async def user_count(self, info: Info) -> int:
        return (await info.context.loaders.directory_counts.load(str(self.id)))["users"]

    @strawberry.field
    async def active_user_count(self, info: Info) -> int:
        return (await info.context.loaders.directory_counts.load(str(self.id)))["active"]

    @strawberry.field
    async def inactive_user_count(self, info: Info) -> int:
        return (await info.context.loaders.directory_counts.load(str(self.id)))["inactive"]

    @strawberry.field
    async def group_count(self, info: Info) -> int:
        return (await info.context.loaders.directory_counts.load(str(self.id)))["groups"]

    @strawberry.field
    async def users(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        state: UserState | None = None,
        group_id: strawberry.ID | None = None,
        search: str | None = None,
    ) -> Connection[DirectoryUser]:
        statement = users_statement(
            directory_id=str(self.id), state=state, group_id=str(group_id) if group_id else None, search=search
        )
        return await paginate(
            info.context.database,
            statement,
            col(models.DirectoryUser.id),
            _page(first, after, last, before),
            node=DirectoryUser.from_row,
        )

    @strawberry.field
    async def groups(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        search: str | None = None,
        member_id: strawberry.ID | None = None,
    ) -> Connection[DirectoryGroup]:
        statement = groups_statement(
            directory_id=str(self.id), search=search, member_id=str(member_id) if member_id else None
        )
        return await paginate(
            info.context.database,
            statement,
            col(models.DirectoryGroup.id),
            _page(first, after, last, before),
            node=DirectoryGroup.from_row,
        )


@strawberry.type
class DirectoryUser:
    id: strawberry.ID
    directory_id: strawberry.ID
    idp_id: str | None
    user_name: str
    email: str | None
    emails: JSON
    first_name: str | None
    last_name: str | None
    display_name: str | None
    job_title: str | None
    state: UserState
    custom_attributes: JSON
    raw_attributes: JSON
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: models.DirectoryUser) -> DirectoryUser:
        return cls(
            id=strawberry.ID(row.id),
            directory_id=strawberry.ID(row.directory_id),
            idp_id=row.idp_id,
            user_name=row.user_name,
            email=row.email,
            emails=JSON(row.emails),
            first_name=row.first_name,
            last_name=row.last_name,
            display_name=row.display_name,
            job_title=row.job_title,
            state=UserState(row.state),
            custom_attributes=JSON(row.custom_attributes),
            raw_attributes=JSON(row.raw_attributes),
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )

    @strawberry.field
    async def directory(self, info: Info) -> Directory:
        return Directory.from_row(_exists(await info.context.loaders.directory.load(str(self.directory_id))))

    @strawberry.field
    async def groups(self, info: Info) -> list[DirectoryGroup]:
        rows = await info.context.loaders.groups_of_user.load(str(self.id))
        return [DirectoryGroup.from_row(row) for row in rows]


@strawberry.type
class DirectoryGroup:
    id: strawberry.ID
    directory_id: strawberry.ID
    idp_id: str
    name: str
    raw_attributes: JSON
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: models.DirectoryGroup) -> DirectoryGroup:
        return cls(
            id=strawberry.ID(row.id),
            directory_id=strawberry.ID(row.directory_id),
            idp_id=row.idp_id,
            name=row.name,
            raw_attributes=JSON(row.raw_attributes),
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )

    @strawberry.field
    async def directory(self, info: Info) -> Directory:
        return Directory.from_row(_exists(await info.context.loaders.directory.load(str(self.directory_id))))

    @strawberry.field
    async def member_count(self, info: Info) -> int:
        return await info.context.loaders.member_count.load(str(self.id))

    @strawberry.field
    async def members(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        state: UserState | None = None,
        search: str | None = None,
    ) -> Connection[DirectoryUser]:
        statement = users_statement(
            directory_id=str(self.directory_id), state=state, group_id=str(self.id), search=search
        )
        return await paginate(
            info.context.database,
            statement,
            col(models.DirectoryUser.id),
            _page(first, after, last, before),
            node=DirectoryUser.from_row,
        )


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
            occurred_at=_utc(row.created_at),
            organization_id=strawberry.ID(row.organization_id),
            directory_id=strawberry.ID(row.directory_id) if row.directory_id else None,
            data=JSON(row.data),
            shared_results={} if shared else None,
        )

    @strawberry.field(description="The user as the event recorded it (user events and memberships).")
    def user(self) -> EventUser | None:
        data = cast(dict[str, Any], self.data)
        payload = data.get("user", data)
        if not isinstance(payload, dict) or payload.get("object") != "directory_user":
            return None
        return EventUser.from_payload(payload)

    @strawberry.field(description="The group as the event recorded it (group events and memberships).")
    def group(self) -> EventGroup | None:
        data = cast(dict[str, Any], self.data)
        payload = data.get("group", data)
        if not isinstance(payload, dict) or payload.get("object") != "directory_group":
            return None
        return EventGroup(id=strawberry.ID(payload["id"]), idp_id=payload.get("idp_id"), name=payload.get("name", ""))


@strawberry.type
class EventUser:
    id: strawberry.ID
    idp_id: str | None
    user_name: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    state: UserState

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> EventUser:
        return cls(
            id=strawberry.ID(payload["id"]),
            idp_id=payload.get("idp_id"),
            user_name=payload.get("username"),
            email=payload.get("email"),
            first_name=payload.get("first_name"),
            last_name=payload.get("last_name"),
            state=UserState(payload.get("state", "active")),
        )


@strawberry.type
class EventGroup:
    id: strawberry.ID
    idp_id: str | None
    name: str


@strawberry.type
class ApiKey:
    id: strawberry.ID
    organization_id: strawberry.ID | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: models.ApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(row.id),
            organization_id=strawberry.ID(row.organization_id) if row.organization_id else None,
            created_at=_utc(row.created_at),
            revoked_at=_utc(row.revoked_at) if row.revoked_at else None,
        )


Node = Annotated[Organization | Directory | DirectoryUser | DirectoryGroup | Event, strawberry.union("Node")]


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
