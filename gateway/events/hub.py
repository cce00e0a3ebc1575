"""Fan-out of the event log to live subscribers.

After a transaction that wrote events commits, a small notification (no payload: NOTIFY caps messages at ~8 KB)
goes through ``broadcaster``. In each process one pump reads new events from the log once and hands them to that
process's subscribers; a periodic read of the log's head bounds the delay when a notification is lost. A subscriber
that falls behind (its mailbox or its connection's send buffer fills) is dropped from the fast path and catches up
from the log by its cursor, so a slow client costs bounded memory and never loses an event.

Two ways to the subscriber, one order. A stream reading the log, or one whose consumer gave no ``LiveSink``, gets
live events in its mailbox and yields them. A stream that is level with the log and has a sink hands it to the pump:
the pump then renders each event once per group of sinks with the same selection and offers the result to every
sink of the group directly (one string splice and one buffer append per subscriber, no task switch); the stream's
generator sleeps until its subscriber falls behind or the hub stops. Both write to the same per-connection buffer in
cursor order, so a subscriber sees one ordered sequence whichever way each event went.

``EventHub.attach`` does the same without a generator: the hub itself catches the subscriber up from the log (a
short-lived task handing rows to the sink) and then the pump serves it, so an idle subscriber costs its
``Subscriber`` and its sink only.

Consumers of ``stream`` see none of this: it yields the events after a cursor, from the log and then live, with no
gap and no duplicate, and goes back to the log by itself when its subscriber falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.events.filter import EventFilter
from gateway.events.log import CursorExpired, check_retained, log_head, read_events_after
from gateway.events.notifier import Notifier
from gateway.store.database import Database

__all__ = [
    "CursorExpired",
    "EventFilter",
    "EventHub",
    "AttachedSink",
    "LiveSink",
    "Mailbox",
    "StreamEvent",
    "Subscriber",
    "UnknownCursor",
]

logger = logging.getLogger("dsync.realtime")

_PAGE = 500
_QUEUE_SIZE = 1000
_DELIVERY_SLOTS = 16
_STUCK_DELIVERY_SECONDS = 0.5
# The pump gives the event loop back after this many deliveries, so SCIM requests in the same process take turns
# with a burst's fan-out instead of waiting for all of it.
_SLICE = 2000
# While the process is busy with requests (``busy``), the pump takes at most this share of the loop: after a slice
# that took t it waits t * (1 - share) / share (at most _MAX_PAUSE). Events waiting meanwhile are offered together
# afterwards, and batched subscribers get them in fewer frames.
_SHARE_WHILE_BUSY = 0.25
_MAX_PAUSE = 0.05


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


class LiveSink(Protocol):
    """Where the pump puts a live subscriber's events itself (see the module's docstring)."""

    @property
    def group(self) -> Hashable:
        """Sinks with equal groups receive the same rendering of an event."""

    async def render(self, event: StreamEvent) -> object | None:
        """The event as this sink's group sends it, computed once per group and event; None when it cannot be
        shared (e.g. its execution had errors): each subscriber of the group then takes the slow path."""

    def offer(self, rendered: object) -> bool:
        """Queue the rendered event for sending, without waiting; False when the connection's buffer is full."""

    def pending(self) -> int:
        """Events queued by ``offer`` and not yet written (for metrics)."""


class AttachedSink(LiveSink, Protocol):
    """A sink the hub serves by itself (``EventHub.attach``): no generator, no task while the subscriber keeps up."""

    async def deliver(self, rows: list[Any]) -> bool:
        """Send these rows read from the log (this subscriber's own, in order) and wait until they are written; False
        when the subscriber is gone (its connection closed): the catch-up stops there."""

    def end(self, error: str | None) -> None:
        """The subscription ends: the hub stopped (``error`` None) or reading the log failed."""


