"""The delivery worker of one instance: it wakes when events commit (here or, through the hub, in another
instance) and every ``poll_seconds``, leases the endpoints that are behind the log, and delivers each one's events
in cursor order, one at a time, from the log (``LogWindows``: each window of the log is read once for every endpoint)
until a delivery fails or the lease is lost.

Deliveries run as tasks beside SCIM requests and never inside them: ingest only writes the log. A successful run
of deliveries is recorded in one write per batch (cursor, lease renewal, attempts), so the worker adds a few writes
per second to the store, not one per delivery. A failure schedules the retry with exponential backoff and jitter;
an endpoint still failing after ``retry_hours`` is marked ``failed`` until an operator resumes or redelivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
from datetime import datetime, timedelta

from ulid import ULID

from gateway.events.filter import EventFilter
from gateway.events.hub import EventHub
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.models import utcnow
from gateway.webhooks import leases
from gateway.webhooks.delivery import AttemptResult, DeliveryClient
from gateway.webhooks.leases import Attempt, ClaimedEndpoint
from gateway.webhooks.log_window import LogWindows

logger = logging.getLogger("dsync.webhooks")

LEASE_SECONDS = 60.0
_CLAIM_INTERVAL_SECONDS = 0.2
# An idle run renews its lease this often; it also notices then that an operator took the endpoint back.
_RENEW_SECONDS = 5.0
_FLUSH_EVERY = 500  # deliveries recorded per write at most
_FLUSH_SECONDS = 2.0  # and at least this often, so the cursor (and the lease) keep up


def backoff_seconds(failed_attempts: int, *, base: float, cap: float) -> float:
    """How long to wait after the ``failed_attempts``-th failure in a row: doubling from ``base`` up to ``cap``, with
    jitter (between half and all of it) so endpoints that failed together do not retry together."""
    step: float = min(cap, base * 2.0 ** min(failed_attempts - 1, 40))
    return step * random.uniform(0.5, 1.0)


class WebhookWorker:
    """Delivers every endpoint's events from this instance; several instances share the work by lease."""

    def __init__(self, database: Database, hub: EventHub, settings: Settings, *, poll_seconds: float = 1.0) -> None:
        self._database = database
        self._hub = hub
        self._settings = settings
        self._poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{ULID()}"
        self._client = DeliveryClient(timeout_seconds=settings.webhook_timeout_seconds)
        self._sending = asyncio.Semaphore(max(1, settings.webhook_sends))
        self._wakeup = asyncio.Event()
        self._grown = asyncio.Event()  # replaced on each wake: endpoint runs at the log's head wait on it
        self._windows = LogWindows(database, poll_seconds=poll_seconds)
        self._task: asyncio.Task[None] | None = None
        self._deliveries: dict[str, asyncio.Task[None]] = {}
        self._stopped = False

    def wake(self) -> None:
        """New events may be in the log (called after each commit and on the hub's notifications)."""
        self._wakeup.set()
        self._windows.grew()
        self._grown.set()
        self._grown = asyncio.Event()

    async def start(self) -> None:
        """Start the worker's loop."""
        self._task = asyncio.create_task(self._run(), name="dsync-webhook-worker")

    async def stop(self) -> None:
        """Stop claiming, finish or cancel the deliveries in flight and give their leases back."""
        self._stopped = True
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deliveries = list(self._deliveries.values())
        for task in deliveries:
            task.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
        await self._client.close()

    async def _run(self) -> None:
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._stopped:
                return
            try:
                await self._claim()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("claiming webhook endpoints failed; retrying", exc_info=True)
            # Commits wake the worker many times a second during a sync: look for due endpoints a few times only.
            await asyncio.sleep(_CLAIM_INTERVAL_SECONDS)

    async def _claim(self) -> None:
        room = self._settings.webhook_concurrency - len(self._deliveries)
        if room <= 0:
            return
        now = utcnow()
        # A read first: an idle worker (or one woken by its own writes) never takes the writer.
        if not await self._database.query(lambda s: leases.has_due_endpoints(s, now=now)):
            return
        # A lease token per claim: a run whose lease was taken back (an operator's resume, say) and then claimed
        # again here cannot renew or release its successor's lease.
        owner = f"{self.owner}/{ULID()}"
        claimed = await self._database.transaction(
            lambda s: leases.claim_endpoints(s, owner=owner, now=now, lease_seconds=LEASE_SECONDS, limit=room)
        )
        for endpoint in claimed:
            previous = self._deliveries.pop(endpoint.id, None)
            if previous is not None:
                previous.cancel()  # it lost its lease and has not noticed yet
            task = asyncio.create_task(self._deliver(endpoint), name=f"dsync-webhook-{endpoint.id}")
            self._deliveries[endpoint.id] = task
            task.add_done_callback(functools.partial(self._finished, endpoint.id))

    def _finished(self, endpoint_id: str, task: asyncio.Task[None]) -> None:
        if self._deliveries.get(endpoint_id) is task:
            del self._deliveries[endpoint_id]
        if not self._stopped:
            self._wakeup.set()  # its events may have grown meanwhile, and a slot is free

    async def _deliver(self, endpoint: ClaimedEndpoint) -> None:
        run = _EndpointRun(self, endpoint)
        try:
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("delivering to webhook endpoint %s failed; it will be retried", endpoint.id, exc_info=True)
        finally:
            # Record what was delivered and give the lease back (a no-op when it is no longer this run's), also when
            # the worker stops: a restart then resends nothing that was acknowledged.
            with contextlib.suppress(Exception):
                await asyncio.shield(run.flush(release=True))


