"""PostgreSQL's lookups (``Database.lookup``) on the event loop: a few asyncpg connections of their own.

A SCIM GET by id or by ``userName`` is one or two statements that each find a row or two through an index. Run on a
reader thread with psycopg, each cost more around the statement than in it: the hand-off to the thread and back, a
session and a pooled connection, psycopg's Python-level execution, and the GIL handed back and forth between the
thread and the event loop while the request waited for its round trip. Here the same job (plain code over a
``Reader``, as on SQLite) runs on the event loop in a greenlet, and each of its statements is awaited on an asyncpg
connection (a server-side prepared statement, the binary protocol): no thread, no session, no GIL hand-off.

The connections come from the async engine (so its URL's options and its JSON codecs hold) and are detached from
its pool: used only here, one job at a time each, autocommit (every statement its own snapshot, as the read sessions
on PostgreSQL have always been). A connection that fails other than by a statement's own error is dropped; the next
job opens another.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from asyncpg import PostgresError
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_, greenlet_spawn

from gateway.store.plan_age import discard_plans, stale
from gateway.store.prepared import Compiled, Row, compiled_for

T = TypeVar("T")


class _AsyncpgReader:
    """A ``Reader`` over one asyncpg connection, for a job running in a greenlet (``greenlet_spawn``): each statement
    is awaited on the event loop; asyncpg prepares it once per connection and keeps it."""

    __slots__ = ("_connection", "_engine", "_cache")

    def __init__(self, connection: Any, engine: AsyncEngine, cache: dict[Select[Any], Compiled]) -> None:
        self._connection = connection
        self._engine = engine
        self._cache = cache

    def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> list[Row]:
        compiled = compiled_for(statement, self._engine.dialect, self._cache)
        records = await_(self._connection.fetch(compiled.sql, *compiled.bound(parameters)))
        return compiled.convert(records)


class _Connection:
    """One of the lookups' connections: SQLAlchemy's (detached) handle, to close it, and asyncpg's, to use it."""

    __slots__ = ("handle", "driver", "plans_since")

    def __init__(self, handle: PoolProxiedConnection) -> None:
        self.handle = handle
        self.driver: Any = handle.driver_connection
        handle.detach()  # its own from now on: the engine's pool never hands it to anyone else
        self.plans_since = time.monotonic()


class LookupConnections:
    """Up to ``size`` asyncpg connections for ``Database.lookup`` on PostgreSQL, opened on first need; a job waits
    for a free one."""

    def __init__(self, engine: AsyncEngine, *, size: int) -> None:
        self._engine = engine
        self._size = size
        self._opened = 0
        self._idle: list[_Connection] = []
        self._waiting: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._cache: dict[Select[Any], Compiled] = {}

    async def run(self, job: Callable[[Any], T]) -> T:
        """Run ``job`` (a function of a ``gateway.store.prepared.Reader``) on a free connection."""
        connection = await self._acquire()
        try:
            if stale(connection.plans_since):  # no plan made on a small directory outlives it (``plan_age``)
                connection.plans_since = await discard_plans(connection.driver)
            reader = _AsyncpgReader(connection.driver, self._engine, self._cache)
            result: T = await greenlet_spawn(job, reader)
        except BaseException as error:
            # A statement's own error leaves the connection as it was; anything else (a lost connection, a job
            # cancelled mid-statement) may not: drop it.
            if isinstance(error, PostgresError) and not connection.driver.is_closed():
                self._release(connection)
            else:
                self._opened -= 1
                await self._close(connection)
                self._wake_one()
            raise
        self._release(connection)
        return result

    async def _acquire(self) -> _Connection:
        while True:
            if self._idle:
                return self._idle.pop()
            if self._opened < self._size:
                self._opened += 1
                try:
                    return _Connection(await self._engine.raw_connection())
                except BaseException:
                    self._opened -= 1
                    self._wake_one()
                    raise
            # None: a connection was dropped, so this job may open one.
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    handed = waiter.result()
                    if handed is not None:
                        self._release(handed)  # handed over just as the job went away: pass it on
                    else:
                        self._wake_one()
                raise
            if handed is not None:
                return handed

    def _release(self, connection: _Connection) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _wake_one(self) -> None:
        """A connection was dropped (or never opened): a waiting job may open another."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @staticmethod
    async def _close(connection: _Connection) -> None:
        try:
            await greenlet_spawn(connection.handle.close)
        except Exception:  # already broken: nothing left to release
            connection.driver.terminate()

    async def close(self) -> None:
        """Close the idle connections (at shutdown, once no job runs)."""
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for connection in idle:
            await self._close(connection)
