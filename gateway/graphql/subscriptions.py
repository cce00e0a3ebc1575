"""Subscriptions: the event log first (after a cursor), then live events, with no gap and no duplicate.

Over graphql-transport-ws a resolver only validates, authorizes and checks the cursor, then hands the subscription
to the hub (``FrameSink.attach``) and unwinds its operation (``Parked``): the hub catches it up from the log and its
pump writes live events as prebuilt frames (gateway.graphql.live_frames), so an idle subscriber keeps no operation
chain. Elsewhere (no graphql-transport-ws operation) the resolvers yield events from ``EventHub.stream_batches``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import strawberry

from gateway.events.hub import CursorExpired, EventHub, UnknownCursor
from gateway.graphql.context import Info
from gateway.graphql.errors import bad_input, cursor_expired
from gateway.graphql.event_scope import event_scope
from gateway.graphql.live_frames import Parked, live_sink
from gateway.graphql.types import Event
from gateway.observe.metrics import DELIVERED_FROM_LOG, DELIVERED_LIVE

_MAX_BATCH = 1000


def _cursor(after: str | None) -> int | None:
    if after is None:
        return None  # live events only
    if not (after.isascii() and after.isdigit()) or len(after) > 19:
        raise bad_input(f"invalid cursor {after!r}: pass an Event.cursor")
    return int(after)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every event after `after` (an Event.cursor) in order, then each new one as it commits. "
        "Reconnect with the last cursor you received to resume without a gap."
    )
    async def directory_events(
        self,
        info: Info,
        organization_id: strawberry.ID | None = None,
        directory_id: strawberry.ID | None = None,
        events: list[str] | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[Event, None]:
        hub: EventHub = info.context.hub
        event_filter = await event_scope(
            info, organization_id=organization_id, directory_id=directory_id, events=events, deleted_directories=False
        )
        cursor = _cursor(after)
        try:
            sink = live_sink(max_batch=0)
            if sink is not None:  # over graphql-transport-ws: the hub serves it, this operation's chain unwinds
                await sink.attach(hub, event_filter, after=cursor)
                raise Parked
            stream = hub.stream_batches(event_filter, after=cursor, max_batch=1)
            async with contextlib.aclosing(stream) as batches:
                async for (item,) in batches:
                    if item.from_log:
                        DELIVERED_FROM_LOG.inc()
                        yield Event.from_row(item.row)
                        continue
                    DELIVERED_LIVE.inc()
                    # The same item goes to every subscriber: its Event (and so its execution) is built once.
                    event = item.shared.get("event")
                    if event is None:
                        event = item.shared["event"] = Event.from_row(item.row, shared=True)
                    yield event
        except UnknownCursor:
            raise bad_input(f"unknown cursor {after!r}: no event has it yet") from None
        except CursorExpired as expired:
            raise cursor_expired(expired) from None

    @strawberry.subscription(
        description="`directoryEvents` in lists: the events waiting for this subscriber (up to `maxBatch`, in "
        "order) arrive together in one message, so a burst costs far fewer messages. Same arguments and resume "
        "rule: reconnect with the cursor of the last event of the last list."
    )
    async def directory_event_batches(
        self,
        info: Info,
        organization_id: strawberry.ID | None = None,
        directory_id: strawberry.ID | None = None,
        events: list[str] | None = None,
        after: str | None = None,
        max_batch: int = 100,
    ) -> AsyncGenerator[list[Event], None]:
        if not 1 <= max_batch <= _MAX_BATCH:
            raise bad_input(f"maxBatch must be between 1 and {_MAX_BATCH}")
        hub: EventHub = info.context.hub
        event_filter = await event_scope(
            info, organization_id=organization_id, directory_id=directory_id, events=events, deleted_directories=False
        )
        cursor = _cursor(after)
        try:
            sink = live_sink(max_batch=max_batch)
            if sink is not None:
                await sink.attach(hub, event_filter, after=cursor)
                raise Parked
            stream = hub.stream_batches(event_filter, after=cursor, max_batch=max_batch)
            async with contextlib.aclosing(stream) as batches:
                async for batch in batches:
                    from_log = sum(1 for item in batch if item.from_log)
                    DELIVERED_FROM_LOG.inc(from_log)
                    DELIVERED_LIVE.inc(len(batch) - from_log)
                    yield [Event.from_row(item.row) for item in batch]
        except UnknownCursor:
            raise bad_input(f"unknown cursor {after!r}: no event has it yet") from None
        except CursorExpired as expired:
            raise cursor_expired(expired) from None