class _EndpointRun:
    """One lease's worth of deliveries to one endpoint: it lasts until a delivery fails or the lease is lost."""

    def __init__(self, worker: WebhookWorker, endpoint: ClaimedEndpoint) -> None:
        self._worker = worker
        self._endpoint = endpoint
        self._cursor = endpoint.cursor
        self._delivered: list[Attempt] = []
        self._flushed_at = time.monotonic()
        self._flushing = asyncio.Lock()

    async def run(self) -> None:
        """Deliver the endpoint's events from its cursor, from the log and then live, until a delivery fails, the
        lease is lost or the worker stops."""
        endpoint = self._endpoint
        event_filter = EventFilter(
            organization_id=endpoint.organization_id, names=frozenset(endpoint.events) if endpoint.events else None
        )
        allow_private = endpoint.allow_private or self._worker._settings.webhook_allow_private
        client = self._worker._client
        heartbeat = asyncio.create_task(self._heartbeat(asyncio.current_task()))
        worker = self._worker
        try:
            while True:
                grown = worker._grown  # taken before reading: a wake while reading is not missed
                window = await worker._windows.after(self._cursor)
                for row in window.rows:
                    if not event_filter.matches(row):
                        self._cursor = int(row.cursor)  # not this endpoint's: passed over
                        continue
                    # Deliveries take turns with SCIM requests (in-process) and with each other.
                    async with worker._hub.delivery_turn(), worker._sending:
                        result = await client.post(
                            url=endpoint.url, body=window.body(row), secret=endpoint.secret, allow_private=allow_private
                        )
                    if not result.delivered:
                        if await self.flush(release=False):
                            await self._failed(row, result)
                        return
                    self._delivered.append(_attempt(row, result, started=utcnow()))
                    self._cursor = int(row.cursor)
                    if len(self._delivered) >= _FLUSH_EVERY and not await self.flush(release=False):
                        return
                self._cursor = max(self._cursor, window.cursor)
                if not window.rows and window.cursor == self._cursor and not window.window.final:
                    # At the head of the log: wait for it to grow (a wake, or the next poll).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(grown.wait(), worker._poll_seconds)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, run: asyncio.Task[None] | None) -> None:
        """Record deliveries at least every ``_FLUSH_SECONDS`` and renew the lease; stop the run if it was lost."""
        while True:
            await asyncio.sleep(_FLUSH_SECONDS)
            renew = time.monotonic() - self._flushed_at > _RENEW_SECONDS
            if (self._delivered or renew) and not await self.flush(release=False):
                if run is not None:
                    run.cancel()
                return

    async def flush(self, *, release: bool) -> bool:
        """Record what was delivered since the last flush and renew the lease (or release it); False when the lease
        was lost (stop delivering)."""
        async with self._flushing:  # one write at a time, so cursors are recorded in order
            owner, endpoint_id, cursor, attempts = (
                self._endpoint.owner,
                self._endpoint.id,
                self._cursor,
                self._delivered,
            )
            self._delivered = []
            lease_until = None if release else utcnow() + timedelta(seconds=LEASE_SECONDS)
            kept = await self._worker._database.transaction(
                lambda s: leases.advance(
                    s, owner=owner, endpoint_id=endpoint_id, cursor=cursor, attempts=attempts, lease_until=lease_until
                )
            )
            self._flushed_at = time.monotonic()
            return kept

    async def _failed(self, row: object, result: AttemptResult) -> None:
        settings = self._worker._settings
        now = utcnow()
        endpoint = self._endpoint
        # The failure streak started with this event unless it was failing when claimed (and nothing got through).
        same_streak = self._cursor == endpoint.cursor and endpoint.failing_since is not None
        failing_since: datetime = endpoint.failing_since if same_streak and endpoint.failing_since else now
        failures = (endpoint.failed_attempts if same_streak else 0) + 1
        gave_up = now - failing_since >= timedelta(hours=settings.webhook_retry_hours)
        delay = backoff_seconds(
            failures, base=settings.webhook_backoff_base_seconds, cap=settings.webhook_max_backoff_seconds
        )
        attempt = _attempt(
            row, result, started=now, next_attempt_at=None if gave_up else now + timedelta(seconds=delay)
        )
        owner = self._endpoint.owner
        await self._worker._database.transaction(
            lambda s: leases.fail(
                s, owner=owner, endpoint=endpoint, attempt=attempt, failing_since=failing_since, gave_up=gave_up
            )
        )
        if gave_up:
            logger.warning(
                "webhook endpoint %s failed for %s hours: marked failed", endpoint.id, settings.webhook_retry_hours
            )


def _attempt(
    row: object, result: AttemptResult, *, started: datetime, next_attempt_at: datetime | None = None
) -> Attempt:
    return Attempt(
        event_id=str(getattr(row, "id")),  # noqa: B009 - log rows are SQLAlchemy Rows
        event_cursor=int(getattr(row, "cursor")),  # noqa: B009
        status_code=result.status_code,
        duration_ms=round(result.duration_ms, 2),
        error=result.error,
        created_at=started,
        next_attempt_at=next_attempt_at,
    )
