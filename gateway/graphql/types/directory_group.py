"""``DirectoryGroup``: a group as its directory's identity provider provisioned it, with its members connection."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from sqlmodel import col
from strawberry.scalars import JSON

from gateway.graphql.context import Info
from gateway.graphql.pagination import (
    DEFAULT_PAGE_SIZE,
    Connection,
    Page,
    PageRequest,
    connection,
    connection_field,
    resolve_connection,
)
from gateway.graphql.types import directory as directory_types
from gateway.graphql.types import directory_user as user_types
from gateway.graphql.types.enums import UserState
from gateway.graphql.types.refs import DirectoryRef, DirectoryUserRef
from gateway.graphql.types.rows import utc
from gateway.graphql.types.statements import users_statement
from gateway.store import models


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
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )

    @strawberry.field
    async def directory(self, info: Info) -> DirectoryRef:
        return await directory_types.load_directory(info, str(self.directory_id))

    @strawberry.field
    async def member_count(self, info: Info) -> int:
        return await info.context.loaders.member_count.load(str(self.id))

    @connection_field()
    async def members(
        self,
        info: Info,
        page: PageRequest,
        state: UserState | None = None,
        search: str | None = None,
    ) -> Connection[DirectoryUserRef]:
        if state is None and not search and page.after is None and page.before is None and page.last is None:
            return await _first_members(info, self, page)
        statement = users_statement(
            directory_id=str(self.directory_id), state=state, group_id=str(self.id), search=search
        )
        key = col(models.DirectoryUser.id)
        node = user_types.DirectoryUser.from_row
        with_rows = user_types.page_with_groups(info)
        return await resolve_connection(info, statement, key=key, page=page, node=node, with_rows=with_rows)


async def _first_members(info: Info, group: DirectoryGroup, page: PageRequest) -> Connection[DirectoryUserRef]:
    """The first page of a group's members (what a page of groups with their members asks, for every group): one
    statement for all the groups of the operation, their counts one more (``memberCount``'s)."""
    size = DEFAULT_PAGE_SIZE if page.validated().first is None else page.first
    loaders = info.context.loaders
    rows, more = await loaders.first_members.load((str(group.id), str(group.directory_id), size))

    async def count() -> int:
        return await loaders.member_count.load(str(group.id))

    found = Page(rows=rows, has_next=more, has_previous=False)
    node = user_types.DirectoryUser.from_row
    return cast(Connection[DirectoryUserRef], connection(found, node=node, key=lambda row: row.id, count=count))
