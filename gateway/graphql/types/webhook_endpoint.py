"""``WebhookEndpoint`` and its ``WebhookAttempt`` history (the signing secret is shown once, by the mutation that
creates the endpoint)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gateway.graphql.context import Info
from gateway.graphql.types.rows import utc
from gateway.ops import webhook_endpoints
from gateway.store import models


def _utc_or_none(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None


@strawberry.type
class WebhookAttempt:
    event_id: strawberry.ID
    status_code: int | None = strawberry.field(description="None: no HTTP answer (see error).")
    duration_ms: float
    error: str | None
    next_attempt_at: datetime | None = strawberry.field(description="When this failure's event is tried again.")
    created_at: datetime

    @classmethod
    def from_row(cls, row: models.WebhookAttempt) -> WebhookAttempt:
        return cls(
            event_id=strawberry.ID(row.event_id),
            status_code=row.status_code,
            duration_ms=row.duration_ms,
            error=row.error,
            next_attempt_at=_utc_or_none(row.next_attempt_at),
            created_at=utc(row.created_at),
        )


@strawberry.type
class WebhookEndpoint:
    id: strawberry.ID
    organization_id: strawberry.ID | None = strawberry.field(description="None: every organization's events.")
    url: str
    events: list[str] = strawberry.field(description="Event names delivered; empty: all of them.")
    enabled: bool
    state: str = strawberry.field(description="active, or failed (retries gave up: resume or redeliver).")
    failed_attempts: int
    failing_since: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The latest delivery attempts, newest first (at most 100 are kept).")
    async def attempts(self, info: Info, first: int = 20) -> list[WebhookAttempt]:
        endpoint_id = str(self.id)
        rows = await info.context.database.query(
            lambda s: webhook_endpoints.list_webhook_attempts(
                s, webhook_endpoint_id=endpoint_id, scope=None, limit=first
            )
        )
        return [WebhookAttempt.from_row(row) for row in rows]

    @classmethod
    def from_row(cls, row: models.WebhookEndpoint) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(row.id),
            organization_id=strawberry.ID(row.organization_id) if row.organization_id else None,
            url=row.url,
            events=list(row.events),
            enabled=row.enabled,
            state=row.state,
            failed_attempts=row.failed_attempts,
            failing_since=_utc_or_none(row.failing_since),
            next_attempt_at=_utc_or_none(row.next_attempt_at),
            last_error=row.last_error,
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )
