"""Server pings for every WebSocket connection of a process from one task: a timer wheel, not a task per connection.

A dashboard left open holds its connection for hours; 10,000 of them each with their own keepalive task, timeout
and revocation event cost ~3 KiB apiece and 10,000 wake-ups per ping interval. Here connections sit in one of
``_SLOTS`` buckets; every ``ping_seconds / _SLOTS`` one task visits the next bucket, a few connections per step of
the event loop, so each connection is visited once per interval and the pings of a crowd are spread over it rather
than sent in bursts that would delay live events.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

_SLOTS = 64
# Connections visited per step of the event loop: a visit pings each and (a moment later) reads its pong, so 10,000
# connections visited at once held live deliveries up for tens of milliseconds.
_PER_STEP = 32


class Pinged(Protocol):
    """A connection as the wheel sees it."""

    async def keepalive_tick(self) -> None:
        """Called once per ping interval: close a peer that did not answer the last ping, or ping it."""


class PingWheel:
    """The connections of one event loop (see the module's docstring)."""

    def __init__(self, ping_seconds: float) -> None:
        self._tick = ping_seconds / _SLOTS
        self._buckets: list[dict[Pinged, None]] = [{} for _ in range(_SLOTS)]
        self._position = 0
        self._count = 0
        self._task: asyncio.Task[None] | None = None

    def add(self, connection: Pinged) -> None:
        # The bucket visited last: its first ping comes about one interval after it connected.
        self._buckets[(self._position - 1) % _SLOTS][connection] = None
        self._count += 1
        task = self._task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.create_task(self._turn(), name="dsync-ws-keepalive")

    def remove(self, connection: Pinged) -> None:
        for bucket in self._buckets:
            if bucket.pop(connection, 0) is None:
                self._count -= 1
                return

    async def _turn(self) -> None:
        # Ends when no connection is left (a test counting tasks, or a process with no dashboard, sees none).
        while self._count > 0:
            await asyncio.sleep(self._tick)
            bucket = self._buckets[self._position]
            self._position = (self._position + 1) % _SLOTS
            for visited, connection in enumerate(list(bucket), 1):
                if connection in bucket:  # not closed by an earlier tick of this visit
                    with contextlib.suppress(Exception):  # one broken connection never stops the others' pings
                        await connection.keepalive_tick()
                if visited % _PER_STEP == 0:
                    await asyncio.sleep(0)
        self._task = None
