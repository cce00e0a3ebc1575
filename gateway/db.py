"""The one place that opens the store: engines, sessions, and how jobs reach them.

Data operations are plain functions over a sync ``Session`` (``scim.users``, ``gateway.admin`` …). ``transaction``
and ``query`` run them: on SQLite on threads with the sync driver (writes grouped, see ``gateway.writes``), on
PostgreSQL through ``AsyncSession.run_sync`` over asyncpg. ``read`` gives an ``AsyncSession`` for the few callers
that want one (health checks, tests).

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys on. Write transactions start
with ``BEGIN IMMEDIATE``, so a transaction never fails half-way when it upgrades from reading to writing, and other
processes (a CLI command next to the server) wait their turn through the busy timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from gateway.serialization import dumps, loads
from gateway.settings import Settings
from gateway.writes import WriteQueue

T = TypeVar("T")

_SQLITE_READERS = 4
_JSON_CODEC: dict[str, Any] = {"json_serializer": dumps, "json_deserializer": loads}


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.is_sqlite = settings.is_sqlite
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(settings.database_url, **_JSON_CODEC, **kwargs)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._queue: WriteQueue | None = None
        self._readers: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
            self.sync_engine: Engine = _sync_sqlite_engine(settings)
            self._sync_reads = sessionmaker(self.sync_engine, expire_on_commit=False)
            self._sync_writes = sessionmaker(
                self.sync_engine.execution_options(sqlite_immediate=True), expire_on_commit=False
            )
            self._queue = WriteQueue(self._sync_writes)
            self._readers = ThreadPoolExecutor(max_workers=_SQLITE_READERS, thread_name_prefix="dsync-reader")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def transaction(self, job: Callable[[Session], T]) -> T:
        """Run ``job`` in a write transaction and return its result once committed.

        On SQLite concurrent jobs share one transaction and one commit, so a job must do all its work through the
        session it is given and may not commit or roll back itself; raising rolls back its work."""
        if self._queue is not None:
            return await self._queue.run(job)
        async with self._sessions() as session:
            result = await session.run_sync(job)
            await session.commit()
            return result

    async def query(self, job: Callable[[Session], T]) -> T:
        """Run the read-only ``job`` and return its result."""
        if self._readers is not None:
            return await asyncio.get_running_loop().run_in_executor(self._readers, _run_read, self._sync_reads, job)
        async with self._sessions() as session:
            return await session.run_sync(job)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    async def dispose(self) -> None:
        if self._queue is not None:
            await self._queue.close()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self.sync_engine.dispose()
        await self.engine.dispose()


def _run_read(sessions: sessionmaker[Session], job: Callable[[Session], T]) -> T:
    with sessions() as session:
        return job(session)


def _sync_sqlite_engine(settings: Settings) -> Engine:
    # The same file through the standard library driver: the embedded store's jobs run on threads.
    url = make_url(settings.database_url).set(drivername="sqlite+pysqlite")
    engine = create_engine(url, connect_args={"check_same_thread": False}, **_JSON_CODEC)
    _configure_sqlite(engine, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    return engine


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's implicit, deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
