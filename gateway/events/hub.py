"""Fan-out of the event log to live subscribers.

After a transaction that wrote events commits, a small notification (no payload: NOTIFY caps messages at ~8 KB)
goes through ``broadcaster``. In each process one pump reads new events from the log once and hands them to that
process's subscribers through bounded queues; a periodic read of the log's head bounds the delay when a notification
is lost. A subscriber that falls behind (its queue fills) is dropped from the fast path and catches up from the log
by its cursor, so a slow client costs bounded memory and never loses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.notifier import Notifier
from gateway.store.database import Database
from gateway.store.models import Event

logger = logging.getLogger("dsync.realtime")

_PAGE = 500
_DELIVERY_SLOTS = 16
_STUCK_DELIVERY_SECONDS = 0.5


@dataclass(frozen=True)
class EventFilter:
    organization_id: str | None  # None: every organization (admin keys)
    directory_id: str | None = None
    names: frozenset[str] | None = None

    def matches(self, row: Any) -> bool:
        return (
            (self.organization_id is None or row.organization_id == self.organization_id)
            and (self.directory_id is None or row.directory_id == self.directory_id)
            and (self.names is None or row.event in self.names)
        )

    def where(self) -> list[Any]:
        conditions: list[Any] = []
        if self.organization_id is not None:
            conditions.append(col(Event.organization_id) == self.organization_id)
        if self.directory_id is not None:
            conditions.append(col(Event.directory_id) == self.directory_id)
        if self.names is not None:
            conditions.append(col(Event.event).in_(self.names))
        return conditions


@dataclass(eq=False, slots=True)
class LiveEvent:
    """One new row of the log, the same object for every subscriber it goes to: consumers may keep what they derive
    from it in ``shared`` (e.g. its GraphQL execution) so the work is done once, not once per subscriber."""

    row: Any
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def cursor(self) -> int:
        return int(self.row.cursor)


@dataclass(eq=False)
class Subscriber:
    filter: EventFilter
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    # Set when the queue overflowed: the subscriber then reads the log itself until it is level again.
    behind: bool = False


_EVENTS = Event.__table__  # type: ignore[attr-defined]


def _read_after(session: Session, cursor: int, conditions: list[Any], limit: int) -> list[Any]:
    statement = select(_EVENTS).where(_EVENTS.c.cursor > cursor, *conditions).order_by(_EVENTS.c.cursor).limit(limit)
    return list(session.execute(statement).all())


def _head(session: Session) -> int:
    return session.scalar(select(func.max(col(Event.cursor)))) or 0


class EventHub:
    def __init__(self, database: Database, broadcast_url: str, *, poll_seconds: float = 1.0) -> None:
        self._database = database
        self._notifier = Notifier(
            broadcast_url, on_notification=self._wake, on_reconnect=self._wake, on_revocation=self._revoked
        )
        self._key_watchers: dict[str, set[asyncio.Event]] = {}
        self._poll_seconds = poll_seconds
        self._subscribers: set[Subscriber] = set()
        self._wakeup = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._delivery_slots = asyncio.Semaphore(_DELIVERY_SLOTS)
        self._stopped = False
        self.head = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return tuple(self._subscribers)

    @property
    def broadcast_connected(self) -> bool:
        return self._notifier.connected

    @property
    def broadcast_reconnects(self) -> int:
        return self._notifier.reconnects

    async def start(self) -> None:
        self.head = await self._database.query(_head)
        await self._notifier.start()
        self._pump_task = asyncio.create_task(self._pump(), name="dsync-event-pump")

    async def stop(self) -> None:
        # The flag as well as cancel(): on Python 3.11 a cancellation racing with a timeout can be swallowed, and a
        # loop that ignored it once would keep shutdown waiting forever.
        self._stopped = True
        self._wakeup.set()
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        for subscriber in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.queue.put_nowait(None)
        await self._notifier.stop()

    def notify(self) -> None:
        """Tell every process (this one at once) that the log grew; called after each committed write."""
        self._wakeup.set()
        self._notifier.notify()

    def _wake(self) -> None:
        self._wakeup.set()

    def watch_key(self, api_key_id: str, revoked: asyncio.Event) -> None:
        """``revoked`` is set when the key is revoked (here or, through the broadcaster, in another process)."""
        self._key_watchers.setdefault(api_key_id, set()).add(revoked)

    def unwatch_key(self, api_key_id: str, revoked: asyncio.Event) -> None:
        watchers = self._key_watchers.get(api_key_id)
        if watchers is not None:
            watchers.discard(revoked)
            if not watchers:
                del self._key_watchers[api_key_id]

    def revoke_key(self, api_key_id: str) -> None:
        self._revoked(api_key_id)
        self._notifier.announce_revocation(api_key_id)

    def _revoked(self, api_key_id: str) -> None:
        for revoked in self._key_watchers.get(api_key_id, ()):
            revoked.set()

    @contextlib.asynccontextmanager
    async def delivery_turn(self) -> AsyncIterator[None]:
        """Held while one event is executed and sent to one subscriber.

        A burst fanned out to many subscribers would otherwise make every subscriber task ready at once, and each
        turn of the event loop would run them all before the next step of any SCIM request: ingest (whose IdP is
        waiting) would crawl behind the fan-out. With a few slots, deliveries take turns with everything else. A
        send stuck on a client that stopped reading gives its slot back after a moment."""
        await self._delivery_slots.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._delivery_slots.release()

        timer = asyncio.get_running_loop().call_later(_STUCK_DELIVERY_SECONDS, release)
        try:
            yield
        finally:
            timer.cancel()
            release()

    async def read_head(self) -> int:
        return await self._database.query(_head)

    async def read_after(self, cursor: int, event_filter: EventFilter, limit: int = _PAGE) -> list[Any]:
        conditions = event_filter.where()
        return await self._database.query(lambda session: _read_after(session, cursor, conditions, limit))

    @contextlib.asynccontextmanager
    async def subscribe(self, event_filter: EventFilter) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(event_filter)
        if not self._subscribers:
            # The pump skips the log while nobody listens (writes then cost nothing extra): catch its head up.
            self.head = max(self.head, await self.read_head())
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    async def _pump(self) -> None:
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wakeup.wait()
            if self._stopped:
                return
            self._wakeup.clear()
            if not self._subscribers:
                continue
            try:
                await self._deliver_new()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("reading new events failed; retrying", exc_info=True)

    async def _deliver_new(self) -> None:
        while True:
            rows = await self._database.query(lambda session: _read_after(session, self.head, [], _PAGE))
            for row in rows:
                live = LiveEvent(row)
                for subscriber in list(self._subscribers):
                    if subscriber.behind or not subscriber.filter.matches(row):
                        continue
                    try:
                        subscriber.queue.put_nowait(live)
                    except asyncio.QueueFull:
                        subscriber.behind = True
                self.head = row.cursor
            if len(rows) < _PAGE:
                return
