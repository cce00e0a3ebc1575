"""The one engine and session factory.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys on. Write transactions there
start with ``BEGIN IMMEDIATE`` and are serialised in-process: SQLite has one writer at a time anyway, and taking the
write lock up front means a transaction never fails half-way when it upgrades from reading to writing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from gateway.settings import Settings
from gateway.writes import WriteQueue

T = TypeVar("T")


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.is_sqlite = settings.is_sqlite
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(settings.database_url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
            self._write_engine = self.engine.execution_options(sqlite_immediate=True)
        else:
            self._write_engine = self.engine
        self._reads = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writes = async_sessionmaker(self._write_engine, expire_on_commit=False)
        self._queue = WriteQueue(self._writes) if self.is_sqlite else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._reads() as session:
            yield session

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write session: committed when the block ends, rolled back if it raises.

        The block may ``commit()`` early to make part of its work durable on its own; the rest then runs in a
        new transaction."""
        async with contextlib.AsyncExitStack() as stack:
            if self._queue is not None:
                await stack.enter_async_context(self._queue.lock)
            session = await stack.enter_async_context(self._writes())
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def transaction(self, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``job`` in a write transaction and return its result once committed.

        On SQLite concurrent jobs share one transaction and one commit (see ``gateway.writes``), so a job must do
        all its work through the session it is given and may not commit or roll back itself."""
        if self._queue is not None:
            return await self._queue.run(job)
        async with self.write() as session:
            return await job(session)

    async def dispose(self) -> None:
        if self._queue is not None:
            await self._queue.close()
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's implicit, deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
