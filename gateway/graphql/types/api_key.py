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

    @classmethod
    def from_row(cls, row: models.ApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(row.id),
            organization_id=strawberry.ID(row.organization_id) if row.organization_id else None,
            created_at=utc(row.created_at),
            revoked_at=utc(row.revoked_at) if row.revoked_at else None,
        )
