"""Grouped commits for the embedded SQLite store.

SQLite has one writer at a time, and on this path a request's cost is dominated by round trips to the database
thread and the commit itself. Concurrent write requests are therefore queued and run back to back in one
transaction with one commit; each caller's result is released only after that commit, so nothing is acknowledged
before it is durable. If any job of a batch fails, the batch is rolled back and its jobs run again one by one, so one
request's error never touches another's work.

Inserts that nothing in the same job reads back (new users, events) may be deferred with :func:`insert_rows`: the
batch writes each table's rows in one statement just before its commit. A conflict there fails the batch, and the
one-by-one rerun (which does not defer) then reports it to the job that caused it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
Job = Callable[[AsyncSession], Awaitable[Any]]

logger = logging.getLogger("dsync.writes")


_DEFERRED = "dsync.deferred_inserts"


async def insert_rows(session: AsyncSession, statement: Insert, rows: list[dict[str, Any]]) -> None:
    """Execute ``statement`` for ``rows`` now, or, inside a grouped transaction, together with the batch's other
    rows for it just before the commit (in the order the statements were first used)."""
    deferred: dict[Insert, list[dict[str, Any]]] | None = session.info.get(_DEFERRED)
    if deferred is None:
        await session.execute(statement, rows)
    else:
        deferred.setdefault(statement, []).extend(rows)


def _defer_inserts(session: AsyncSession) -> None:
    session.info[_DEFERRED] = {}


async def _write_deferred_inserts(session: AsyncSession) -> None:
    deferred: dict[Insert, list[dict[str, Any]]] = session.info.pop(_DEFERRED, {})
    for statement, rows in deferred.items():
        await session.execute(statement, rows)


class WriteQueue:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, max_batch: int = 64) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._pending: collections.deque[tuple[Job, asyncio.Future[Any]]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()  # held while a batch runs; other in-process writers take it too

    async def run(self, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        self._wakeup.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="dsync-write-queue")
        # The job runs to its end even if this caller goes away: its batch must commit or roll back as a whole.
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._pending:
            _job, future = self._pending.popleft()
            if not future.done():
                future.set_exception(RuntimeError("the database is shutting down"))

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._pending:
                self._wakeup.clear()
                continue
            batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
            async with self.lock:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        results: list[Any] = []
        try:
            async with self._sessions() as session:
                try:
                    if len(batch) > 1:
                        # A lone job (a rerun above all) writes at once, so its own error handling sees conflicts.
                        _defer_inserts(session)
                    for job, _future in batch:
                        results.append(await job(session))
                    await _write_deferred_inserts(session)
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        except asyncio.CancelledError:
            for _job, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("the database is shutting down"))
            raise
        except Exception as exc:
            if len(batch) > 1:
                for item in batch:
                    await self._run_batch([item])
                return
            _job, future = batch[0]
            if not future.done():
                future.set_exception(exc)
            return
        for (_job, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
