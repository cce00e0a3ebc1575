"""``ScimRequest`` and ``DirectoryHealth``: a directory's request log and what it says about the connection."""

from __future__ import annotations

from datetime import datetime

import strawberry
from sqlalchemy.orm import Session

from gateway.graphql.context import Info
from gateway.graphql.errors import bad_input
from gateway.graphql.types.rows import exists, utc
from gateway.observe import request_log
from gateway.store import models


@strawberry.type(description="One SCIM request the directory received (no bodies, no tokens).")
class ScimRequest:
    id: strawberry.ID
    at: datetime
    method: str
    path: str
    filter: str | None
    status: int
    scim_type: str | None
    detail: str | None
    duration_ms: float
    resource_id: strawberry.ID | None = strawberry.field(description="The user or group the request touched.")

    @classmethod
    def from_row(cls, row: models.ScimRequest) -> ScimRequest:
        return cls(
            id=strawberry.ID(str(row.id)),
            at=utc(row.at),
            method=row.method,
            path=row.path,
            filter=row.filter,
            status=row.status,
            scim_type=row.scim_type,
            detail=row.detail,
            duration_ms=round(row.duration_ms, 3),
            resource_id=strawberry.ID(row.resource_id) if row.resource_id else None,
        )


@strawberry.type
class DirectoryHealth:
    last_request_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None = strawberry.field(description="Status, scimType and detail of the last error answered.")
    errors_last_hour: int = strawberry.field(
        description="Error answers in the last hour (counted per minute, beyond the kept requests)."
    )
    last_rejected_token_at: datetime | None = strawberry.field(
        description="The last request to this directory's URL with a wrong or missing token."
    )


async def resolve_requests(
    info: Info, directory_id: str, *, first: int, errors_only: bool, before: strawberry.ID | None
) -> list[ScimRequest]:
    if not 0 < first <= 1000:
        raise bad_input("first must be from 1 to 1000")
    older_than = None
    if before is not None:
        if not str(before).isdigit():
            raise bad_input("before must be a ScimRequest id")
        older_than = int(str(before))
    rows = await info.context.database.query(
        lambda session: request_log.recent_requests(
            session, directory_id=directory_id, limit=first, errors_only=errors_only, before=older_than
        )
    )
    return [ScimRequest.from_row(row) for row in rows]


async def resolve_health(info: Info, directory_id: str) -> DirectoryHealth:
    def health(session: Session) -> request_log.Health:
        directory = exists(session.get(models.Directory, directory_id))
        return request_log.directory_health(session, directory=directory)

    found = await info.context.database.query(health)
    return DirectoryHealth(
        last_request_at=utc(found.last_request_at) if found.last_request_at else None,
        last_error_at=utc(found.last_error_at) if found.last_error_at else None,
        last_error=found.last_error,
        errors_last_hour=found.errors_last_hour,
        last_rejected_token_at=utc(found.last_rejected_token_at) if found.last_rejected_token_at else None,
    )
