"""Fan-out of the event log to live subscribers.

After a transaction that wrote events commits, a small notification (no payload: NOTIFY caps messages at ~8 KB)
goes through ``broadcaster``. In each process one pump reads new events from the log once and hands them to that
process's subscribers through bounded queues; a periodic read of the log's head bounds the delay when a notification
is lost. A subscriber that falls behind (its queue fills) is dropped from the fast path and catches up from the log
by its cursor, so a slow client costs bounded memory and never loses an event.

Consumers see none of this: ``EventHub.stream`` yields the events after a cursor, from the log and then live, with
no gap and no duplicate, and goes back to the log by itself when its subscriber falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.events.filter import EventFilter
from gateway.events.log import CursorExpired, check_retained, log_head, read_events_after
from gateway.events.notifier import Notifier
from gateway.store.database import Database

__all__ = ["CursorExpired", "EventFilter", "EventHub", "StreamEvent", "Subscriber", "UnknownCursor"]

logger = logging.getLogger("dsync.realtime")

_PAGE = 500
_QUEUE_SIZE = 1000
_DELIVERY_SLOTS = 16
_STUCK_DELIVERY_SECONDS = 0.5


@dataclass(eq=False, slots=True)
class StreamEvent:
    """One event handed to a consumer of ``EventHub.stream``. A live event is the same object for every subscriber
    it goes to: consumers may keep what they derive from it in ``shared`` (e.g. its GraphQL execution) so the work
    is done once, not once per subscriber. An event read from the log (``from_log``) is this subscriber's own."""

    row: Any
    from_log: bool = False
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def cursor(self) -> int:
        """The event's position in the log."""
        return int(self.row.cursor)


@dataclass(eq=False)
class Subscriber:
    """One open stream as the pump sees it: its filter and its bounded queue of live events."""

    filter: EventFilter
    queue: asyncio.Queue[StreamEvent | None] = field(default_factory=lambda: asyncio.Queue(maxsize=_QUEUE_SIZE))
    # Set when the queue overflowed: the subscriber then reads the log itself until it is level again.
    behind: bool = False


class UnknownCursor(ValueError):
    """``EventHub.stream`` was asked to resume after a cursor that no event has (yet)."""

    def __init__(self, cursor: int) -> None:
        super().__init__(f"no event has cursor {cursor} yet")
        self.cursor = cursor


