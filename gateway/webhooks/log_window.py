"""The event log as the webhook worker reads it: in windows of ``size`` consecutive cursors, each read once and
shared by every endpoint of the process, with each event's webhook body built once.

Endpoints deliver from their own cursors, but during a sync they are mostly at about the same place: ten endpoints
reading the log page by page each (filtered in SQL) cost ten reads per page and ten bodies per event. Windows are
aligned (cursors ``start+1 … start+size``), so endpoints a few events apart share one; each endpoint filters the
window's rows in Python. A window the log has moved past is final and kept (the newest few); the window at the head
of the log is read again when the log may have grown (a wake) or, without wakes, after ``poll_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from gateway.events.log import read_events_after
from gateway.store.database import Database
from gateway.webhooks.signing import webhook_body

WINDOW_SIZE = 500
_WINDOWS_KEPT = 8


@dataclass
class _Window:
    rows: list[Any]
    final: bool  # an event after the window was already in the log: the window cannot change
    generation: int
    read_at: float
    bodies: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Slice:
    """What an endpoint at some cursor reads next: ``rows`` after its cursor (unfiltered, in cursor order), and
    ``cursor``, the position it reaches once it has handled them all (past a gap, the window's end)."""

    rows: list[Any]
    cursor: int
    window: _Window

    def body(self, row: Any) -> bytes:
        """The event's webhook body, built once for every endpoint."""
        cursor = int(row.cursor)
        body = self.window.bodies.get(cursor)
        if body is None:
            body = self.window.bodies[cursor] = webhook_body(row)
        return body


class LogWindows:
    """The process's shared windows of the event log."""

    def __init__(self, database: Database, *, poll_seconds: float, size: int = WINDOW_SIZE) -> None:
        self._database = database
        self._poll_seconds = poll_seconds
        self._size = size
        self._windows: OrderedDict[int, _Window] = OrderedDict()
        self._reading: dict[int, asyncio.Task[_Window]] = {}
        self._generation = 0
        self.reads = 0  # windows read from the store (tests and benchmarks compare it to the endpoints served)

    def grew(self) -> None:
        """The log may have grown: the window at its head is read again when next asked for."""
        self._generation += 1

    async def after(self, cursor: int) -> Slice:
        """The rows after ``cursor`` in its window (none yet: an empty slice at ``cursor``)."""
        start = cursor - cursor % self._size
        window = self._windows.get(start)
        if window is None or self._stale(window, cursor):
            window = await self._read(start)
        rows = [row for row in window.rows if row.cursor > cursor]
        if rows:
            return Slice(rows=rows, cursor=int(rows[-1].cursor), window=window)
        # Nothing after the cursor here: if the window is final, the rest of it is a gap (pruned or rolled back).
        return Slice(rows=[], cursor=start + self._size if window.final else cursor, window=window)

    def _stale(self, window: _Window, cursor: int) -> bool:
        if window.final or any(row.cursor > cursor for row in window.rows):
            return False
        return window.generation != self._generation or time.monotonic() - window.read_at >= self._poll_seconds

    async def _read(self, start: int) -> _Window:
        task = self._reading.get(start)
        if task is None:  # one read per window at a time, whatever the number of endpoints waiting for it
            task = self._reading[start] = asyncio.create_task(self._load(start))
            task.add_done_callback(lambda _: self._reading.pop(start, None))
        return await asyncio.shield(task)

    async def _load(self, start: int) -> _Window:
        generation, end, size = self._generation, start + self._size, self._size

        def read(session: Session) -> list[Any]:
            # One row past the window says the window is final.
            return read_events_after(session, after=start, limit=size + 1)

        rows = await self._database.query(read)
        self.reads += 1
        window = _Window(
            rows=[row for row in rows if row.cursor <= end],
            final=any(row.cursor > end for row in rows),
            generation=generation,
            read_at=time.monotonic(),
        )
        previous = self._windows.get(start)
        if previous is not None:
            window.bodies = previous.bodies  # a re-read tail window keeps the bodies already built
        self._windows[start] = window
        self._windows.move_to_end(start)
        while len(self._windows) > _WINDOWS_KEPT:
            self._windows.popitem(last=False)
        return window
