"""``Directory``: one SCIM endpoint of an organization, with its counts and its users and groups connections."""

from __future__ import annotations

from datetime import datetime

import strawberry
from sqlmodel import col

from gateway.graphql.context import Info
from gateway.graphql.pagination import Connection, PageRequest, connection_field, resolve_connection
from gateway.graphql.types import directory_group as group_types
from gateway.graphql.types import directory_user as user_types
from gateway.graphql.types import organization as organization_types
from gateway.graphql.types import scim_request as scim_request_types
from gateway.graphql.types.enums import DeprovisionPolicy, DirectoryState, DirectoryType, UserState
from gateway.graphql.types.refs import DirectoryGroupRef, DirectoryUserRef, OrganizationRef
from gateway.graphql.types.rows import exists, utc
from gateway.graphql.types.statements import groups_statement, users_statement
from gateway.ops.directories import directory_endpoint
from gateway.store import models


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
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )

    @strawberry.field(description="The SCIM base URL to paste into the identity provider.")
    def endpoint(self, info: Info) -> str:
        return directory_endpoint(public_url=info.context.settings.public_url, directory_id=str(self.id))

    @strawberry.field
    async def organization(self, info: Info) -> OrganizationRef:
        row = exists(await info.context.loaders.organization.load(str(self.organization_id)))
        return organization_types.Organization.from_row(row)

    # The four counts share one DataLoader: one GROUP BY for a whole page of directories.
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

    @strawberry.field(description="The last SCIM requests (up to 1,000 kept), newest first; errorsOnly: 400 and up.")
    async def requests(
        self, info: Info, first: int = 100, errors_only: bool = False, before: strawberry.ID | None = None
    ) -> list[scim_request_types.ScimRequest]:
        return await scim_request_types.resolve_requests(
            info, str(self.id), first=first, errors_only=errors_only, before=before
        )

    @strawberry.field(description="Last request, last error, errors in the last hour, last wrong token.")
    async def health(self, info: Info) -> scim_request_types.DirectoryHealth:
        return await scim_request_types.resolve_health(info, str(self.id))

    @connection_field()
    async def users(
        self,
        info: Info,
        page: PageRequest,
        state: UserState | None = None,
        group_id: strawberry.ID | None = None,
        search: str | None = None,
        role: str | None = None,
    ) -> Connection[DirectoryUserRef]:
        group = str(group_id) if group_id else None
        statement = users_statement(directory_id=str(self.id), state=state, group_id=group, search=search, role=role)
        key = col(models.DirectoryUser.id)
        node = user_types.DirectoryUser.from_row
        with_rows = user_types.page_with_groups(info)
        return await resolve_connection(info, statement, key=key, page=page, node=node, with_rows=with_rows)

    @connection_field()
    async def groups(
        self,
        info: Info,
        page: PageRequest,
        search: str | None = None,
        member_id: strawberry.ID | None = None,
    ) -> Connection[DirectoryGroupRef]:
        member = str(member_id) if member_id else None
        statement = groups_statement(directory_id=str(self.id), search=search, member_id=member)
        key = col(models.DirectoryGroup.id)
        return await resolve_connection(info, statement, key=key, page=page, node=group_types.DirectoryGroup.from_row)


async def load_directory(info: Info, directory_id: str) -> Directory:
    """The directory a user or group belongs to, through the request's DataLoader."""
    return Directory.from_row(exists(await info.context.loaders.directory.load(directory_id)))