class EventHub:
    """The realtime side of the event log in one process: one pump reads new events once and fans them out to
    every open ``stream``; it also relays API key revocations between processes."""

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
        self._listeners: list[Callable[[], None]] = []
        self.head = 0

    @property
    def subscriber_count(self) -> int:
        """Streams open in this process."""
        return len(self._subscribers)

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """The open streams' pump-side state (queue depth, ``behind``), for metrics."""
        return tuple(self._subscribers)

    @property
    def broadcast_connected(self) -> bool:
        """Whether the change-notification broadcaster is connected."""
        return self._notifier.connected

    @property
    def broadcast_reconnects(self) -> int:
        """Broadcaster connections lost or failed so far."""
        return self._notifier.reconnects

    async def start(self) -> None:
        """Read the log's head, connect the broadcaster and start the pump."""
        self.head = await self._database.query(log_head)
        await self._notifier.start()
        self._pump_task = asyncio.create_task(self._pump(), name="dsync-event-pump")

    async def stop(self) -> None:
        """Stop the pump and the broadcaster; every open stream ends."""
        # The flag as well as cancel(): on Python 3.11 a cancellation racing with a timeout can be swallowed, and a
        # loop that ignored it once would keep shutdown waiting forever.
        self._stopped = True
        self._wakeup.set()
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        for subscriber in list(self._subscribers):
            # A full queue misses this; its stream sees ``_stopped`` once it has drained the queue.
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.queue.put_nowait(None)
        await self._notifier.stop()

    def notify(self) -> None:
        """Tell every process (this one at once) that the log grew; called after each committed write."""
        self._wake()
        self._notifier.notify()

    def _wake(self) -> None:
        self._wakeup.set()
        for listener in self._listeners:
            listener()

    def on_new_events(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the log may have grown: after a commit here, or on another process's
        notification (e.g. to wake the webhook worker)."""
        self._listeners.append(listener)

    def watch_key(self, api_key_id: str, revoked: asyncio.Event) -> None:
        """``revoked`` is set when the key is revoked (here or, through the broadcaster, in another process)."""
        self._key_watchers.setdefault(api_key_id, set()).add(revoked)

    def unwatch_key(self, api_key_id: str, revoked: asyncio.Event) -> None:
        """Forget a ``watch_key`` (its connection closed)."""
        watchers = self._key_watchers.get(api_key_id)
        if watchers is not None:
            watchers.discard(revoked)
            if not watchers:
                del self._key_watchers[api_key_id]

    def revoke_key(self, api_key_id: str) -> None:
        """Close the connections authenticated with this key, in this process and (announced) in the others."""
        self._revoked(api_key_id)
        self._notifier.announce_revocation(api_key_id)

    def _revoked(self, api_key_id: str) -> None:
        for revoked in self._key_watchers.get(api_key_id, ()):
            revoked.set()

    @contextlib.asynccontextmanager
    async def delivery_turn(self) -> AsyncIterator[None]:
        """Held while one event is executed and sent to one subscriber (``stream`` holds it across each yield).

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

    async def stream(self, event_filter: EventFilter, *, after: int | None) -> AsyncGenerator[StreamEvent, None]:
        """Every event matching ``event_filter`` with a cursor above ``after`` (None: from now on), in cursor order,
        first from the log and then live, with no gap and no duplicate; ends when the hub stops.

        Raises ``UnknownCursor`` (on the first iteration) when no event has ``after`` yet, and ``CursorExpired`` when
        the events after it were pruned (older than the retention). Each event is yielded
        holding a ``delivery_turn``: consume it before asking for the next. Close the generator when done
        (``contextlib.aclosing``) so the subscription ends at once rather than when it is garbage collected."""
        subscriber = Subscriber(event_filter)
        if not self._subscribers:
            # The pump skips the log while nobody listens (writes then cost nothing extra): catch its head up.
            self.head = max(self.head, await self._database.query(log_head))
        # Registered before reading the log: whatever commits meanwhile is queued, and the cursor drops repeats.
        self._subscribers.add(subscriber)
        try:
            last = await self._start_cursor(after)
            queue = subscriber.queue
            catching_up = True
            while True:
                if catching_up:
                    subscriber.behind = False
                    rows = await self._read_log(last, event_filter)
                    for row in rows:
                        async with self.delivery_turn():
                            yield StreamEvent(row, from_log=True)
                        last = row.cursor
                    catching_up = len(rows) > 0
                    continue
                if queue.empty():
                    if subscriber.behind:
                        catching_up = True  # it fell behind: read the log from its cursor, then go live again
                        continue
                    if self._stopped:
                        return
                live = await queue.get()
                if live is None:
                    return  # the hub is stopping
                if live.cursor > last:
                    async with self.delivery_turn():
                        yield live
                    last = live.cursor
        finally:
            self._subscribers.discard(subscriber)

    async def _start_cursor(self, after: int | None) -> int:
        if after is None:
            return self.head  # live events only
        # The pump's head may trail the log (another instance wrote it a moment ago): ask the log before refusing.
        if after > self.head and after > await self._database.query(log_head):
            raise UnknownCursor(after)
        await self._database.query(lambda session: check_retained(session, after=after))
        return after

    async def _read_log(self, after: int, event_filter: EventFilter) -> list[Any]:
        where = event_filter.where()
        return await self._database.query(
            lambda session: read_events_after(session, after=after, where=where, limit=_PAGE)
        )

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
            rows = await self._database.query(lambda session: read_events_after(session, after=self.head, limit=_PAGE))
            for row in rows:
                live = StreamEvent(row)
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