class Mailbox:
    """A subscriber's bounded FIFO of live events and the one waiter a stream needs (lighter than asyncio.Queue; the
    deque exists only while events wait: most subscribers are idle, or level and served through their sink)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[StreamEvent | None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items is not None else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return self.qsize() >= _QUEUE_SIZE

    @property
    def waiting(self) -> bool:
        """Whether the stream is waiting for a live event."""
        return self._waiter is not None

    def put_nowait(self, item: StreamEvent | None) -> bool:
        """Append unless full (False then); wakes the stream."""
        if self._items is None:
            self._items = deque()
        elif len(self._items) >= _QUEUE_SIZE:
            return False
        self._items.append(item)
        self.wake()
        return True

    def get_nowait(self) -> StreamEvent | None:
        assert self._items is not None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until ``wake`` (a put, a fall-behind, the hub stopping)."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None


@dataclass(eq=False, slots=True)
class Subscriber:
    """One open stream as the pump sees it: its filter, its mailbox of live events, its sink while on the fast
    path, and the cursor of the last event the pump offered to that sink."""

    filter: EventFilter
    queue: Mailbox = field(default_factory=Mailbox)
    # Set when the mailbox or the sink's buffer overflowed: the subscriber then reads the log itself until level.
    behind: bool = False
    sink: LiveSink | None = None
    last: int = 0
    # Attached subscribers (``EventHub.attach``): their sink, and the task catching them up from the log while any.
    attached: AttachedSink | None = None
    catching_up: asyncio.Task[None] | None = None

    def lag(self) -> int:
        """Events waiting to be sent to this subscriber."""
        return self.queue.qsize() + (self.sink.pending() if self.sink is not None else 0)


class UnknownCursor(ValueError):
    """``EventHub.stream`` was asked to resume after a cursor that no event has (yet)."""

    def __init__(self, cursor: int) -> None:
        super().__init__(f"no event has cursor {cursor} yet")
        self.cursor = cursor


_UNRENDERED = object()


class EventHub:
    """The realtime side of the event log in one process: one pump reads new events once and fans them out to
    every open ``stream``; it also relays API key revocations between processes."""

    def __init__(
        self,
        database: Database,
        broadcast_url: str,
        *,
        poll_seconds: float = 1.0,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self._database = database
        self._busy = busy  # whether requests are in flight in this process: the pump then yields more
        self._notifier = Notifier(
            broadcast_url, on_notification=self._wake, on_reconnect=self._wake, on_revocation=self._revoked
        )
        self._key_watchers: dict[str, set[Callable[[], None]]] = {}
        self._poll_seconds = poll_seconds
        self._subscribers: dict[Subscriber, None] = {}  # insertion-ordered: fan-out in subscription order
        # The same subscribers by the directory their filter names (None: every directory of the scope). An event
        # visits only its directory's subscribers and the unscoped ones: with 10,000 dashboards on other customers'
        # directories, testing every filter per event cost ~1 s of CPU per second at 100 writes/s.
        self._by_directory: dict[str | None, dict[Subscriber, None]] = {}
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
        """The open streams' pump-side state (lag, ``behind``), for metrics."""
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
            if subscriber.attached is not None and subscriber.catching_up is None:
                self.detach(subscriber)
                subscriber.attached.end(None)
                continue
            # A full mailbox misses this; its stream sees ``_stopped`` once it has drained the mailbox.
            if not subscriber.queue.put_nowait(None):
                subscriber.queue.wake()
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

    def watch_key(self, api_key_id: str, revoked: Callable[[], None]) -> None:
        """``revoked`` is called when the key is revoked (here or, through the broadcaster, in another process)."""
        self._key_watchers.setdefault(api_key_id, set()).add(revoked)

    def unwatch_key(self, api_key_id: str, revoked: Callable[[], None]) -> None:
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
        for revoked in list(self._key_watchers.get(api_key_id, ())):
            revoked()

    @contextlib.asynccontextmanager
    async def delivery_turn(self) -> AsyncIterator[None]:
        """Held while one batch of events is executed and sent to one subscriber on the slow path (``stream``
        holds it across each yield).

        Many subscribers catching up at once (a reconnect storm) would otherwise all be ready together, and each
        turn of the event loop would run them all before the next step of any SCIM request. With a few slots,
        catch-ups take turns with everything else. A send stuck on a client that stopped reading gives its slot
        back after a moment."""
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
        async with contextlib.aclosing(self.stream_batches(event_filter, after=after, max_batch=1)) as batches:
            async for batch in batches:
                yield batch[0]

    async def stream_batches(
        self, event_filter: EventFilter, *, after: int | None, max_batch: int, sink: LiveSink | None = None
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """``stream``, in lists of up to ``max_batch`` events: whatever is waiting goes together.

        With a ``sink``, live events go to the sink instead of being yielded while the subscriber keeps up (see the
        module's docstring): the generator then yields only what comes from the log or was queued before."""
        subscriber = Subscriber(event_filter)
        await self._register(subscriber)
        try:
            last = await self._start_cursor(after)
            mailbox = subscriber.queue
            catching_up = True
            while True:
                if catching_up:
                    subscriber.behind = False
                    rows = await self._read_log(last, event_filter)
                    for start in range(0, len(rows), max_batch):
                        chunk = rows[start : start + max_batch]
                        async with self.delivery_turn():
                            yield [StreamEvent(row, from_log=True) for row in chunk]
                        last = chunk[-1].cursor
                    catching_up = len(rows) > 0
                    continue
                if mailbox.empty():
                    if subscriber.behind:
                        catching_up = True  # it fell behind: read the log from its cursor, then go live again
                        continue
                    if self._stopped:
                        return
                    if sink is not None:
                        # Level with the log: the pump delivers from here until the subscriber falls behind.
                        subscriber.last, subscriber.sink = last, sink
                        try:
                            while not subscriber.behind and not self._stopped:
                                await mailbox.wait()
                        finally:
                            subscriber.sink = None
                        last = subscriber.last
                        continue
                    await mailbox.wait()
                    continue
                batch: list[StreamEvent] = []
                while len(batch) < max_batch and not mailbox.empty():
                    live = mailbox.get_nowait()
                    if live is None:
                        self._stopped = True  # the hub is stopping: send what came before, then end
                        break
                    if live.cursor > last:
                        batch.append(live)
                        last = live.cursor
                if batch:
                    async with self.delivery_turn():
                        yield batch
        finally:
            self._unregister(subscriber)

    async def attach(self, event_filter: EventFilter, *, after: int | None, sink: AttachedSink) -> Subscriber:
        """``stream_batches`` without a generator: the hub catches the subscriber up from the log by itself (a
        short-lived task, rows handed to ``sink.deliver``), then the pump serves it through the sink. A subscriber
        that keeps up costs its ``Subscriber`` and its sink, nothing else. Raises ``UnknownCursor`` and
        ``CursorExpired`` as ``stream`` does; ``detach`` when the subscription ends."""
        subscriber = Subscriber(event_filter, attached=sink)
        await self._register(subscriber)
        try:
            subscriber.last = await self._start_cursor(after)
        except BaseException:
            self.detach(subscriber)
            raise
        self._catch_up(subscriber)
        return subscriber

    def detach(self, subscriber: Subscriber) -> None:
        """The end of an ``attach``: the pump forgets the subscriber and a catch-up in progress stops."""
        self._unregister(subscriber)
        subscriber.sink = None
        task, subscriber.catching_up = subscriber.catching_up, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _register(self, subscriber: Subscriber) -> None:
        if not self._subscribers:
            # The pump skips the log while nobody listens (writes then cost nothing extra): catch its head up.
            self.head = max(self.head, await self._database.query(log_head))
        # Registered before reading the log: whatever commits meanwhile is queued, and the cursor drops repeats.
        self._subscribers[subscriber] = None
        self._by_directory.setdefault(subscriber.filter.directory_id, {})[subscriber] = None

    def _unregister(self, subscriber: Subscriber) -> None:
        self._subscribers.pop(subscriber, None)
        directory_id = subscriber.filter.directory_id
        bucket = self._by_directory.get(directory_id)
        if bucket is not None:
            bucket.pop(subscriber, None)
            if not bucket:
                del self._by_directory[directory_id]

    def _catch_up(self, subscriber: Subscriber) -> None:
        if subscriber.catching_up is None:
            subscriber.catching_up = asyncio.create_task(self._catch_up_from_log(subscriber))

    async def _catch_up_from_log(self, subscriber: Subscriber) -> None:
        """The loop of ``stream_batches`` for an attached subscriber, until it is level with the log again."""
        sink = subscriber.attached
        assert sink is not None
        last, mailbox = subscriber.last, subscriber.queue
        try:
            while True:
                subscriber.behind = False
                rows = await self._read_log(last, subscriber.filter)
                if rows:
                    async with self.delivery_turn():
                        if not await sink.deliver(rows):
                            return
                    last = rows[-1].cursor
                    continue
                while not mailbox.empty() and not subscriber.behind:
                    waiting: list[Any] = []
                    while not mailbox.empty():
                        live = mailbox.get_nowait()
                        if live is None:
                            self._stopped = True
                            break
                        if live.cursor > last:
                            waiting.append(live.row)
                            last = live.cursor
                    if waiting:
                        async with self.delivery_turn():
                            if not await sink.deliver(waiting):
                                return
                if subscriber.behind:
                    continue  # its mailbox overflowed meanwhile: back to the log
                if subscriber.catching_up is None:
                    return  # detached while the last rows were written
                if self._stopped:
                    subscriber.catching_up = None
                    self.detach(subscriber)
                    sink.end(None)
                    return
                # Level with the log, with nothing waiting: the pump delivers from here.
                subscriber.last, subscriber.sink, subscriber.catching_up = last, sink, None
                return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("catching a subscriber up from the log failed; its subscription ends", exc_info=True)
            if subscriber.catching_up is None:
                return  # detached meanwhile (its connection closed)
            subscriber.catching_up = None
            self.detach(subscriber)
            sink.end("Reading the event log failed: resubscribe with the last cursor you received")

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
        delivered = 0
        started = time.perf_counter()
        while True:
            rows = await self._database.query(lambda session: read_events_after(session, after=self.head, limit=_PAGE))
            for row in rows:
                delivered += await self._fan_out(StreamEvent(row))
                self.head = row.cursor
                if delivered >= _SLICE:
                    delivered = 0
                    spent = time.perf_counter() - started
                    busy = self._busy is not None and self._busy()
                    await asyncio.sleep(
                        min(spent * (1 - _SHARE_WHILE_BUSY) / _SHARE_WHILE_BUSY, _MAX_PAUSE) if busy else 0
                    )
                    started = time.perf_counter()
            if len(rows) < _PAGE:
                return

    async def _fan_out(self, live: StreamEvent) -> int:
        row, cursor = live.row, live.cursor
        rendered: dict[Hashable, object] = {}
        delivered = 0
        candidates = list(self._by_directory.get(None, ()))
        if row.directory_id is not None:
            candidates += self._by_directory.get(row.directory_id, ())
        for subscriber in candidates:
            if subscriber.behind or not subscriber.filter.matches(row):
                continue
            delivered += 1
            sink = subscriber.sink
            if sink is None:
                if not subscriber.queue.put_nowait(live):
                    subscriber.behind = True
                continue
            group = sink.group
            body = rendered.get(group, _UNRENDERED)
            if body is _UNRENDERED:
                try:
                    body = rendered[group] = await sink.render(live)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("rendering a live event failed; its subscribers read it from the log", exc_info=True)
                    body = rendered[group] = None
            if subscriber.sink is not sink or cursor <= subscriber.last:
                # It fell behind while the event rendered: its generator reads the log from its own cursor.
                continue
            if body is not None and sink.offer(body):
                subscriber.last = cursor
            else:
                subscriber.behind = True
                subscriber.queue.wake()
                if subscriber.attached is not None:
                    subscriber.sink = None
                    self._catch_up(subscriber)
        return delivered
