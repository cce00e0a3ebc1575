"""Subscriptions: the event log first (after a cursor), then live events, with no gap and no duplicate."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import strawberry

from gateway.events.hub import CursorExpired, EventHub, UnknownCursor
from gateway.graphql.context import Info
from gateway.graphql.errors import bad_input, cursor_expired
from gateway.graphql.event_scope import event_scope
from gateway.graphql.types import Event
from gateway.observe.metrics import DELIVERED_FROM_LOG, DELIVERED_LIVE


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
            async with contextlib.aclosing(hub.stream(event_filter, after=cursor)) as stream:
                async for item in stream:
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
