"""Who is asking (``viewer``) and the API keys they may manage (``apiKeys``): what a dashboard needs to show only
what the key can do, and what an operator needs to find and revoke a key."""

from __future__ import annotations

import strawberry
from sqlalchemy.orm import Session

from gateway.graphql.context import Info
from gateway.graphql.types import ApiKey, Organization
from gateway.ops import api_keys
from gateway.store import models


@strawberry.type(description="The API key making the request: an admin key, or one organization's key.")
class Viewer:
    api_key_id: strawberry.ID
    is_admin: bool = strawberry.field(description="True: every organization; false: `organization` only.")
    organization: Organization | None = strawberry.field(description="The one organization a non-admin key sees.")


async def resolve_viewer(info: Info) -> Viewer:
    principal = info.context.principal
    organization = None
    if principal.organization_id is not None:
        row = await info.context.loaders.organization.load(principal.organization_id)
        organization = Organization.from_row(row) if row is not None else None
    return Viewer(
        api_key_id=strawberry.ID(principal.api_key_id), is_admin=principal.is_admin, organization=organization
    )


async def resolve_api_keys(info: Info, include_revoked: bool = False) -> list[ApiKey]:
    """Admin keys see every key; an organization key sees its organization's keys. Never the secrets."""
    principal = info.context.principal

    def listing(session: Session) -> list[models.ApiKey]:
        return api_keys.list_api_keys(session, organization_id=principal.organization_id)

    rows = await info.context.database.query(listing)
    return [ApiKey.from_row(row) for row in rows if include_revoked or row.revoked_at is None]
