"""Webhook endpoints: URLs that receive the event log as signed WorkOS-style webhooks, per organization or (admin)
for all of them. Shared by the CLI, GraphQL and the dashboard; ``gateway.webhooks`` delivers.

``scope`` is the caller's organization (an organization API key): such a caller sees and changes only that
organization's endpoints, and anything else looks missing. ``None`` is an admin, who sees every endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.log import log_head
from gateway.events.payloads import EventName
from gateway.ops.inputs import InvalidInput, NotFound, get_or_not_found
from gateway.ops.webhook_urls import check_webhook_url
from gateway.store.credentials import new_secret
from gateway.store.ids import new_id
from gateway.store.models import Event, Organization, WebhookAttempt, WebhookEndpoint, WebhookEndpointState, utcnow

ATTEMPTS_KEPT = 100  # per endpoint: the history is for diagnosis, not an archive


@dataclass(frozen=True)
class IssuedWebhookEndpoint:
    """A new endpoint with its signing secret, which the caller is shown this once."""

    endpoint: WebhookEndpoint
    secret: str


def clean_event_names(names: Sequence[str] | None) -> list[str]:
    """The event names an endpoint asks for, checked and deduplicated; empty: every event."""
    cleaned: list[str] = []
    known = {name.value for name in EventName}
    for name in names or ():
        value = name.strip()
        if value not in known:
            raise InvalidInput(f"unknown event {name!r}; choose among {', '.join(sorted(known))}")
        if value not in cleaned:
            cleaned.append(value)
    return cleaned


def create_webhook_endpoint(
    session: Session,
    *,
    url: str,
    organization_id: str | None,
    events: Sequence[str] | None = None,
    enabled: bool = True,
    allow_private: bool = False,
) -> IssuedWebhookEndpoint:
    """A new endpoint for one organization's events (``None``: every organization's, for admins) that receives the
    events committed from now on; ``allow_private`` (admins) lets it target private networks."""
    if organization_id is not None:
        get_or_not_found(session, Organization, organization_id, "organization")
    secret = new_secret("whsec_")
    endpoint = WebhookEndpoint(
        id=new_id("webhook_endpoint"),
        organization_id=organization_id,
        url=check_webhook_url(url, allow_private=allow_private),
        events=clean_event_names(events),
        enabled=enabled,
        secret=secret,
        allow_private=allow_private,
        cursor=log_head(session),
    )
    session.add(endpoint)
    session.flush()
    return IssuedWebhookEndpoint(endpoint=endpoint, secret=secret)


def list_webhook_endpoints(session: Session, *, scope: str | None) -> list[WebhookEndpoint]:
    """The endpoints the caller may see, oldest first."""
    statement = select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))
    if scope is not None:
        statement = statement.where(col(WebhookEndpoint.organization_id) == scope)
    return list(session.scalars(statement))


def get_webhook_endpoint(
    session: Session, *, webhook_endpoint_id: str, scope: str | None, lock: bool = False
) -> WebhookEndpoint:
    """The endpoint the caller named, or ``NotFound`` (also when it is another organization's)."""
    endpoint = get_or_not_found(session, WebhookEndpoint, webhook_endpoint_id, "webhook endpoint", lock=lock)
    if scope is not None and endpoint.organization_id != scope:
        raise NotFound(f"webhook endpoint {webhook_endpoint_id} not found")
    return endpoint


def update_webhook_endpoint(
    session: Session,
    *,
    webhook_endpoint_id: str,
    scope: str | None,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
    allow_private: bool = False,
) -> WebhookEndpoint:
    """Change an endpoint's URL, events (empty: all) or enabled flag (``None`` leaves a field as it is)."""
    endpoint = get_webhook_endpoint(session, webhook_endpoint_id=webhook_endpoint_id, scope=scope, lock=True)
    if url is not None:
        endpoint.url = check_webhook_url(url, allow_private=allow_private)
        endpoint.allow_private = allow_private
    if events is not None:
        endpoint.events = clean_event_names(events)
    if enabled is not None:
        endpoint.enabled = enabled
    _release(endpoint)
    session.flush()
    return endpoint


def delete_webhook_endpoint(session: Session, *, webhook_endpoint_id: str, scope: str | None) -> None:
    """Delete an endpoint with its attempt history; deliveries stop."""
    endpoint = get_webhook_endpoint(session, webhook_endpoint_id=webhook_endpoint_id, scope=scope, lock=True)
    session.delete(endpoint)
    session.flush()


def resume_webhook_endpoint(session: Session, *, webhook_endpoint_id: str, scope: str | None) -> WebhookEndpoint:
    """Deliver again after a failure (or a backoff), from the first event not yet delivered."""
    endpoint = get_webhook_endpoint(session, webhook_endpoint_id=webhook_endpoint_id, scope=scope, lock=True)
    _reset_failure(endpoint)
    _release(endpoint)
    session.flush()
    return endpoint


def redeliver_webhook_endpoint(
    session: Session, *, webhook_endpoint_id: str, scope: str | None, from_event_id: str
) -> WebhookEndpoint:
    """Deliver again every matching event from ``from_event_id`` (included) on, in order; resumes a failed endpoint."""
    endpoint = get_webhook_endpoint(session, webhook_endpoint_id=webhook_endpoint_id, scope=scope, lock=True)
    cursor = session.scalar(
        select(col(Event.cursor)).where(
            col(Event.id) == from_event_id,
            *([col(Event.organization_id) == endpoint.organization_id] if endpoint.organization_id else []),
        )
    )
    if cursor is None:
        raise NotFound(f"event {from_event_id} not found")
    endpoint.cursor = cursor - 1
    _reset_failure(endpoint)
    _release(endpoint)
    session.flush()
    return endpoint


def list_webhook_attempts(
    session: Session, *, webhook_endpoint_id: str, scope: str | None, limit: int = ATTEMPTS_KEPT
) -> list[WebhookAttempt]:
    """The endpoint's latest delivery attempts, newest first."""
    get_webhook_endpoint(session, webhook_endpoint_id=webhook_endpoint_id, scope=scope)
    return list(
        session.scalars(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.endpoint_id) == webhook_endpoint_id)
            .order_by(col(WebhookAttempt.id).desc())
            .limit(max(1, min(limit, ATTEMPTS_KEPT)))
        )
    )


def _reset_failure(endpoint: WebhookEndpoint) -> None:
    endpoint.state = WebhookEndpointState.ACTIVE.value
    endpoint.failed_attempts = 0
    endpoint.failing_since = None
    endpoint.next_attempt_at = None
    endpoint.last_error = None


def _release(endpoint: WebhookEndpoint) -> None:
    """Take the endpoint from whichever instance is delivering it: its next write, fenced on the lease, fails, and
    the next claim starts from the row as changed here."""
    endpoint.lease_owner = None
    endpoint.lease_expires_at = None
    endpoint.updated_at = utcnow()
