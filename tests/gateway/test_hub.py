"""``EventHub.stream`` against a real database: the log, then live events, with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest
from sqlalchemy.orm import Session

from gateway.events import hub as hub_module
from gateway.events.filter import EventFilter
from gateway.events.hub import EventHub, StreamEvent, UnknownCursor
from gateway.events.log import log_head, record_events
from gateway.events.payloads import EventData, EventName
from gateway.store.database import Database
from tests.conftest import DirectoryFixture, make_directory
from tests.waiting import eventually

Stream = AsyncGenerator[StreamEvent, None]


@pytest.fixture
async def hub(database: Database) -> AsyncIterator[EventHub]:
    event_hub = EventHub(database, "memory://", poll_seconds=0.05)
    await event_hub.start()
    database.on_commit(event_hub.notify)
    yield event_hub
    await event_hub.stop()


@pytest.fixture
async def place(database: Database) -> DirectoryFixture:
    return await make_directory(database)


async def write(database: Database, place: DirectoryFixture, count: int) -> list[int]:
    """Commit ``count`` events in one transaction; their cursors."""

    def job(session: Session) -> int:
        events = [
            (EventName.GROUP_CREATED, cast(EventData, {"object": "directory_group", "id": f"group_{n}", "name": "G"}))
            for n in range(count)
        ]
        record_events(session, organization_id=place.organization_id, directory_id=place.id, events=events)
        return 0

    await database.transaction(job)
    head = await database.query(log_head)
    return list(range(head - count + 1, head + 1))


async def take(stream: Stream, count: int) -> list[StreamEvent]:
    async with asyncio.timeout(10):
        return [await anext(stream) for _ in range(count)]


def cursors(items: list[StreamEvent]) -> list[int]:
    return [item.cursor for item in items]


def waiting_live(hub: EventHub) -> int:
    """Streams done with the log and waiting for a live event."""
    return sum(1 for subscriber in hub.subscribers if subscriber.queue.waiting)


def directory_filter(place: DirectoryFixture) -> EventFilter:
    return EventFilter(organization_id=place.organization_id, directory_id=place.id)


async def test_log_then_live_without_gap_or_duplicate(
    hub: EventHub, database: Database, place: DirectoryFixture
) -> None:
    start = await database.query(log_head)
    logged = await write(database, place, 3)
    first, second = hub.stream(directory_filter(place), after=start), hub.stream(directory_filter(place), after=start)
    try:
        head = await take(first, 1)
        assert hub.subscriber_count == 1
        # Written while the stream is still in the log: queued live as well, and delivered once.
        during = await write(database, place, 3)
        rest = await take(first, 5)
        assert cursors(head + rest) == logged + during
        assert all(item.from_log for item in head + rest)
        replayed = await take(second, 6)
        assert cursors(replayed) == logged + during
        assert replayed[0].shared is not head[0].shared  # read from the log: each stream's own

        a_next, b_next = asyncio.ensure_future(take(first, 2)), asyncio.ensure_future(take(second, 2))
        await eventually(lambda: waiting_live(hub) == 2)
        live = await write(database, place, 2)
        a, b = await a_next, await b_next
        assert cursors(a) == cursors(b) == live
        assert not any(item.from_log for item in a + b)
        assert a[0] is b[0] and a[0].shared is b[0].shared  # one object for every subscriber
    finally:
        await first.aclose()
        await second.aclose()
    assert hub.subscriber_count == 0


async def test_holds_a_delivery_turn_while_the_consumer_has_an_event(
    hub: EventHub, database: Database, place: DirectoryFixture
) -> None:
    start = await database.query(log_head)
    await write(database, place, 2)
    stream = hub.stream(directory_filter(place), after=start)
    free = hub._delivery_slots._value
    try:
        await take(stream, 1)
        assert hub._delivery_slots._value == free - 1
        await take(stream, 1)
        assert hub._delivery_slots._value == free - 1
    finally:
        await stream.aclose()
    assert hub._delivery_slots._value == free


async def test_resume_after_a_cursor(hub: EventHub, database: Database, place: DirectoryFixture) -> None:
    logged = await write(database, place, 5)
    resumed = hub.stream(directory_filter(place), after=logged[2])
    from_now = hub.stream(directory_filter(place), after=None)
    try:
        assert cursors(await take(resumed, 2)) == logged[3:]
        waiting = asyncio.ensure_future(anext(from_now))
        await eventually(lambda: hub.subscriber_count == 2)
        live = await write(database, place, 1)
        assert cursors(await take(resumed, 1)) == live
        async with asyncio.timeout(10):
            assert (await waiting).cursor == live[0]  # nothing from before it opened
    finally:
        await resumed.aclose()
        await from_now.aclose()

    unknown = hub.stream(directory_filter(place), after=logged[-1] + 10)
    with pytest.raises(UnknownCursor):
        await anext(unknown)
    assert hub.subscriber_count == 0


async def test_overflow_falls_back_to_the_log_without_loss(
    hub: EventHub, database: Database, place: DirectoryFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "_QUEUE_SIZE", 2)
    stream = hub.stream(directory_filter(place), after=None)
    try:
        waiting = asyncio.ensure_future(anext(stream))
        await eventually(lambda: hub.subscriber_count == 1)
        first = await write(database, place, 1)
        async with asyncio.timeout(10):
            assert (await waiting).cursor == first[0]
        # The consumer holds the first event while ten more commit: its queue of two overflows.
        burst = await write(database, place, 10)
        await eventually(lambda: hub.subscribers[0].behind)
        caught_up = await take(stream, 10)
        assert cursors(caught_up) == burst
        assert caught_up[0].from_log is False and caught_up[-1].from_log is True

        live = await write(database, place, 2)
        assert cursors(await take(stream, 2)) == live
        assert not hub.subscribers[0].behind
    finally:
        await stream.aclose()


async def test_a_busy_process_spaces_the_pump_and_still_delivers_everything_in_order(
    database: Database, place: DirectoryFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "_SLICE", 3)  # pause after every few deliveries
    asked: list[bool] = []

    def busy() -> bool:  # requests always in flight: fan-out only ever gets its share
        asked.append(True)
        return True

    event_hub = EventHub(database, "memory://", poll_seconds=0.05, busy=busy)
    await event_hub.start()
    database.on_commit(event_hub.notify)
    first, second = (
        event_hub.stream(directory_filter(place), after=None),
        event_hub.stream(directory_filter(place), after=None),
    )
    try:
        waiting = [asyncio.ensure_future(anext(first)), asyncio.ensure_future(anext(second))]
        await eventually(lambda: event_hub.subscriber_count == 2)
        written = await write(database, place, 40)
        async with asyncio.timeout(10):
            heads = [await w for w in waiting]
        assert [head.cursor for head in heads] == [written[0]] * 2
        assert cursors(await take(first, 39)) == written[1:]
        assert cursors(await take(second, 39)) == written[1:]
        assert asked
    finally:
        await first.aclose()
        await second.aclose()
        await event_hub.stop()


async def test_stream_ends_when_the_hub_stops(
    hub: EventHub, database: Database, place: DirectoryFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "_QUEUE_SIZE", 2)
    idle = hub.stream(directory_filter(place), after=None)
    full = hub.stream(directory_filter(place), after=None)
    idle_next, full_next = asyncio.ensure_future(anext(idle)), asyncio.ensure_future(anext(full))
    await eventually(lambda: hub.subscriber_count == 2)
    first = await write(database, place, 1)
    async with asyncio.timeout(10):
        assert (await idle_next).cursor == (await full_next).cursor == first[0]
        queued = await write(database, place, 2)  # fills the queue of the stream whose consumer holds an event
        assert cursors(await take(idle, 2)) == queued
        idle_next = asyncio.ensure_future(anext(idle))  # waits on an empty queue
        await eventually(lambda: any(subscriber.queue.full() for subscriber in hub.subscribers))
        await hub.stop()
        with pytest.raises(StopAsyncIteration):
            await idle_next
        # The full queue had no room for the hub's last word: what it holds still arrives, then the stream ends.
        assert cursors(await take(full, 2)) == queued
        with pytest.raises(StopAsyncIteration):
            await anext(full)
    assert hub.subscriber_count == 0


class ListSink:
    """A ``LiveSink`` that keeps what it is offered, up to ``room`` events."""

    group = "one selection"

    def __init__(self, room: int) -> None:
        self.room = room
        self.offered: list[int] = []
        self.renders = 0

    async def render(self, event: StreamEvent) -> object | None:
        self.renders += 1
        return event.cursor

    def offer(self, rendered: object) -> bool:
        if len(self.offered) >= self.room:
            return False
        self.offered.append(int(str(rendered)))
        return True

    def pending(self) -> int:
        return 0


async def test_a_level_subscriber_is_served_through_its_sink_and_falls_back_to_the_log_when_it_is_full(
    hub: EventHub, database: Database, place: DirectoryFixture
) -> None:
    start = await database.query(log_head)
    logged = await write(database, place, 3)
    sink = ListSink(room=4)
    stream = hub.stream_batches(directory_filter(place), after=start, max_batch=2, sink=sink)
    try:
        # From the log first, in lists of up to two.
        assert [cursors(batch) for batch in [await anext(stream), await anext(stream)]] == [logged[:2], logged[2:]]
        waiting = asyncio.ensure_future(anext(stream))
        await eventually(lambda: hub.subscribers[0].sink is sink)
        live = await write(database, place, 10)
        # The sink took four; the fifth did not fit: the stream reads the rest from the log, in order.
        async with asyncio.timeout(10):
            yielded = cursors(await waiting)
            while yielded[-1] != live[-1]:
                yielded += cursors(await anext(stream))
        assert sink.offered + yielded == live
        assert sink.renders == 5  # once per event offered (here one subscriber: one render each)
        sink.room = 100
        waiting = asyncio.ensure_future(anext(stream))
        await eventually(lambda: hub.subscribers[0].sink is sink)
        more = await write(database, place, 2)
        await eventually(lambda: sink.offered[-2:] == more)
        assert not waiting.done()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    finally:
        await stream.aclose()
