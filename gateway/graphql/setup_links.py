"""Setup links in GraphQL: ``createSetupLink`` (a one-time, expiring link for a customer's IT admin to connect one
directory, ``gateway.ops.setup_links``; its URL is shown once), ``setupLinks`` to list a directory's links and
``revokeSetupLink``."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from gateway.graphql.context import Info
from gateway.graphql.errors import ApiError, bad_input, not_found
from gateway.graphql.queries import visible_directory
from gateway.graphql.types.rows import utc
from gateway.ops import inputs, setup_links
from gateway.store import models


@strawberry.type
class SetupLink:
    id: strawberry.ID
    directory_id: strawberry.ID
    url: str = strawberry.field(description="Shown once: only the link token's hash is stored.")
    expires_at: datetime


async def create_setup_link(info: Info, directory_id: strawberry.ID, hours: float = 72) -> SetupLink:
    """A new setup link for the directory, valid ``hours`` (at most 720)."""
    await visible_directory(info, str(directory_id))
    try:
        issued = await info.context.database.transaction(
            lambda s: setup_links.create_setup_link(s, directory_id=str(directory_id), hours=hours)
        )
    except inputs.NotFound as exc:
        raise ApiError(str(exc), "NOT_FOUND") from None
    except inputs.InvalidInput as exc:
        raise bad_input(str(exc)) from None
    return SetupLink(
        id=strawberry.ID(issued.link.id),
        directory_id=strawberry.ID(issued.link.directory_id),
        url=setup_links.setup_url(public_url=info.context.settings.public_url, token=issued.token),
        expires_at=utc(issued.link.expires_at),
    )


@strawberry.enum
class SetupLinkStatus(Enum):
    ACTIVE = "active"
    EXPIRED = "expired"
    USED = "used"


@strawberry.type(description="A setup link as listed: its URL is never shown again (only its token's hash is kept).")
class DirectorySetupLink:
    id: strawberry.ID
    directory_id: strawberry.ID
    status: SetupLinkStatus
    created_at: datetime
    expires_at: datetime
    revealed_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> DirectorySetupLink:
        return cls(
            id=strawberry.ID(row.id),
            directory_id=strawberry.ID(row.directory_id),
            status=SetupLinkStatus(setup_links.setup_link_status(row)),
            created_at=utc(row.created_at),
            expires_at=utc(row.expires_at),
            revealed_at=utc(row.revealed_at) if row.revealed_at is not None else None,
        )


@strawberry.type
class SetupLinkQuery:
    @strawberry.field(description="A directory's setup links, newest first.")
    async def setup_links(self, info: Info, directory_id: strawberry.ID) -> list[DirectorySetupLink]:
        await visible_directory(info, str(directory_id))
        rows = await info.context.database.query(
            lambda s: setup_links.list_setup_links(s, directory_id=str(directory_id))
        )
        return [DirectorySetupLink.from_row(row) for row in rows]


@strawberry.type
class SetupLinkMutation:
    @strawberry.mutation(description="Revoke a setup link: opening it then answers that it is not valid.")
    async def revoke_setup_link(self, info: Info, id: strawberry.ID) -> DirectorySetupLink:
        link_id = str(id)
        principal = info.context.principal  # authenticate before looking anything up: ids must not leak
        row = await info.context.database.query(lambda s: s.get(models.SetupLink, link_id))
        if row is None:
            raise not_found("Setup link", link_id)
        directory = await info.context.loaders.directory.load(row.directory_id)
        if directory is None or not principal.can_see(directory.organization_id):
            raise not_found("Setup link", link_id)  # another tenant's link answers like a missing one
        try:
            revoked = await info.context.database.transaction(
                lambda s: setup_links.revoke_setup_link(s, setup_link_id=link_id)
            )
        except inputs.NotFound:
            raise not_found("Setup link", link_id) from None
        return DirectorySetupLink.from_row(revoked)
