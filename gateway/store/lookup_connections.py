"""PostgreSQL's lookups (``Database.lookup``) on the event loop: a few asyncpg connections of their own, and
concurrent lookups' statements sent together.

A SCIM GET by id or by ``userName`` is one or two statements that each find a row or two through an index. Run on a
reader thread with psycopg, each cost more around the statement than in it: the hand-off to the thread and back, a
session and a pooled connection, psycopg's Python-level execution, and the GIL handed back and forth between the
thread and the event loop while the request waited for its round trip. Here the same job (plain code over a
``Reader``, as on SQLite) runs on the event loop in a greenlet, and each of its statements is awaited on an asyncpg
connection (a server-side prepared statement, the binary protocol): no thread, no session, no GIL hand-off.

What was left cost most in the round trip itself: a socket write, the database process woken, a read, for a few
microseconds of work there. So a statement goes out at once when a connection is free; when all are busy (a client
sending many GETs at once) it waits, and the next connection that frees takes every waiting call of the same
statement in one round trip (asyncpg's ``fetchmany``: one write, the executions pipelined). Each execution's rows
carry its place in that round trip (a numbered column, bound per call), so they go back to their own caller, a
directory's missing row (no rows at all) included. Grouped this way a lookup cost the gateway a third to a half of
its CPU time in the driver (66 us alone, 32 us in twos, 20 us in fours, measured on this project's GET by id).

The connections come from the async engine (so its URL's options and its JSON codecs hold) and are detached from
its pool: used only here, one round trip at a time each, autocommit (every statement its own snapshot, as the read
sessions on PostgreSQL have always been). A connection that fails other than by a statement's own error is
dropped; the next round trip opens another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from asyncpg import PostgresError
from sqlalchemy import Integer, Select, bindparam
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_, greenlet_spawn

from gateway.store.plan_age import discard_plans, stale
from gateway.store.prepared import Compiled, Row

T = TypeVar("T")

_CALL = "dsync_call"  # the bound parameter (and last column) that numbers a call within its round trip
_Call = tuple[tuple[Any, ...], "asyncio.Future[list[Row]]"]  # a call's bound parameters and its answer


class _AsyncpgReader:
    """A ``Reader`` for a job running in a greenlet (``greenlet_spawn``): each statement is awaited on the event loop
    through ``LookupConnections``."""

    __slots__ = ("_lookups",)

    def __init__(self, lookups: LookupConnections) -> None:
        self._lookups = lookups

    def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> list[Row]:
        return await_(self._lookups.fetch(statement, parameters))


class _Connection:
    """One of the lookups' connections: SQLAlchemy's (detached) handle, to close it, and asyncpg's, to use it."""

    __slots__ = ("handle", "driver", "plans_since")

    def __init__(self, handle: PoolProxiedConnection) -> None:
        self.handle = handle
        self.driver: Any = handle.driver_connection
        handle.detach()  # its own from now on: the engine's pool never hands it to anyone else
        self.plans_since = time.monotonic()


class _Numbered:
    """A statement with its call number as a last column, compiled, and where that number goes in its parameters."""

    __slots__ = ("compiled", "place")

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.place = list(compiled.names).index(_CALL)

    def arguments(self, bound: tuple[Any, ...], number: int) -> tuple[Any, ...]:
        return (*bound[: self.place], number, *bound[self.place + 1 :])


