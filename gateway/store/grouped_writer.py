"""Grouped commits, on both stores.

SQLite has one writer at a time; on PostgreSQL a commit (a WAL flush) costs more than most jobs. Concurrent write
jobs (plain functions over a sync ``Session``) are therefore queued and run back to back on one writer thread per
process, in one transaction with one commit; each caller's result is released only after that commit, so nothing
is acknowledged before it is durable. Running the batch on a thread with the sync
driver keeps every statement a direct call: no per-statement hop between the event loop and a database thread,
which is what dominated the cost of a request. PostgreSQL's batches run on the event loop instead, in a greenlet
over asyncpg (``gateway.store.database``): there each statement is a network round trip, and a writer thread
waited for the GIL after every one.

A job that raises (a uniqueness conflict, say) must undo its own work only, get its error, and leave the others to
commit as if it had not been there. A SAVEPOINT per job would do it, but on PostgreSQL each costs a round trip and
most batches have no failing job: a batch therefore first runs without savepoints, and only if one of its jobs
raises is it rolled back and run again with a savepoint per job (as are the next few batches: where one request
failed, more may follow). Only a failure outside the jobs (the deferred inserts, the commit itself) rolls back the
whole batch, whose jobs then run again one by one; but a PostgreSQL COMMIT whose answer was lost with the connection
may have landed: once its backend is gone, one of the batch's rows tells, and a batch that did commit keeps its
answers (its jobs run again would meet their own work: a 409, a 404).

Inserts that nothing in the same job reads back and that cannot conflict (events) may be deferred with
:func:`insert_rows` / :func:`defer_rows`: the batch writes each table's rows in one statement just before its commit.
New rows that may conflict but that no other job can refer to (a new user) are deferred too while the batch runs
without savepoints (:func:`insert_new_rows`). On PostgreSQL the deferred rows, and the updates kept for the commit
(``AsyncpgStatements.update_later``), go in the COMMIT's own round trip: one simple query, their values inlined as
constants (``batch_driver.inlined``), round trips less while the batch holds its directory's row lock.
A job that lost a deadlock (PostgreSQL, against another process's batch) runs again alone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Insert, Table, event, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.util import await_, greenlet_spawn

from gateway.store.batch_driver import (
    AsyncpgStatements,
    CommitRefused,
    Later,
    asyncpg_statements,
    commit_after,
    literals_safe,
    settled,
)
from gateway.store.plan_age import keep_young
from gateway.store.prepared import Compiled, DbapiReader, compiled_for

logger = logging.getLogger("dsync.store")

T = TypeVar("T")
Job = Callable[[Session], Any]  # a write operation: a plain function over the batch's sync session

# Writes a table's deferred rows (of the whole batch) in as few statements as it can.
RowsWriter = Callable[[Connection, list[dict[str, Any]]], None]
_Deferred = tuple[Insert | RowsWriter, list[dict[str, Any]]]  # a statement (or writer) and the rows it is to write

_DEFERRED = "dsync.deferred_inserts"
_PLAIN = "dsync.batch_without_savepoints"
_MEMO = "dsync.batch_memo"
_MEMO_KEPT = "dsync.batch_memo_kept"
# SQLSTATEs after which a job's work is undone and running it again can succeed: deadlock, serialization failure.
_RETRYABLE = frozenset({"40P01", "40001"})
_RETRIES = 3
# After a batch in which a job raised, this many batches run with a savepoint per job straight away.
_CAREFUL_BATCHES = 8
# PostgreSQL: batches under way at once, each on a connection of its own. The next batch begins as soon as the one
# before sends its COMMIT (``WriteQueue``): its first statements (the directory's row lock…) wait in the database, not
# in this process, and go on the moment that commit lands. Three did 15-70% more writes a second than two in
# same-day pairs on one directory (a later pair: POST 19% more, the other writes within the noise);
# four no more than three.
OVERLAPPING = 3


def insert_rows(session: Session, statement: Insert, rows: list[dict[str, Any]]) -> None:
    """Execute ``statement`` for ``rows`` now, or, inside a grouped transaction, together with the batch's other
    rows for it just before the commit (in the order the statements were first used)."""
    _defer(session, statement, rows)


def insert_new_rows(session: Session, statement: Insert, rows: list[dict[str, Any]]) -> None:
    """Insert rows that may be refused (a UNIQUE index) but that no other job of the batch can refer to (ids the
    server just made, which no client knows before the commit): while the batch runs without savepoints, together
    with the batch's other rows for ``statement`` just before the commit (one round trip for all); a refusal there
    makes the batch run again with savepoints, where they are inserted at once, so their own job gets the error."""
    if session.info.get(_PLAIN):
        _defer(session, statement, rows)
        return
    postgres = postgres_statements(session)
    if postgres is None or not postgres.insert_many(statement, rows):
        session.execute(statement, rows)


def defer_rows(
    session: Session,
    writer: RowsWriter,
    rows: list[dict[str, Any]],
    *,
    table: Table,
    with_commit: CommitText | None = None,
) -> None:
    """Like :func:`insert_rows`, for rows that ``writer`` (the same function object for every job) writes itself
    into ``table`` (the rows' ``id`` its key): called now, or once just before the commit with the rows of every job
    of the batch. ``with_commit``: the same rows as one statement with their values inlined, which a PostgreSQL batch
    sends after its other deferred rows, in the very round trip of its COMMIT (see ``_run_on``)."""
    _WRITTEN_INTO[writer] = table
    if with_commit is not None:
        _WITH_COMMIT[writer] = with_commit
    _defer(session, writer, rows)


# Where each deferred rows writer writes: a batch whose COMMIT lost its answer looks one of its rows up there.
_WRITTEN_INTO: dict[RowsWriter, Table] = {}
# A rows writer's rows as one statement, values inlined (``batch_driver.string_literal``).
CommitText = Callable[[list[dict[str, Any]]], str]
_WITH_COMMIT: dict[RowsWriter, CommitText] = {}


def _defer(session: Session, key: Insert | RowsWriter, rows: list[dict[str, Any]]) -> None:
    statements: AsyncpgStatements | None = session.info.get(_ASYNCPG)
    if statements is not None:
        statements.settle()  # earlier jobs' rest (their events) first: the rows keep the jobs' order
    deferred: dict[Insert | RowsWriter, list[dict[str, Any]]] | None = session.info.get(_DEFERRED)
    if deferred is None:
        _write(session.connection(), key, rows)
    else:
        deferred.setdefault(key, []).extend(rows)


def _write(connection: Connection, key: Insert | RowsWriter, rows: list[dict[str, Any]]) -> None:
    if isinstance(key, Insert):
        connection.execute(key, rows)
    else:
        key(connection, rows)


_DIRECT = "dsync.direct_statements"
# Every batch's statements, compiled once per process (SQLite has one dialect).
_DIRECT_COMPILED: dict[Any, Compiled] = {}


def direct_statements(session: Session) -> DbapiReader | None:
    """On SQLite, in a grouped batch: a ``DbapiReader`` on the batch's own DBAPI connection, in its transaction, for
    a job's prebuilt statements that can fail only as the batch fails (a lookup, a touch, a delete …
    ``RETURNING``): run without SQLAlchemy's per-statement machinery, which cost more than SQLite's own work for
    them. None elsewhere (PostgreSQL, a session outside a batch): run them through the session then."""
    if _DIRECT in session.info:
        direct: DbapiReader | None = session.info[_DIRECT]
        return direct
    # Only in a batch's session: it runs one transaction, so the connection stays the same throughout.
    connection = session.connection() if _DEFERRED in session.info else None
    direct = None
    if connection is not None and connection.dialect.name == "sqlite":
        direct = DbapiReader(connection.connection.driver_connection, connection.dialect, _DIRECT_COMPILED)
    session.info[_DIRECT] = direct
    return direct


_ASYNCPG = "dsync.asyncpg_statements"


def postgres_statements(session: Session) -> AsyncpgStatements | None:
    """On PostgreSQL, in a grouped batch: ``AsyncpgStatements`` on the batch's own asyncpg connection, in its
    transaction, for a job's prebuilt statements (``gateway.store.batch_driver``). None elsewhere (SQLite, a session
    outside a batch)."""
    if _ASYNCPG in session.info:
        statements: AsyncpgStatements | None = session.info[_ASYNCPG]
        return statements
    statements = asyncpg_statements(session.connection()) if _DEFERRED in session.info else None
    session.info[_ASYNCPG] = statements
    return statements


def batch_memo(session: Session) -> dict[str, Any]:
    """What jobs of one write transaction may remember for the next ones (rows they locked, say). It lasts only while
    every job calls :func:`keep_batch_memo`: a job that does not (any other kind of write) or that fails forgets it
    for all, so nothing remembered outlives a change the memo does not know about."""
    memo: dict[str, Any] = session.info.setdefault(_MEMO, {})
    return memo


def keep_batch_memo(session: Session) -> None:
    """Say that the running job changed nothing that ``batch_memo`` holds."""
    session.info[_MEMO_KEPT] = True


def _job_done(session: Session) -> None:
    if not session.info.pop(_MEMO_KEPT, False):
        session.info.pop(_MEMO, None)


def _each_job(session: Session, jobs: list[Job]) -> list[Any] | None:
    """Every job's result, in order, in a batch without savepoints; None as soon as one raises (the caller rolls the
    whole batch back)."""
    results = []
    for job in jobs:
        try:
            results.append(job(session))
        except Exception:
            return None
        _job_done(session)
    return results


def _write_deferred_inserts(session: Session) -> None:
    deferred: dict[Insert | RowsWriter, list[dict[str, Any]]] = session.info.pop(_DEFERRED, {})
    pending = [(key, rows) for key, rows in deferred.items() if rows]
    if not pending:
        return
    connection = session.connection()
    statements = asyncpg_statements(connection)
    if statements is not None:
        _write_on_asyncpg(statements, connection, pending)
        return
    with _pipelined(connection, len(pending) > 1):
        for key, rows in pending:
            _write(connection, key, rows)


def _write_on_asyncpg(statements: AsyncpgStatements, connection: Connection, pending: list[_Deferred]) -> None:
    """Deferred rows on PostgreSQL: an INSERT's rows in one ``executemany`` where they can go that way, the rest
    (a writer function, rows left to a computed default) through ``_write``."""
    for key, rows in pending:
        if not (isinstance(key, Insert) and statements.insert_many(key, rows)):
            _write(connection, key, rows)


@contextlib.contextmanager
def _pipelined(connection: Connection, wanted: bool) -> Iterator[None]:
    """On PostgreSQL, statements whose results nothing reads (the deferred inserts: new users, then the events) go
    out together in psycopg's pipeline mode, one round trip for all instead of one each; an error among them is
    raised when the block ends."""
    driver: Any = connection.connection.driver_connection
    if not wanted or connection.dialect.name != "postgresql" or not hasattr(driver, "pipeline"):
        yield
        return
    with driver.pipeline():
        yield


def _retryable(error: BaseException) -> bool:
    return getattr(getattr(error, "orig", None), "sqlstate", None) in _RETRYABLE


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Careful:
    """How many more batches of a queue run with a savepoint per job straight away (see the module's docstring).
    Touched only on the queue's writer thread."""

    __slots__ = ("batches",)

    def __init__(self) -> None:
        self.batches = 0


class InlineSessions:
    """SQLite's light batches, run on the event loop (``WriteQueue``): on one connection the writer keeps, whose
    transaction is begun and committed straight through the driver, the jobs' session bound to it and touching it
    only if a job uses it beyond ``direct_statements`` (a rare path), and the deferred inserts written through the
    driver too. An ORM session's transaction (its pooled connection, its events, its commit) cost ~190 us of CPU
    per batch, the driver's BEGIN and COMMIT ~10 us: more than the statements of a light batch of one or two jobs.
    A batch run again with a savepoint per job goes through ``sessions`` (the same engine, another connection)."""

    __slots__ = ("sessions", "_engine", "_connection", "shut")

    def __init__(self, engine: Engine) -> None:
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self._engine = engine
        self._connection: Connection | None = None
        self.shut = False  # the store is closing: batches still coming go through ``sessions``

    def connection(self) -> Connection:
        """The writer's own connection (opened on first use, used on the event loop's thread only)."""
        if self._connection is None or self._connection.invalidated or self._connection.closed:
            self._connection = self._engine.connect()
        return self._connection

    def close(self) -> None:
        """At shutdown: release the kept connection for good (a write still arriving would otherwise open another
        that nothing closes)."""
        self.shut = True
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class KeptConnection:
    """One connection ``PostgresSessions`` keeps checked out for batches, one batch at a time: its transaction begun
    and committed straight through SQLAlchemy's asyncpg adapter.

    Once a batch has committed, the next one's transaction is begun at once (``begin_next``), while the answers
    go out and the next requests come in: its BEGIN's round trip is off the next batch's path. A transaction that
    has run no statement holds no lock and no snapshot (READ COMMITTED), and every timestamp the store writes
    comes from the application, not from the transaction's start."""

    __slots__ = ("_engine", "_connection", "_beginning", "running")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._beginning: asyncio.Task[None] | None = None  # the next batch's BEGIN, under way
        self.running: AsyncpgStatements | None = None  # the batch under way's: its kept updates go before others

    def begin_next(self, connection: Connection) -> None:
        """Begin the next batch's transaction on ``connection`` now, without waiting for it (on the event loop's
        thread, its transaction just committed)."""
        adapted: Any = connection.connection.dbapi_connection
        self._beginning = asyncio.get_running_loop().create_task(adapted._start_transaction())

    def _settle(self) -> None:
        """Wait for ``begin_next``'s BEGIN (raising its error): nothing else may use the connection meanwhile."""
        beginning, self._beginning = self._beginning, None
        if beginning is not None:
            await_(beginning)

    def _before_statement(self, *_args: Any) -> None:
        # A statement through SQLAlchemy on the kept connection may read what a kept update changed, or come after
        # statements still waiting to go together.
        if self.running is not None:
            self.running.before_statement()

    def connection(self) -> Connection:
        """The connection (opened on first use, again after it broke; called from the batch's greenlet), its
        cached plans kept young (``gateway.store.plan_age``)."""
        kept = self._connection
        try:
            self._settle()
        except Exception:  # the connection broke meanwhile: another one
            kept = None
            self.close()
        if kept is not None and (kept.closed or kept.invalidated or _driver(kept).is_closed()):
            self.close()
            kept = None
        if kept is None:
            kept = self._connection = self._engine.connect()
            event.listen(kept, "before_cursor_execute", self._before_statement)
        keep_young(kept.connection)
        return kept

    def close(self) -> None:
        """Close (or, if broken, drop) the connection; from a greenlet."""
        with contextlib.suppress(Exception):
            self._settle()
        kept, self._connection = self._connection, None
        if kept is None:
            return
        if kept.invalidated or _driver(kept).is_closed():
            # Lost (a COMMIT whose answer never came, say, sent past SQLAlchemy): never back into the pool, where the
            # next session would meet it closed.
            with contextlib.suppress(Exception):
                kept.invalidate()
                kept.close()
            return
        try:
            kept.close()
        except Exception:  # already broken: nothing left to release
            with contextlib.suppress(Exception):
                kept.invalidate()


class PostgresSessions:
    """PostgreSQL's batches (run on the event loop in a greenlet): each on one of ``OVERLAPPING`` connections the
    writer keeps checked out (``KeptConnection``), the jobs' session bound to it and touching it only if a job uses
    it beyond ``postgres_statements`` (a rare path). A pooled ORM session's transaction (its checkout, its events,
    its commit) cost ~200 us of CPU per batch on the event loop, in the batch's critical path. A batch run again
    with a savepoint per job, or a job run again alone after it failed, goes through ``sessions`` (the same engine,
    pooled connections)."""

    __slots__ = ("sessions", "_free", "_all", "shut")

    def __init__(self, engine: Engine) -> None:
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self._all = [KeptConnection(engine) for _ in range(OVERLAPPING)]
        self._free = list(self._all)
        self.shut = False  # the store is closing (``shut_down``): batches still coming go through ``sessions``

    def take(self) -> KeptConnection:
        """A kept connection for a batch (one is free for each batch under way: ``WriteQueue`` runs no more)."""
        return self._free.pop()

    def give_back(self, kept: KeptConnection) -> None:
        self._free.append(kept)

    def shut_down(self) -> None:
        """At shutdown, from a greenlet, once no batch runs: release the kept connections for good (a write still
        arriving, the webhook worker's last record say, would otherwise open another that nothing closes)."""
        self.shut = True
        for kept in self._all:
            kept.close()


def _driver(connection: Connection) -> Any:
    return connection.connection.driver_connection


Sessions = sessionmaker[Session] | InlineSessions | PostgresSessions


def _nothing() -> None:
    pass


def run_batch(
    sessions: Sessions, jobs: list[Job], careful: Careful, committing: Callable[[], None] = _nothing
) -> list[Any]:
    """Run ``jobs`` in one transaction; if one raises, again each in a savepoint; if the batch itself fails, each
    alone. Returns each job's result or ``_Failed``. ``committing`` is called when a PostgreSQL batch on a kept
    connection is about to send its COMMIT (``WriteQueue`` may then begin the next batch)."""
    results = _run_together(sessions, jobs, careful, committing)
    for index, result in enumerate(results):
        for _attempt in range(_RETRIES):
            if not (isinstance(result, _Failed) and _retryable(result.error)):
                break
            result = _run_together(sessions, [jobs[index]], careful, committing)[0]
        results[index] = result
    return results


def _run_together(
    sessions: Sessions, jobs: list[Job], careful: Careful, committing: Callable[[], None] = _nothing
) -> list[Any]:
    inline = sessions if isinstance(sessions, InlineSessions) and not sessions.shut else None
    postgres = sessions if isinstance(sessions, PostgresSessions) and not sessions.shut else None
    makers = sessions if isinstance(sessions, sessionmaker) else sessions.sessions
    try:
        if len(jobs) == 1 and inline is not None and (lone := _run_direct(inline.connection(), jobs)) is not None:
            return lone
        if len(jobs) == 1 and postgres is not None:
            lone = _run_on_kept_connection(postgres, jobs, committing)
            if lone is not None:
                return lone
        if len(jobs) == 1:  # a lone job (a rerun above all) needs no savepoint: it fails alone anyway
            with makers() as session:
                session.info[_DEFERRED] = {}
                results = [jobs[0](session)]
                _write_deferred_inserts(session)
                session.commit()
                return results
        if careful.batches > 0:
            careful.batches -= 1
        else:
            if inline is not None:
                plain = _run_direct(inline.connection(), jobs)
            elif postgres is not None:
                plain = _run_on_kept_connection(postgres, jobs, committing)
            else:
                plain = _run_without_savepoints(makers, jobs)
            if plain is not None:
                return plain
            careful.batches = _CAREFUL_BATCHES
        with makers() as session:
            session.info[_DEFERRED] = {}
            results = [_run_in_savepoint(session, job) for job in jobs]
            _write_deferred_inserts(session)
            session.commit()
            return results
    except Exception as exc:
        if len(jobs) == 1:
            return [_Failed(exc)]
    return [_run_together(sessions, [job], careful, committing)[0] for job in jobs]


def _run_without_savepoints(sessions: sessionmaker[Session], jobs: list[Job]) -> list[Any] | None:
    """Every job's result, committed together; or None, all rolled back, as soon as one job raises or the deferred
    inserts are refused (``insert_new_rows``)."""
    with sessions() as session:
        session.info[_DEFERRED] = {}
        session.info[_PLAIN] = True
        results = _each_job(session, jobs)
        if results is None:
            return None  # closing the session rolls the whole transaction back
        try:
            _write_deferred_inserts(session)
        except Exception:
            return None
        session.commit()
        return results


def _run_direct(connection: Connection, jobs: list[Job]) -> list[Any] | None:
    """``InlineSessions``' batch, without savepoints: every job's result, committed together; or None, all rolled
    back, as soon as one job raises or the deferred inserts are refused (the caller runs the jobs again through a
    session, where each gets its own error)."""
    driver: Any = connection.connection.driver_connection
    driver.execute("BEGIN IMMEDIATE")
    # Bound to the writer's connection: a job that runs a statement through the session joins this very transaction
    # (the engine's ``begin`` listener sees it begun), which the session then commits.
    session = Session(bind=connection, expire_on_commit=False)
    try:
        session.info[_DEFERRED] = {}
        session.info[_PLAIN] = True
        session.info[_DIRECT] = DbapiReader(driver, connection.dialect, _DIRECT_COMPILED)
        results = _each_job(session, jobs)
        if results is None:
            return None
        try:
            _write_deferred_direct(session, driver)
        except Exception:
            return None
        if session.in_transaction() or session.new or session.dirty or session.deleted:
            session.commit()
        else:
            driver.execute("COMMIT")
            # What a session's commit announces (the events it recorded, counted by ``gateway.observe``).
            session.dispatch.after_commit(session)
        return results
    finally:
        session.close()  # rolls back what a job ran through it, if the batch did not commit
        if driver.in_transaction:
            driver.execute("ROLLBACK")


def _run_on_kept_connection(
    postgres: PostgresSessions, jobs: list[Job], committing: Callable[[], None]
) -> list[Any] | None:
    """``PostgresSessions``' batch, without savepoints: every job's result, committed together; or None, all rolled
    back, as soon as one job raises or the deferred inserts or updates are refused (the caller runs the jobs again
    through a session, where each gets its own error)."""
    kept = postgres.take()
    try:
        return _run_on(kept, jobs, committing, postgres.sessions)
    finally:
        postgres.give_back(kept)


def _run_on(
    kept: KeptConnection, jobs: list[Job], committing: Callable[[], None], sessions: sessionmaker[Session]
) -> list[Any] | None:
    connection = kept.connection()
    adapted: Any = connection.connection.dbapi_connection  # SQLAlchemy's asyncpg adapter: it owns the transaction
    statements = AsyncpgStatements(adapted, connection.dialect, updates_later=True)
    kept.running = statements
    # Bound to the kept connection: a job that runs a statement through the session joins this very transaction
    # (the adapter's, begun by the first statement whoever sends it), which the session then commits.
    session = Session(bind=connection, expire_on_commit=False)
    committed = lost = False
    try:
        session.info[_DEFERRED] = {}
        session.info[_PLAIN] = True
        session.info[_ASYNCPG] = statements
        session.info[_DIRECT] = None  # (asking for it would begin the session on the connection)
        results = _each_job(session, jobs)
        if results is None:
            return None
        try:
            statements.settle()  # the jobs' statements sent together, and their rest
            results = [settled(result) for result in results]
        except Exception:
            return None
        if statements.failed is not None:  # a kept update was refused, or a rest failed (and a job went on)
            return None
        deferred: dict[Insert | RowsWriter, list[dict[str, Any]]] = session.info.pop(_DEFERRED, {})
        pending = [(key, rows) for key, rows in deferred.items() if rows]
        # What is left to write goes in the COMMIT's own round trip where it can, values inlined, and where the COMMIT
        # is the adapter's own (``commit_after``): the kept updates, then the deferred rows (the events last: their
        # insert takes the log's lock, then held for that one round trip). Each round trip less is one less while the
        # directory's row is locked, which is what one directory's writes wait for (and one less wait for the event
        # loop's turn). Rows that cannot go so are written first, with the rows deferred before them.
        with_commit: str | None = None
        try:
            texts = _inlined_tail(statements, pending) if literals_safe(adapted) else []
            head, tail = pending[: len(pending) - len(texts)], pending[len(pending) - len(texts) :]
            if head:  # (after the row locks kept for the end, then the kept updates: a writer may not see them)
                statements.lock_now()
                statements.flush()
                _write_on_asyncpg(statements, connection, head)
            through_session = bool(session.in_transaction() or session.new or session.dirty or session.deleted)
            straight = not (through_session or connection.in_transaction()) and adapted._transaction is not None
            if straight and texts:
                updates = statements.later_inlined()
                if updates is None:  # (one has a value without a constant: they go first, as parameters)
                    statements.flush()  # (after the row locks kept for the end: ``lock_later``)
                # The row locks kept for the end come first of all (sent now where one cannot go inlined).
                locks = statements.locks_inlined()
                if locks is None:
                    statements.lock_now()
                with_commit = ";\n".join([*(locks or []), *(updates or []), *texts])
            else:
                statements.lock_now()
                statements.flush()
                _write_on_asyncpg(statements, connection, tail)
        except Exception:
            return None
        if through_session:
            session.flush()  # (its statements before the next batch may begin)
        committing()
        backend = _driver(connection).get_server_pid()
        try:
            commit_kept(session, connection, through_session=through_session, before=with_commit)
        except CommitRefused:
            return None  # rolled back (below), answered: the jobs run again with a savepoint each
        except Exception as error:
            lost = True
            # Whatever the error, this connection is done: cut it, so that its backend ends (releasing its locks, the
            # events' one included) and the transaction's outcome is final (a refused COMMIT: rolled back already).
            with contextlib.suppress(Exception):
                _driver(connection).terminate()
            witness = _witness(deferred)
            if witness is None or not _committed(sessions, backend=backend, witness=witness):
                raise
            logger.warning("a write batch's COMMIT lost its answer (%s) but had committed: its answers stand", error)
            session.dispatch.after_commit(session)
        committed = True
        return results
    finally:
        kept.running = None
        # (After a lost COMMIT the connection is gone: nothing to roll back, and it is replaced on next use.)
        with contextlib.suppress(Exception) if lost else contextlib.nullcontext():
            session.close()  # rolls back what a job ran through it, if the batch did not commit
            if connection.in_transaction():
                connection.rollback()
            if adapted._transaction is not None:
                adapted.rollback()
        if committed and not lost:
            kept.begin_next(connection)


def commit_kept(session: Session, connection: Connection, *, through_session: bool, before: str | None = None) -> None:
    """Commit a batch on a kept connection: through the session if a job used it, else straight on the adapter;
    ``before`` (a statement, values inlined: only on the adapter's own transaction) in the COMMIT's round trip."""
    if through_session:
        session.commit()
        return
    if connection.in_transaction():  # begun by a deferred insert run through the connection
        connection.commit()
    else:
        adapted: Any = connection.connection.dbapi_connection
        if before is None:
            adapted.commit()
        else:
            commit_after(adapted, before)
    # What a session's commit announces (the events it recorded, counted by ``gateway.observe``).
    session.dispatch.after_commit(session)


def _inlined_tail(statements: AsyncpgStatements, pending: list[_Deferred]) -> list[str]:
    """The last of ``pending`` that can go as one statement each, values inlined (an INSERT's rows, a writer's that
    has such a statement: ``defer_rows``), as those statements, in order."""
    texts: list[str] = []
    for key, rows in reversed(pending):
        if isinstance(key, Insert):
            text = statements.insert_inlined(key, rows)
        else:
            build = _WITH_COMMIT.get(key)
            text = None if build is None else build(rows)
        if text is None:
            break
        texts.append(text)
    return texts[::-1]


def _witness(deferred: dict[Insert | RowsWriter, list[dict[str, Any]]]) -> tuple[Table, Any] | None:
    """A row the batch wrote (a new user, an event), by its table and id: found after the batch, it committed."""
    for key, rows in deferred.items():
        table = key.table if isinstance(key, Insert) else _WRITTEN_INTO.get(key)
        if isinstance(table, Table) and rows and "id" in table.c and rows[0].get("id") is not None:
            return table, rows[0]["id"]
    return None


_BACKEND_GONE_SECONDS = 10.0


def _committed(sessions: sessionmaker[Session], *, backend: int, witness: tuple[Table, Any]) -> bool:
    """After a COMMIT whose answer was lost: whether it committed. Once the batch's backend process has ended its
    transaction's outcome is final, and one of its rows tells which it was. False when that cannot be known within
    ``_BACKEND_GONE_SECONDS`` (the database unreachable, the backend still there): the jobs then run again, as after
    any failed batch."""
    table, row_id = witness
    waited = 0.0
    while True:
        try:
            with sessions() as session:
                while session.execute(_BACKEND, {"pid": backend}).first() is not None:
                    session.rollback()  # (pg_stat_activity is read once per transaction)
                    if waited >= _BACKEND_GONE_SECONDS:
                        return False
                    await_(asyncio.sleep(0.05))
                    waited += 0.05
                return session.execute(select(table.c.id).where(table.c.id == row_id)).first() is not None
        except Exception:
            # A pooled connection lost too (a restart drops them all; the first error empties the pool), or the
            # database still starting: again, within the same time.
            if waited >= _BACKEND_GONE_SECONDS:
                logger.warning("could not learn whether a write batch committed; its jobs run again", exc_info=True)
                return False
            await_(asyncio.sleep(0.1))
            waited += 0.1


_BACKEND = text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid AND state <> 'idle'")


# Deferred inserts compiled for the rows' columns (SQLite), per statement and set of columns.
_INSERTS_COMPILED: dict[Any, Compiled] = {}


def _write_deferred_direct(session: Session, driver: Any) -> None:
    """``_write_deferred_inserts`` through the driver: each statement's rows in one ``executemany``, bound by the
    engine's own converters (``Compiled``). A statement whose rows leave out a column with a default of SQLAlchemy's
    (which the driver would not fill in), or that is a writer function, goes through the session."""
    deferred: dict[Insert | RowsWriter, list[dict[str, Any]]] = session.info.pop(_DEFERRED, {})
    for key, rows in deferred.items():
        if not rows:
            continue
        compiled = _compiled_insert(key, rows, session.get_bind().dialect) if isinstance(key, Insert) else None
        if compiled is None:
            _write(session.connection(), key, rows)
        else:
            driver.executemany(compiled.sql, [compiled.bound(row) for row in rows])


def _compiled_insert(statement: Insert, rows: list[dict[str, Any]], dialect: Any) -> Compiled | None:
    names = tuple(rows[0])
    if any(tuple(row) != names for row in rows):
        return None
    table: Any = statement.table
    if any(column.default is not None and column.name not in names for column in table.c):
        return None
    return compiled_for(statement, dialect, _INSERTS_COMPILED, column_keys=names)


def _run_in_savepoint(session: Session, job: Job) -> Any:
    """One job of a batch: its result; or, if it raised, ``_Failed`` with its work undone (its statements, the rows
    it deferred, what it noted in ``session.info``) and the batch's transaction as it was before it."""
    deferred: dict[Insert, list[dict[str, Any]]] = session.info[_DEFERRED]
    marks = {statement: len(rows) for statement, rows in deferred.items()}
    noted = {key: value for key, value in session.info.items() if key != _DEFERRED}
    savepoint = session.begin_nested()
    session.connection()  # the SAVEPOINT itself, now: a job's statements may go straight to the driver
    try:
        result = job(session)
        savepoint.commit()
        _job_done(session)
        return result
    except Exception as exc:
        savepoint.rollback()
        noted.pop(_MEMO, None)  # it may name what the rolled-back savepoint locked or read
        for statement in list(deferred):
            if statement in marks:
                del deferred[statement][marks[statement] :]
            else:
                del deferred[statement]
        session.info.clear()
        session.info.update(noted)
        session.info[_DEFERRED] = deferred
        return _Failed(exc)


class WriteQueue:
    """A process's single writer: queues write jobs from the event loop and commits them in batches on one thread
    (see the module's docstring).

    With ``inline`` sessions (SQLite: connections that never wait for a lock), a batch of light jobs (a few
    statements by index each: a SCIM write of one small resource) runs on the event loop itself: SQLite answers them
    in microseconds, less than handing the batch to the writer thread and its results back (two thread switches,
    a wakeup of the loop, and the two threads taking the GIL from each other). A job of such a batch that met
    another connection's lock (another process writing, a WAL checkpoint) runs again on the thread, which waits for
    it.

    On PostgreSQL (``PostgresSessions``) the next batch begins once the one under way sends its COMMIT, on another
    kept connection: up to ``OVERLAPPING`` batches at once. A commit waits for the WAL flush and for its answer to
    come back; meanwhile the next batch's first statement is already in the database (where a lock the committing
    batch holds, its directory's row, makes it wait just until that commit). Each batch still answers its requests
    only after its own commit, and cursors still follow commits: events are written under one advisory lock held to
    the commit (``gateway.events.log``), which the committing batch holds already."""

    def __init__(
        self,
        sessions: sessionmaker[Session] | PostgresSessions,
        *,
        after_batch: Callable[[], None] = lambda: None,
        max_batch: int = 64,
        inline: InlineSessions | None = None,
    ) -> None:
        self._sessions = sessions
        self._inline = inline
        self._after_batch = after_batch
        self._max_batch = max_batch
        self._pending: collections.deque[tuple[Job, asyncio.Future[Any], bool]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        # Batches run on one writer thread, or (PostgreSQL, an async driver's engine) on the event loop in a greenlet,
        # each statement awaited, overlapping (see the class's docstring).
        self._overlapping = isinstance(sessions, PostgresSessions)
        self._thread = (
            None if self._overlapping else ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsync-writer")
        )
        self._careful = Careful()
        self._slots = asyncio.Semaphore(OVERLAPPING)  # batches under way (PostgreSQL)
        self._answering: set[asyncio.Future[None]] = set()
        self._closed = False

    async def run(self, job: Callable[[Session], T | Later[T]], *, light: bool = False) -> T:
        """Queue ``job`` and return its result once its batch has committed (or raise its own error). ``light``: a
        few statements by index, which may run on the event loop (see the class's docstring)."""
        if self._closed:  # (its writer thread, or its connections, are gone: it would fail in the worker instead)
            raise RuntimeError("the database is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future, light))
        self._wakeup.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="dsync-write-queue")
        # The job runs to its end even if this caller goes away: its batch must commit or roll back as a whole.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Stop at shutdown: the batch under way finishes, jobs still queued fail, the writer thread ends; jobs
        queued from now on fail at once."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._pending:
            _job, future, _light = self._pending.popleft()
            if not future.done():
                future.set_exception(RuntimeError("the database is shutting down"))
        if self._inline is not None:
            self._inline.close()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        elif self._answering:
            await asyncio.wait(self._answering)  # on the event loop: the batches under way finish too
        if isinstance(self._sessions, PostgresSessions):
            await greenlet_spawn(self._sessions.shut_down)

    def _start(self, jobs: list[Job], committing: Callable[[], None] = _nothing) -> asyncio.Future[list[Any]]:
        if self._thread is None:
            return asyncio.ensure_future(greenlet_spawn(run_batch, self._sessions, jobs, self._careful, committing))
        return asyncio.get_running_loop().run_in_executor(self._thread, run_batch, self._sessions, jobs, self._careful)

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._pending:
                self._wakeup.clear()
                continue
            if self._overlapping:
                await self._overlap()
                continue
            await self._answer(self._take())

    def _take(self) -> list[tuple[Job, asyncio.Future[Any], bool]]:
        return [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]

    async def _overlap(self) -> None:
        """Begin a batch on PostgreSQL once a slot is free; return once it sends its COMMIT (or ends)."""
        await self._slots.acquire()
        if not self._pending:
            self._slots.release()
            return
        committing = asyncio.Event()
        answering = asyncio.ensure_future(self._answer(self._take(), committing.set))
        self._answering.add(answering)
        answering.add_done_callback(self._answered)
        sent = asyncio.ensure_future(committing.wait())
        try:
            await asyncio.wait([answering, sent], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sent.cancel()

    def _answered(self, answering: asyncio.Future[None]) -> None:
        self._answering.discard(answering)
        self._slots.release()
        if not answering.cancelled():
            answering.exception()  # (its requests got their answers or this error already)

    async def _answer(
        self, batch: list[tuple[Job, asyncio.Future[Any], bool]], committing: Callable[[], None] = _nothing
    ) -> None:
        """Run ``batch`` and give each request its result (or error) once it has committed."""
        jobs = [job for job, _, _ in batch]
        try:
            if self._inline is not None and all(light for _, _, light in batch):
                results = await self._run_inline(jobs)
            else:
                # Shielded: once started, a batch finishes (commit or rollback) even while shutting down.
                results = await asyncio.shield(self._start(jobs, committing))
        except BaseException as exc:
            for _job, future, _light in batch:
                if not future.done():
                    future.set_exception(RuntimeError(f"write batch failed: {exc!r}"))
            raise
        try:
            self._after_batch()
        finally:  # (committed: every request gets its answer, whatever the notification met)
            for (_job, future, _light), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, _Failed):
                    future.set_exception(result.error)
                else:
                    future.set_result(result)

    async def _run_inline(self, jobs: list[Job]) -> list[Any]:
        assert self._inline is not None
        results = run_batch(self._inline, jobs, self._careful)
        locked = [i for i, result in enumerate(results) if isinstance(result, _Failed) and _locked(result.error)]
        if locked:
            again = await asyncio.shield(self._start([jobs[i] for i in locked]))
            for i, result in zip(locked, again, strict=True):
                results[i] = result
        return results


def _locked(error: BaseException) -> bool:
    """SQLite's refusal to wait for another connection's lock (``busy_timeout=0``)."""
    driver_error = error if isinstance(error, sqlite3.OperationalError) else getattr(error, "orig", None)
    if not isinstance(driver_error, sqlite3.OperationalError):
        return False
    text = str(driver_error)
    return "locked" in text or "busy" in text
