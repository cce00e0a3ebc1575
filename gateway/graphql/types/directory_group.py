"""``DirectoryGroup``: a group as its directory's identity provider provisioned it, with its members connection."""

from __future__ import annotations

from datetime import datetime

import strawberry
from sqlmodel import col
from strawberry.scalars import JSON

from gateway.graphql.context import Info
from gateway.graphql.pagination import Connection, PageRequest, connection_field, resolve_connection
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
        statement = users_statement(
            directory_id=str(self.directory_id), state=state, group_id=str(self.id), search=search
        )
        key = col(models.DirectoryUser.id)
        node = user_types.DirectoryUser.from_row
        with_rows = user_types.page_with_groups(info)
        return await resolve_connection(info, statement, key=key, page=page, node=node, with_rows=with_rows)
