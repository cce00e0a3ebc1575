"""``createSetupLink``: a one-time, expiring link for a customer's IT admin to connect one directory
(``gateway.ops.setup_links``); its URL is shown once."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gateway.graphql.context import Info
from gateway.graphql.errors import ApiError, bad_input
from gateway.graphql.queries import visible_directory
from gateway.graphql.types.rows import utc
from gateway.ops import inputs, setup_links


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
