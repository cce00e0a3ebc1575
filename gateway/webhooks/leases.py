"""The worker's side of the store: which endpoints have events to deliver, the lease that lets one instance deliver
an endpoint at a time, and the writes that move an endpoint's cursor or schedule its retry.

Every write after the claim is fenced on ``lease_owner``: an instance whose lease expired, or an operator's resume,
redeliver or update (which clear the lease), makes its next write match no row, and it stops. The claim itself is
one conditional UPDATE, which PostgreSQL re-checks under the row lock, so two instances never both win it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.log import log_head
from gateway.ops.webhook_endpoints import ATTEMPTS_KEPT
from gateway.store.models import WebhookAttempt, WebhookEndpoint, WebhookEndpointState

_ATTEMPTS = WebhookAttempt.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ClaimedEndpoint:
    """What the worker needs of an endpoint it holds the lease on (a snapshot: no session behind it)."""

    owner: str  # the lease token every later write is fenced on
    id: str
    organization_id: str | None
    url: str
    events: tuple[str, ...]
    secret: str
    allow_private: bool
    cursor: int
    failed_attempts: int
    failing_since: datetime | None


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt, to be recorded."""

    event_id: str
    event_cursor: int
    status_code: int | None
    duration_ms: float
    error: str | None
    created_at: datetime
    next_attempt_at: datetime | None = None


def _due(now: datetime) -> list[Any]:
    return [
        col(WebhookEndpoint.enabled).is_(True),
        col(WebhookEndpoint.state) == WebhookEndpointState.ACTIVE.value,
        or_(col(WebhookEndpoint.next_attempt_at).is_(None), col(WebhookEndpoint.next_attempt_at) <= now),
        or_(col(WebhookEndpoint.lease_owner).is_(None), col(WebhookEndpoint.lease_expires_at) < now),
    ]


def has_due_endpoints(session: Session, *, now: datetime) -> bool:
    """Whether some endpoint is behind the log, due and not leased: a read, so an idle worker never writes."""
    head = log_head(session)
    statement = select(col(WebhookEndpoint.id)).where(*_due(now), col(WebhookEndpoint.cursor) < head).limit(1)
    return session.scalar(statement) is not None


def claim_endpoints(
    session: Session, *, owner: str, now: datetime, lease_seconds: float, limit: int
) -> list[ClaimedEndpoint]:
    """Lease up to ``limit`` due endpoints that are behind the log to ``owner``."""
    head = log_head(session)
    candidates = session.scalars(
        select(col(WebhookEndpoint.id))
        .where(*_due(now), col(WebhookEndpoint.cursor) < head)
        .order_by(col(WebhookEndpoint.next_attempt_at), col(WebhookEndpoint.id))
        .limit(limit)
    ).all()
    claimed: list[ClaimedEndpoint] = []
    expires = now + timedelta(seconds=lease_seconds)
    for endpoint_id in candidates:
        row = session.execute(
            update(WebhookEndpoint)
            .where(col(WebhookEndpoint.id) == endpoint_id, *_due(now))
            .values(lease_owner=owner, lease_expires_at=expires)
            .returning(
                col(WebhookEndpoint.id),
                col(WebhookEndpoint.organization_id),
                col(WebhookEndpoint.url),
                col(WebhookEndpoint.events),
                col(WebhookEndpoint.secret),
                col(WebhookEndpoint.allow_private),
                col(WebhookEndpoint.cursor),
                col(WebhookEndpoint.failed_attempts),
                col(WebhookEndpoint.failing_since),
            )
            .execution_options(synchronize_session=False)
        ).first()
        if row is not None:
            claimed.append(
                ClaimedEndpoint(
                    owner=owner,
                    id=row[0],
                    organization_id=row[1],
                    url=row[2],
                    events=tuple(row[3] or ()),
                    secret=row[4],
                    allow_private=bool(row[5]),
                    cursor=int(row[6]),
                    failed_attempts=int(row[7]),
                    # SQLite hands back naive datetimes; the store writes UTC.
                    failing_since=row[8].replace(tzinfo=UTC) if row[8] and row[8].tzinfo is None else row[8],
                )
            )
    return claimed


def advance(
    session: Session,
    *,
    owner: str,
    endpoint_id: str,
    cursor: int,
    attempts: list[Attempt],
    lease_until: datetime | None,
) -> bool:
    """Record delivered events: move the cursor, clear the failure, renew the lease (``None``: release it) and
    record the attempts. False when the lease is no longer ``owner``'s (nothing is written then)."""
    result = session.execute(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == endpoint_id, col(WebhookEndpoint.lease_owner) == owner)
        .values(
            cursor=cursor,
            failed_attempts=0,
            failing_since=None,
            next_attempt_at=None,
            last_error=None,
            lease_owner=owner if lease_until is not None else None,
            lease_expires_at=lease_until,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    _record(session, endpoint_id, attempts)
    return True


def fail(
    session: Session,
    *,
    owner: str,
    endpoint: ClaimedEndpoint,
    attempt: Attempt,
    failing_since: datetime,
    gave_up: bool,
) -> bool:
    """Record a failed attempt and release the lease: retry at ``attempt.next_attempt_at``, or (``gave_up``) mark
    the endpoint ``failed`` until an operator resumes it. False when the lease was lost."""
    result = session.execute(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == endpoint.id, col(WebhookEndpoint.lease_owner) == owner)
        .values(
            failed_attempts=col(WebhookEndpoint.failed_attempts) + 1,
            failing_since=failing_since,
            next_attempt_at=attempt.next_attempt_at,
            last_error=attempt.error,
            state=WebhookEndpointState.FAILED.value if gave_up else WebhookEndpointState.ACTIVE.value,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    _record(session, endpoint.id, [attempt])
    return True


def _record(session: Session, endpoint_id: str, attempts: list[Attempt]) -> None:
    if not attempts:
        return
    session.execute(
        insert(_ATTEMPTS),
        [
            {
                "endpoint_id": endpoint_id,
                "event_id": a.event_id,
                "event_cursor": a.event_cursor,
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "error": a.error,
                "next_attempt_at": a.next_attempt_at,
                "created_at": a.created_at,
            }
            for a in attempts
        ],
    )
    # Keep the newest ATTEMPTS_KEPT: everything at or below the first one past them goes.
    oldest_kept = (
        select(_ATTEMPTS.c.id)
        .where(_ATTEMPTS.c.endpoint_id == endpoint_id)
        .order_by(_ATTEMPTS.c.id.desc())
        .offset(ATTEMPTS_KEPT)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(delete(_ATTEMPTS).where(_ATTEMPTS.c.endpoint_id == endpoint_id, _ATTEMPTS.c.id <= oldest_kept))
