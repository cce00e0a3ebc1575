"""``/webhook_endpoints`` and ``/webhook_endpoints/{id}``: list, create, get, update, delete, over
``gateway.ops.webhook_endpoints`` behind the API key's scope (an organization key sees and creates its
organization's endpoints only; an admin key all of them, and without ``organization_id`` creates one for every
organization's events). The signing secret is in the create answer only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.ops import inputs
from gateway.ops import webhook_endpoints as ops
from gateway.ops.principals import Principal
from gateway.ops.webhook_urls import check_webhook_url
from gateway.settings import Settings
from gateway.workos import queries
from gateway.workos.errors import WorkOSError, invalid, not_found
from gateway.workos.http import WorkOSEndpoint, authenticate, database_of, json, json_body, path_id
from gateway.workos.objects import webhook_endpoint_object
from gateway.workos.params import page_request, text

T = TypeVar("T")
_STATUSES = {"enabled": True, "disabled": False}


def _allow_private(request: Request, principal: Principal) -> bool:
    # Private and loopback targets: admin keys, or every key when the operator allows it.
    settings: Settings = request.app.state.settings
    return principal.is_admin or settings.webhook_allow_private


def _endpoint_url(value: Any, *, allow_private: bool) -> str:
    if not isinstance(value, str):
        raise invalid("endpoint_url", "endpoint_url must be an http:// or https:// URL")
    try:
        return check_webhook_url(value, allow_private=allow_private)
    except inputs.InvalidInput as error:
        raise invalid("endpoint_url", str(error)) from None


def _events(body: dict[str, Any]) -> list[str] | None:
    value = body.get("events")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise invalid("events", "events must be a list of event names")
    try:
        return ops.clean_event_names(value)
    except inputs.InvalidInput as error:
        raise invalid("events", str(error)) from None


def _enabled(body: dict[str, Any]) -> bool | None:
    value = body.get("status")
    if value is None:
        return None
    if value not in _STATUSES:
        raise invalid("status", "status must be enabled or disabled")
    return _STATUSES[value]


async def _write(request: Request, job: Callable[[Session], T], *, missing: WorkOSError) -> T:
    """Run a write job; ``missing`` answers a ``NotFound`` (gone, or another organization's)."""
    try:
        return await database_of(request).transaction(job)
    except inputs.NotFound:
        raise missing from None
    except inputs.InvalidInput as error:
        raise invalid("body", str(error)) from None


class WebhookEndpointsEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, params = await authenticate(request), request.query_params
        page, organization_id = page_request(params), text(params, "organization_id")
        return json(
            await database_of(request).query(
                lambda session: queries.list_webhook_endpoints(
                    session, principal=principal, page=page, organization_id=organization_id
                )
            )
        )

    async def post(self, request: Request) -> Response:
        """201 with the endpoint and its ``secret``, shown this once."""
        principal, body = await authenticate(request), await json_body(request)
        url = _endpoint_url(body.get("endpoint_url"), allow_private=_allow_private(request, principal))
        events, enabled = _events(body), _enabled(body)
        owner = body.get("organization_id", principal.organization_id)
        if owner is not None and not isinstance(owner, str):
            raise invalid("organization_id", "organization_id must be a string")
        if owner is not None and not principal.can_see(owner):
            raise not_found("Organization", owner)  # another organization looks missing
        if owner is None and not principal.is_admin:
            raise invalid("organization_id", "only admin keys create endpoints for every organization")
        allow_private = _allow_private(request, principal)
        issued = await _write(
            request,
            lambda s: ops.create_webhook_endpoint(
                s,
                url=url,
                organization_id=owner,
                events=events,
                enabled=True if enabled is None else enabled,
                allow_private=allow_private,
            ),
            missing=not_found("Organization", owner or ""),
        )
        return json(webhook_endpoint_object(issued.endpoint, secret=issued.secret), status=201)


class WebhookEndpointEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, endpoint_id = await authenticate(request), path_id(request, "Webhook endpoint")
        try:
            row = await database_of(request).query(
                lambda s: ops.get_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=principal.organization_id)
            )
        except inputs.NotFound:
            raise not_found("Webhook endpoint", endpoint_id) from None
        return json(webhook_endpoint_object(row))

    async def patch(self, request: Request) -> Response:
        """Change ``endpoint_url``, ``events`` (empty: every event) or ``status``; omitted fields stay."""
        principal, endpoint_id = await authenticate(request), path_id(request, "Webhook endpoint")
        body, allow_private = await json_body(request), _allow_private(request, principal)
        raw_url = body.get("endpoint_url")
        url = None if raw_url is None else _endpoint_url(raw_url, allow_private=allow_private)
        events, enabled = _events(body), _enabled(body)
        row = await _write(
            request,
            lambda s: ops.update_webhook_endpoint(
                s,
                webhook_endpoint_id=endpoint_id,
                scope=principal.organization_id,
                url=url,
                events=events,
                enabled=enabled,
                allow_private=allow_private,
            ),
            missing=not_found("Webhook endpoint", endpoint_id),
        )
        return json(webhook_endpoint_object(row))

    async def delete(self, request: Request) -> Response:
        """204; deliveries to the endpoint stop."""
        principal, endpoint_id = await authenticate(request), path_id(request, "Webhook endpoint")
        await _write(
            request,
            lambda s: ops.delete_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=principal.organization_id),
            missing=not_found("Webhook endpoint", endpoint_id),
        )
        return Response(status_code=204)
