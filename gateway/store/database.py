"""The one place that opens the store: engines, sessions, and how jobs reach them.

Data operations are plain functions over a sync ``Session`` (``scim.backend.users``, ``gateway.ops.directories``
…). ``transaction`` and ``query`` run them on threads with a sync driver (the standard library's sqlite3, psycopg 3
for PostgreSQL), writes grouped into shared transactions on one writer thread (``gateway.store.grouped_writer``),
reads on a small pool (autocommit on PostgreSQL); ``lookup`` runs a read by index (a SCIM GET by id or by userName)
through prebuilt statements on the event loop (SQLite's driver straight, PostgreSQL's through asyncpg). ``read``
gives an ``AsyncSession`` (aiosqlite, asyncpg) for the few callers that want one (health checks, tests).

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys on. Write transactions start
with ``BEGIN IMMEDIATE``, so a transaction never fails half-way when it upgrades from reading to writing, and other
processes (a CLI command next to the server) wait their turn through the busy timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from gateway.settings import Settings
from gateway.store.batch_driver import Later
from gateway.store.database_url import async_url
from gateway.store.grouped_writer import InlineSessions, PostgresSessions, WriteQueue
from gateway.store.lookup_connections import LookupConnections
from gateway.store.plan_age import keep_plans_young
from gateway.store.prepared import Compiled, DbapiReader, Reader
from gateway.store.serialization import dumps, loads

T = TypeVar("T")
logger = logging.getLogger("dsync.db")

_SQLITE_READERS = 4
_POSTGRES_READERS = 4
# Opened on demand. Few on purpose: a lookup that finds both busy goes with the others waiting for the next free one,
# in one round trip (``gateway.store.lookup_connections``); with 2, GETs at 8 at once cost PostgreSQL a quarter less.
_POSTGRES_LOOKUP_CONNECTIONS = 2
_CHECKPOINT_EVERY_BATCHES = 200
_WAL_RESTART_FRAMES = 8192  # pages: 32 MiB at SQLite's default page size
# Statement parameters are directory data (names, emails): keep them out of errors and so out of logs.
_JSON_CODEC: dict[str, Any] = {"json_serializer": dumps, "json_deserializer": loads, "hide_parameters": True}
# The grouped writes, as the lookups, keep cached plans, no older than a few seconds (``gateway.store.plan_age``).


class Database:
    """The store of one process (``dsync serve`` or a CLI command), built from its ``Settings``: every data operation
    reaches the database through it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.is_sqlite = settings.is_sqlite
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(async_url(settings.database_url), **_JSON_CODEC, **kwargs)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._on_commit: list[Callable[[], None]] = []
        self._batches_since_checkpoint = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._write_engine: AsyncEngine | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
            self.sync_engine: Engine = _sync_sqlite_engine(settings)
            self._sync_reads = sessionmaker(self.sync_engine, expire_on_commit=False)
            writes: Engine = self.sync_engine.execution_options(sqlite_immediate=True)
            # Light write batches run on the event loop (``WriteQueue``): on a connection that never waits for a
            # lock, so the loop never blocks on another process; a job that meets one runs again on the thread.
            self.inline_engine: Engine | None = _sync_sqlite_engine(settings, busy_timeout_ms=0)
            inline = InlineSessions(self.inline_engine.execution_options(sqlite_immediate=True))
            readers = _SQLITE_READERS
        else:
            self.sync_engine = _sync_postgres_engine(settings, pool_size=_POSTGRES_READERS)
            # A read job is one or two statements: autocommit spares it the BEGIN and COMMIT round trips.
            self._sync_reads = sessionmaker(
                self.sync_engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
            )
            # Writes run on the event loop, each statement awaited through asyncpg (``_postgres_write_engine``).
            self._write_engine = _postgres_write_engine(settings)
            writes = self._write_engine.sync_engine
            readers = _POSTGRES_READERS
            self.inline_engine = None
            inline = None
        self._sync_writes = sessionmaker(writes, expire_on_commit=False)
        # PostgreSQL's batches run on a connection the writer keeps (``grouped_writer.PostgresSessions``).
        batches = self._sync_writes if self.is_sqlite else PostgresSessions(writes)
        self._queue = WriteQueue(batches, after_batch=self._after_write_batch, inline=inline)
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="dsync-reader")
        # SQLite's lookups (``lookup``): one connection, used on the event loop's thread only, and their statements.
        self._lookups: PoolProxiedConnection | None = None
        self._prepared: dict[Any, Compiled] = {}
        # PostgreSQL's lookups: asyncpg connections of their own, on the event loop.
        self._pg_lookups = None if self.is_sqlite else LookupConnections(self.engine, size=_POSTGRES_LOOKUP_CONNECTIONS)

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect's name (``sqlite``, ``postgresql``), for the few queries that differ by store."""
        return self.engine.dialect.name

    @property
    def write_engine(self) -> Engine:
        """The (sync facade of the) engine write transactions run on, for whoever listens to its statements (on
        SQLite, light batches run on ``inline_engine`` too)."""
        return self.sync_engine if self._write_engine is None else self._write_engine.sync_engine

    async def transaction(self, job: Callable[[Session], T | Later[T]], *, light: bool = False) -> T:
        """Run ``job`` in a write transaction and return its result once committed.

        Concurrent jobs share one transaction and one commit, so a job must do all its work through the session it
        is given and may not commit or roll back itself; raising rolls back its work. ``light``: the job is a few
        statements by index (a SCIM write of one small resource): on SQLite it may run on the event loop. A ``Later``
        the job returns (``gateway.store.batch_driver``) is answered with its value."""
        return await self._queue.run(job, light=light)

    async def query(self, job: Callable[[Session], T]) -> T:
        """Run the read-only ``job`` and return its result."""
        return await self._read_on_thread(job)

    async def _read_on_thread(self, job: Callable[[Session], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, _run_read, self._sync_reads, job)

    async def lookup(self, job: Callable[[Reader], T]) -> T:
        """Run the read-only ``job``: a few prebuilt statements that each find a few rows through an index (a SCIM
        GET by id), through a ``Reader`` (``gateway.store.prepared``).

        On SQLite it runs at once on the calling (event loop's) thread, straight on a connection of its own: such a
        read takes tens of microseconds, less than handing it to a reader thread and back, and WAL readers never
        wait for the writer. PostgreSQL's reads cross the network: the job runs on the event loop too, each
        statement awaited on an asyncpg connection of the lookups' own (``gateway.store.lookup_connections``)."""
        if self._pg_lookups is not None:
            return await self._pg_lookups.run(job)
        on_thread = partial(self._read_on_thread, lambda session: job(self._reader(session.connection())))
        if self._lookups is None:
            lookups = self.sync_engine.raw_connection()
            lookups.detach()  # its own from now on: the pool never hands it (or its busy timeout) to another
            # Never wait on the event loop: a lock a reader could meet (another process's exclusive lock, a WAL
            # recovery) answers at once, and the read runs again on a reader thread, which may wait for it.
            driver: Any = lookups.dbapi_connection
            driver.execute("PRAGMA busy_timeout=0")
            self._lookups = lookups
        connection: Any = self._lookups.dbapi_connection
        try:
            connection.execute("BEGIN")  # one snapshot for all of the job's statements
            try:
                return job(DbapiReader(connection, self.sync_engine.dialect, self._prepared))
            finally:
                if connection.in_transaction:
                    connection.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
        return await on_thread()

    def _reader(self, connection: Connection) -> DbapiReader:
        """A ``Reader`` on the DBAPI connection under ``connection`` (in its transaction, or autocommit)."""
        return DbapiReader(connection.connection.driver_connection, self.sync_engine.dialect, self._prepared)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """An ``AsyncSession`` for callers that want one (the health check, tests); data operations use ``query``."""
        async with self._sessions() as session:
            yield session

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop after every committed write transaction (e.g. to announce events)."""
        self._on_commit.append(callback)

    def _committed(self) -> None:
        for callback in self._on_commit:
            callback()

    def _after_write_batch(self) -> None:
        """Checkpoint the WAL off the writer thread every so many commits (see ``_checkpoint_wal``)."""
        self._committed()
        if not self.is_sqlite:
            return
        self._batches_since_checkpoint += 1
        busy = self._checkpoint is not None and not self._checkpoint.done()
        if self._batches_since_checkpoint >= _CHECKPOINT_EVERY_BATCHES and not busy:
            self._batches_since_checkpoint = 0
            loop = asyncio.get_running_loop()
            self._checkpoint = loop.run_in_executor(self._readers, _checkpoint_wal, self.sync_engine, "PASSIVE")

    async def dispose(self) -> None:
        """Close the store at shutdown: finish queued writes, checkpoint the SQLite WAL, release every connection."""
        await self._queue.close()
        if self._checkpoint is not None:
            await self._checkpoint
        self._readers.shutdown(wait=True)
        if self._lookups is not None:
            self._lookups.close()
            self._lookups = None
        if self._pg_lookups is not None:
            await self._pg_lookups.close()
        if self.is_sqlite:
            _checkpoint_wal(self.sync_engine, "TRUNCATE")
        self.sync_engine.dispose()
        if self.inline_engine is not None:
            self.inline_engine.dispose()
        if self._write_engine is not None:
            await self._write_engine.dispose()
        await self.engine.dispose()


def _checkpoint_wal(engine: Engine, mode: str) -> None:
    """Copy the WAL back into the database off the writer thread.

    The server's own connections never checkpoint on commit (wal_autocheckpoint=0): doing it there stalled the
    writer, and every request waiting on it, for tens of milliseconds. A PASSIVE checkpoint runs beside the writer
    without blocking it; but under steady writes it never catches the WAL's end, so the file would only grow. Once
    the WAL passes ``_WAL_RESTART_FRAMES`` a RESTART checkpoint finishes the (small) rest and lets the next write
    start the WAL over, briefly holding writers back."""
    try:
        connection = engine.raw_connection()
        try:
            _busy, wal_frames, _copied = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            if mode == "PASSIVE" and wal_frames > _WAL_RESTART_FRAMES:
                connection.execute("PRAGMA wal_checkpoint(RESTART)")
        finally:
            connection.close()
    except Exception:  # a busy database or disk: the next checkpoint catches up
        logger.warning("WAL checkpoint (%s) failed", mode, exc_info=True)


def _run_read(sessions: sessionmaker[Session], job: Callable[[Session], T]) -> T:
    with sessions() as session:
        return job(session)


def _sync_sqlite_engine(settings: Settings, *, busy_timeout_ms: int | None = None) -> Engine:
    # The same file through the standard library driver: the embedded store's jobs run on threads.
    url = make_url(settings.database_url).set(drivername="sqlite+pysqlite")
    engine = create_engine(url, connect_args={"check_same_thread": False}, **_JSON_CODEC)
    timeout = settings.sqlite_busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
    _configure_sqlite(engine, busy_timeout_ms=timeout, autocheckpoint=False)
    return engine


def _sync_postgres_engine(settings: Settings, *, pool_size: int) -> Engine:
    # The same database through psycopg 3: jobs run on threads, each statement a direct call (asyncpg's
    # ``run_sync`` hopped between the event loop and a greenlet for every one).
    url = make_url(settings.database_url).set(drivername="postgresql+psycopg")
    # No pre-ping: it would cost a round trip per job; a connection that broke is invalidated on its first error.
    engine = create_engine(url, pool_size=pool_size, max_overflow=4, **_JSON_CODEC)
    # A grouped batch's savepoints (one per job) are never released: the batch commits or rolls back as a whole, and
    # PostgreSQL keeps a released subtransaction's id until the commit anyway, so RELEASE would only cost each job a
    # round trip. Rolling back to a job's savepoint still undoes that job alone (it is the innermost one).
    engine.dialect.do_release_savepoint = _keep_savepoint  # type: ignore[method-assign]
    return engine


def _postgres_write_engine(settings: Settings) -> AsyncEngine:
    """The engine of PostgreSQL's grouped writes (``gateway.store.grouped_writer``): asyncpg, its batches run on the
    event loop in a greenlet, so a batch's round trips cost the network's latency only. On a writer thread each one
    also waited for the GIL, which the busy event loop hands over only every switch interval (5 ms): under load a
    round trip took over a millisecond, and a batch of PUTs makes about three per request."""
    # The writer's kept connections (batches overlap: ``grouped_writer.OVERLAPPING``), and as many again for
    # batches run again with savepoints or jobs run again alone, with room to spare. No pre-ping: it would cost a
    # round trip per batch; a connection that broke is invalidated on its first error.
    engine = create_async_engine(async_url(settings.database_url), pool_size=3, max_overflow=5, **_JSON_CODEC)
    keep_plans_young(engine)
    # See ``_sync_postgres_engine``: a batch's savepoints are never released.
    engine.sync_engine.dialect.do_release_savepoint = _keep_savepoint  # type: ignore[method-assign]
    return engine


def _keep_savepoint(connection: Any, name: str) -> None:
    """See ``_sync_postgres_engine``."""


def _enable_wal(cursor: Any) -> None:
    # Switching to WAL takes an exclusive lock that SQLite may refuse at once, busy timeout or not, while another
    # process (a second server starting together) switches it too: retry for a while.
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int, autocheckpoint: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's implicit, deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: every statement after it (the journal mode too) waits for another process's
        # lock instead of failing at once with "database is locked" (two servers starting together).
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode")  # (two steps: the aiosqlite adapter's execute returns no cursor)
        mode = cursor.fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.connection.driver_connection.in_transaction:
            return  # begun through the driver (``grouped_writer.InlineSessions``): the session joins it
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
