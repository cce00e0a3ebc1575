"""``ApiKey``: an API key's public side (its secret is shown once, by the mutation that creates it)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gateway.graphql.types.rows import utc
from gateway.store import models


@strawberry.type
class ApiKey:
    id: strawberry.ID
    organization_id: strawberry.ID | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None = strawberry.field(
        description="When a request last authenticated with it (recorded at most once a minute per process)."
    )

    @strawberry.field(description="`admin` (every organization) or the organization's id.")
    def scope(self) -> str:
        return str(self.organization_id) if self.organization_id else "admin"

    @classmethod
    def from_row(cls, row: models.ApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(row.id),
            organization_id=strawberry.ID(row.organization_id) if row.organization_id else None,
            created_at=utc(row.created_at),
            revoked_at=utc(row.revoked_at) if row.revoked_at else None,
            last_used_at=utc(row.last_used_at) if row.last_used_at else None,
        )
