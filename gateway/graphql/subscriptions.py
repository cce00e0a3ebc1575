"""Subscriptions: the event log first (after a cursor), then live events, with no gap and no duplicate."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from gateway.events.hub import EventFilter, EventHub
from gateway.graphql.context import Info
from gateway.graphql.errors import bad_input, not_found
from gateway.graphql.types import Event, event_names
from gateway.observe.metrics import DELIVERED_FROM_LOG, DELIVERED_LIVE
from gateway.store import models


async def _cursor(after: str | None, hub: EventHub) -> int:
    if after is None:
        return hub.head  # live events only
    if not (after.isascii() and after.isdigit()) or len(after) > 19:
        raise bad_input(f"invalid cursor {after!r}: pass an Event.cursor")
    cursor = int(after)
    # The pump's head may trail the log (another instance wrote it a moment ago): ask the log before refusing.
    if cursor > hub.head and cursor > await hub.read_head():
        raise bad_input(f"unknown cursor {after!r}: no event has it yet")
    return cursor


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
        context = info.context
        principal = context.principal
        hub: EventHub = context.hub
        scope = principal.organization_id
        if organization_id is not None:
            if not principal.can_see(str(organization_id)):
                raise not_found("Organization", str(organization_id))
            scope = str(organization_id)
        if directory_id is not None:
            # A fresh lookup: the context (and its DataLoaders) lives as long as the WebSocket connection. No id holds
            # a NUL (PostgreSQL text cannot): such an id is simply not found, on every store.
            wanted = str(directory_id)
            directory = (
                None
                if "\x00" in wanted
                else await context.database.query(lambda session: session.get(models.Directory, wanted))
            )
            if directory is None or not principal.can_see(directory.organization_id):
                raise not_found("Directory", str(directory_id))
        event_filter = EventFilter(
            organization_id=scope,
            directory_id=str(directory_id) if directory_id is not None else None,
            names=event_names(events),
        )
        # Register before reading the log: whatever commits meanwhile is queued, and the cursor drops repeats.
        async with hub.subscribe(event_filter) as subscriber:
            last = await _cursor(after, hub)
            catching_up = True
            while True:
                if catching_up:
                    subscriber.behind = False
                    rows = await hub.read_after(last, event_filter)
                    for row in rows:
                        DELIVERED_FROM_LOG.inc()
                        async with hub.delivery_turn():
                            yield Event.from_row(row)
                        last = row.cursor
                    catching_up = len(rows) > 0
                    continue
                if subscriber.behind and subscriber.queue.empty():
                    catching_up = True  # it fell behind: read the log from its cursor, then go live again
                    continue
                live = await subscriber.queue.get()
                if live is None:
                    return  # the server is shutting down
                if live.cursor > last:
                    DELIVERED_LIVE.inc()
                    event = live.shared.get("event")
                    if event is None:
                        event = live.shared["event"] = Event.from_row(live.row, shared=True)
                    async with hub.delivery_turn():
                        yield event
                    last = live.cursor
