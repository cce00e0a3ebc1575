"""``DirectoryUser``: a user as its directory's identity provider provisioned it, with its directory and groups."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import strawberry
from sqlalchemy.orm import Session
from strawberry.scalars import JSON

from gateway.graphql.context import Info
from gateway.graphql.loaders import Loaders
from gateway.graphql.pagination import selects_on_nodes
from gateway.graphql.types import directory as directory_types
from gateway.graphql.types import directory_group as group_types
from gateway.graphql.types.enums import UserState
from gateway.graphql.types.refs import DirectoryGroupRef, DirectoryRef
from gateway.graphql.types.rows import utc
from gateway.store import models


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
    role: str | None = strawberry.field(description="The slug of the user's highest-priority role (else the default).")
    roles: list[str] = strawberry.field(description="Every role the user's groups map to, highest priority first.")
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
            role=row.role,
            roles=list(row.roles or ()),
            custom_attributes=JSON(row.custom_attributes),
            raw_attributes=JSON(row.raw_attributes),
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )

    @strawberry.field
    async def directory(self, info: Info) -> DirectoryRef:
        return await directory_types.load_directory(info, str(self.directory_id))

    # Not a coroutine function: read with the page (``page_with_groups``), a user's groups are answered at once.
    @strawberry.field
    def groups(self, info: Info) -> list[DirectoryGroupRef]:
        loaders = info.context.loaders
        rows = loaders.known_groups_of_user.get(str(self.id))
        if rows is None:  # returned awaitable: graphql-core awaits it
            return cast(list[DirectoryGroupRef], _load_groups(loaders, str(self.id)))
        known = loaders.group_objects
        groups = []
        for row in rows:
            group = known.get(row.id)
            if group is None:
                group = known[row.id] = group_types.DirectoryGroup.from_row(row)
            groups.append(group)
        return groups


async def _load_groups(loaders: Loaders, user_id: str) -> list[group_types.DirectoryGroup]:
    return [group_types.DirectoryGroup.from_row(row) for row in await loaders.groups_of_user.load(user_id)]


def page_with_groups(info: Info) -> Callable[[Session, list[Any]], None] | None:
    """For a connection of users: reads their groups with the page, when its nodes ask for them."""
    if not selects_on_nodes(info, "groups"):
        return None
    loaders = info.context.loaders
    return lambda session, rows: loaders.prefetch_groups_of_users(session, [row.id for row in rows])