class LookupConnections:
    """Up to ``size`` asyncpg connections for ``Database.lookup`` on PostgreSQL, opened on first need; a statement
    waits for a free one, and goes with the other waiting calls of the same statement."""

    def __init__(self, engine: AsyncEngine, *, size: int) -> None:
        self._engine = engine
        self._size = size
        self._opened = 0
        self._idle: list[_Connection] = []
        self._waiting: dict[_Numbered, list[_Call]] = {}  # by statement, the oldest first
        self._numbered: dict[Select[Any], _Numbered] = {}  # each statement compiled once, with its call number
        self._tasks: set[asyncio.Task[None]] = set()  # round trips for waiting calls, connections being closed

    async def run(self, job: Callable[[Any], T]) -> T:
        """Run ``job`` (a function of a ``gateway.store.prepared.Reader``)."""
        result: T = await greenlet_spawn(job, _AsyncpgReader(self))
        return result

    async def fetch(self, statement: Select[Any], parameters: Mapping[str, Any]) -> list[Row]:
        """The rows of one call of ``statement``: at once on a free connection, else with the other waiting calls
        of the same statement on the next connection that frees."""
        numbered = self._numbered.get(statement)
        if numbered is None:
            with_number = statement.add_columns(bindparam(_CALL, type_=Integer))
            numbered = self._numbered[statement] = _Numbered(Compiled(with_number, self._engine.dialect))
        arguments = numbered.compiled.bound({**parameters, _CALL: 0})
        if not self._waiting and (self._idle or self._opened < self._size):
            # A free connection and no one before: this call's own round trip, on this task (no hand-off).
            connection = await self._ready(self._reserve())
            try:
                fetched = await connection.driver.fetch(numbered.compiled.sql, *arguments)
            except BaseException as error:
                self._give_back(connection, error)
                raise
            self._give_back(connection, None)
            return [row[:-1] for row in numbered.compiled.convert(fetched)]
        answer: asyncio.Future[list[Row]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(numbered, []).append((arguments, answer))
        self._dispatch()
        return await answer

    def _reserve(self) -> _Connection | None:
        """A free connection, or None: a place to open one (the caller saw one or the other), taken at once so that
        no other round trip takes it meanwhile."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.driver.is_closed():
                return connection
            self._closing(connection)  # ended while idle (a restart, an idle timeout): its place is free
            self._opened -= 1
        self._opened += 1
        return None

    async def _ready(self, reserved: _Connection | None) -> _Connection:
        """The reserved connection (opened if it was a place), its plans young (``plan_age``)."""
        if reserved is None:
            try:
                reserved = _Connection(await self._engine.raw_connection())
            except BaseException:
                self._opened -= 1
                self._dispatch()
                raise
        if stale(reserved.plans_since):  # no plan made on a small directory outlives it
            try:
                reserved.plans_since = await discard_plans(reserved.driver)
            except BaseException as error:
                self._give_back(reserved, error)
                raise
        return reserved

    def _give_back(self, connection: _Connection, error: BaseException | None) -> None:
        """After a round trip: the connection is free again, unless it failed other than by a statement's own error
        (a lost connection, a round trip cancelled midway): then it is dropped. Either way waiting calls go on."""
        if error is None or isinstance(error, PostgresError) and not connection.driver.is_closed():
            self._idle.append(connection)
        else:
            self._opened -= 1
            self._closing(connection)
        self._dispatch()

    def _dispatch(self) -> None:
        """Send each waiting statement's calls, the oldest first, while a connection is free or may be opened."""
        while self._waiting and (self._idle or self._opened < self._size):
            numbered = next(iter(self._waiting))
            calls = self._waiting.pop(numbered)
            self._start(self._round_trip(self._reserve(), numbered, calls), calls)

    def _start(self, work: Coroutine[Any, Any, None], calls: Sequence[_Call] = ()) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if task.cancelled():  # (perhaps before it began: its calls must not wait forever)
                _fail(calls, asyncio.CancelledError())

        task.add_done_callback(done)

    def _closing(self, connection: _Connection) -> None:
        self._start(self._close(connection))

    async def _round_trip(self, reserved: _Connection | None, numbered: _Numbered, calls: list[_Call]) -> None:
        """Waiting calls of one statement in one round trip, each answered with its own rows (or error)."""
        try:
            connection = await self._ready(reserved)
        except BaseException as error:
            _fail(calls, error)
            if not isinstance(error, Exception):
                raise
            return
        sql, driver = numbered.compiled.sql, connection.driver
        try:
            try:
                if len(calls) == 1:
                    fetched = await driver.fetch(sql, *calls[0][0])
                else:
                    numbered_arguments = [numbered.arguments(arguments, n) for n, (arguments, _) in enumerate(calls)]
                    fetched = await driver.fetchmany(sql, numbered_arguments)
            except PostgresError:
                if len(calls) == 1 or driver.is_closed():
                    raise
                # A call's own error (a value out of range…) failed them all: each again alone, for its own answer.
                for call in calls:
                    if call[1].done():  # (its job cancelled meanwhile)
                        continue
                    try:
                        _answer(numbered, [call], await driver.fetch(sql, *call[0]))
                    except PostgresError as error:
                        _fail([call], error)
            else:
                _answer(numbered, calls, fetched)
        except BaseException as error:
            self._give_back(connection, error)
            _fail(calls, error)
            if not isinstance(error, Exception):
                raise
            return
        self._give_back(connection, None)

    @staticmethod
    async def _close(connection: _Connection) -> None:
        try:
            await greenlet_spawn(connection.handle.close)
        except Exception:  # already broken: nothing left to release
            connection.driver.terminate()

    async def close(self) -> None:
        """Close the idle connections (at shutdown, once no job runs), and any being dropped."""
        while self._tasks:  # (including any a finishing one started)
            await asyncio.wait(set(self._tasks))
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for connection in idle:
            await self._close(connection)


def _fail(calls: Sequence[_Call], error: BaseException) -> None:
    for _arguments, answer in calls:
        if answer.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            answer.cancel()
        else:
            answer.set_exception(error)


def _answer(numbered: _Numbered, calls: list[_Call], fetched: list[Any]) -> None:
    """Each call its own rows, by the number each row carries (its last column, dropped)."""
    by_call: list[list[Row]] = [[] for _ in calls]
    for row in numbered.compiled.convert(fetched):
        by_call[row[-1]].append(row[:-1])
    for (_arguments, answer), rows in zip(calls, by_call, strict=True):
        if not answer.done():  # (its job cancelled meanwhile)
            answer.set_result(rows)
