"""Webhook endpoint queries and mutations, merged into the schema's ``Query`` and ``Mutation``: thin wrappers over
``gateway.ops.webhook_endpoints`` behind the API key's scope (an organization key sees its organization's endpoints
only; endpoints for every organization need an admin key)."""

from __future__ import annotations

import strawberry

from gateway.graphql.context import Info
from gateway.graphql.errors import not_found
from gateway.graphql.mutations import Deleted, _run
from gateway.graphql.types.webhook_endpoint import WebhookEndpoint
from gateway.ops import webhook_endpoints as ops


@strawberry.type
class WebhookEndpointWithSecret:
    webhook_endpoint: WebhookEndpoint
    secret: str = strawberry.field(description="Shown once: signs every delivery (WorkOS-Signature).")


def _allow_private(info: Info) -> bool:
    return info.context.principal.is_admin or info.context.settings.webhook_allow_private


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The webhook endpoints the API key may see (of one organization when given).")
    async def webhook_endpoints(
        self, info: Info, organization_id: strawberry.ID | None = None
    ) -> list[WebhookEndpoint]:
        scope = info.context.principal.organization_id
        if organization_id is not None:
            if not info.context.can_see(str(organization_id)):
                return []
            scope = str(organization_id)
        rows = await info.context.database.query(lambda s: ops.list_webhook_endpoints(s, scope=scope))
        return [WebhookEndpoint.from_row(row) for row in rows]

    @strawberry.field
    async def webhook_endpoint(self, info: Info, id: strawberry.ID) -> WebhookEndpoint:
        scope = info.context.principal.organization_id
        row = await _run(info, lambda s: ops.get_webhook_endpoint(s, webhook_endpoint_id=str(id), scope=scope))
        return WebhookEndpoint.from_row(row)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        description="Without organizationId (admins only) the endpoint receives every organization's events."
    )
    async def create_webhook_endpoint(
        self,
        info: Info,
        url: str,
        organization_id: strawberry.ID | None = None,
        events: list[str] | None = None,
        enabled: bool = True,
    ) -> WebhookEndpointWithSecret:
        if organization_id is None:
            info.context.require_admin()
        elif not info.context.can_see(str(organization_id)):
            raise not_found("Organization", str(organization_id))
        owner = str(organization_id) if organization_id is not None else None
        allow_private = _allow_private(info)
        issued = await _run(
            info,
            lambda s: ops.create_webhook_endpoint(
                s, url=url, organization_id=owner, events=events, enabled=enabled, allow_private=allow_private
            ),
        )
        return WebhookEndpointWithSecret(
            webhook_endpoint=WebhookEndpoint.from_row(issued.endpoint), secret=issued.secret
        )

    @strawberry.mutation(description="Change the URL, the events (empty: all) or enabled; omitted fields stay.")
    async def update_webhook_endpoint(
        self,
        info: Info,
        id: strawberry.ID,
        url: str | None = None,
        events: list[str] | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpoint:
        scope = info.context.principal.organization_id
        allow_private = _allow_private(info)
        row = await _run(
            info,
            lambda s: ops.update_webhook_endpoint(
                s,
                webhook_endpoint_id=str(id),
                scope=scope,
                url=url,
                events=events,
                enabled=enabled,
                allow_private=allow_private,
            ),
        )
        return WebhookEndpoint.from_row(row)

    @strawberry.mutation
    async def delete_webhook_endpoint(self, info: Info, id: strawberry.ID) -> Deleted:
        scope = info.context.principal.organization_id
        await _run(info, lambda s: ops.delete_webhook_endpoint(s, webhook_endpoint_id=str(id), scope=scope))
        return Deleted(id=id)

    @strawberry.mutation(description="Deliver again after a failure, from the first event not yet delivered.")
    async def resume_webhook_endpoint(self, info: Info, id: strawberry.ID) -> WebhookEndpoint:
        scope = info.context.principal.organization_id
        row = await _run(info, lambda s: ops.resume_webhook_endpoint(s, webhook_endpoint_id=str(id), scope=scope))
        return WebhookEndpoint.from_row(row)

    @strawberry.mutation(description="Deliver again every matching event from fromEventId (included) on, in order.")
    async def redeliver_webhook_endpoint(
        self, info: Info, id: strawberry.ID, from_event_id: strawberry.ID
    ) -> WebhookEndpoint:
        scope = info.context.principal.organization_id
        row = await _run(
            info,
            lambda s: ops.redeliver_webhook_endpoint(
                s, webhook_endpoint_id=str(id), scope=scope, from_event_id=str(from_event_id)
            ),
        )
        return WebhookEndpoint.from_row(row)
