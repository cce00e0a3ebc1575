"""``Organization``: a tenant, with its directories."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gateway.graphql.context import Info
from gateway.graphql.types import directory as directory_types
from gateway.graphql.types.refs import DirectoryRef
from gateway.graphql.types.rows import utc
from gateway.store import models


@strawberry.type
class Organization:
    id: strawberry.ID
    name: str
    domains: list[str]
    created_at: datetime

    @classmethod
    def from_row(cls, row: models.Organization) -> Organization:
        return cls(id=strawberry.ID(row.id), name=row.name, domains=list(row.domains), created_at=utc(row.created_at))

    @strawberry.field
    async def directories(self, info: Info) -> list[DirectoryRef]:
        rows = await info.context.loaders.directories_of_organization.load(str(self.id))
        return [directory_types.Directory.from_row(row) for row in rows]
