"""PostgreSQL's grouped write batches, statement by statement straight on asyncpg.

A batch runs on the event loop in a greenlet over SQLAlchemy's asyncpg adapter (``gateway.store.grouped_writer``).
Through a session or a Core connection every statement also paid SQLAlchemy's per-statement machinery (the
statement's cache key, the execution context, the adapter's cursor, the result's wrapping): 50-140 us of CPU each, on
the event loop, while the batch's other requests waited for it. ``AsyncpgStatements`` runs a job's prebuilt statements
on the batch's own asyncpg connection, in its transaction, awaited from the greenlet, as the lookups do
(``gateway.store.lookup_connections``): the SQL compiled once for the dialect, parameters and columns converted by
the engine's own processors (``gateway.store.prepared.Compiled``), the statement prepared once per connection by
asyncpg (whose plans ``gateway.store.plan_age`` keeps young: it discards a connection's plans, whoever prepared
them).

In a batch that runs without savepoints, jobs whose one statement is the same (a DELETE of a user, a member added to
a group, each by key) may send it together (``rows_together``): one round trip for the batch's run of them, in job
order, as if each had waited for its own answer. Each job's rest (its events) runs once the answers are in, still in
job order; every other use of the connection, and every row deferred for the commit, waits for that first.
The row locks a batch keeps for later (``lock_later``: its directory's) may go as the first executions of such a run
(``LockFirst``): asyncpg sends a run's executions in one pipeline, each a statement of its own, so those after the
lock read from a snapshot taken once it is held (READ COMMITTED), as if the lock had had a round trip of its own.

Errors keep the shape the rest of the store expects: asyncpg's are raised as SQLAlchemy's (``IntegrityError`` for a
uniqueness conflict, with ``.orig.sqlstate``, so a deadlock or a serialization failure is still retried).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from asyncpg import PostgresError
from sqlalchemy import Connection, Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util import await_

from gateway.store.prepared import Compiled, Row, compiled_for

T = TypeVar("T")
U = TypeVar("U")

# The batches' statements, compiled once per process (one PostgreSQL dialect), and INSERTs per set of columns.
_COMPILED: dict[Any, Compiled] = {}


class Later(Generic[T]):
    """A job's answer that waits for its statement sent with others (``AsyncpgStatements.rows_together``): given
    once the batch has their answers, before its commit. ``map`` makes the answer built from it."""

    __slots__ = ("_value", "_done", "_then")

    def __init__(self) -> None:
        self._value: Any = None
        self._done = False
        self._then: list[Callable[[Any], None]] = []

    def map(self, function: Callable[[T], U]) -> Later[U]:
        mapped: Later[U] = Later()
        self._then.append(lambda value: mapped.give(function(value)))
        return mapped

    def give(self, value: T) -> None:
        self._value, self._done = value, True
        for then in self._then:
            then(value)

    @property
    def value(self) -> T:
        if not self._done:
            raise RuntimeError("a statement sent together with others was never answered")
        value: T = self._value
        return value


def mapped(result: T | Later[T], function: Callable[[T], U]) -> U | Later[U]:
    """``function`` of a job's result: now, or once a ``Later`` has its value."""
    return result.map(function) if isinstance(result, Later) else function(result)


def settled(result: Any) -> Any:
    """A job's result as given: a ``Later``'s value once the batch has it."""
    return result.value if isinstance(result, Later) else result


class Reordered(RuntimeError):
    """A job's rest used the connection after statements of later jobs had run (``rows_together``): the batch must
    run again, each job on its own."""


# The parameter of a ``LockFirst`` statement that makes it take a kept lock instead of doing its work, and the prefix
# of the names under which it takes that lock's parameters (none of them the statement's own).
LOCK_FIRST = "dsync_lock_first"
LOCK_FIRST_PREFIX = "dsync_lock_"


class LockFirst:
    """A statement that ``rows_together`` sends with others, in the variant that can take the row locks a batch keeps
    for later (``lock_later``'s checks of ``stands_for``) as the run's first executions: with ``LOCK_FIRST`` true and
    a check's parameters (named with ``LOCK_FIRST_PREFIX``; its own parameters None), ``statement`` takes and checks
    that lock instead of doing its work, and returns no row; with ``LOCK_FIRST`` false it is the plain statement."""

    __slots__ = ("statement", "stands_for")

    def __init__(self, statement: ClauseElement, *, stands_for: ClauseElement) -> None:
        self.statement = statement
        self.stands_for = stands_for


class _Together:
    """Jobs' calls of one statement waiting to go together: each call's parameters, key, and what makes its answer;
    ``sent``: the statement sent for them (``LockFirst``'s variant where the run takes the kept locks first, whose
    check it stands for is ``locks``)."""

    __slots__ = ("compiled", "sent", "locks", "key_column", "key_rows", "calls")

    def __init__(
        self,
        compiled: Compiled,
        key_column: int,
        key_rows: bool,
        lock_first: tuple[Compiled, Compiled] | None = None,
    ) -> None:
        self.compiled = compiled
        self.sent: Compiled = compiled if lock_first is None else lock_first[0]
        self.locks: Compiled | None = None if lock_first is None else lock_first[1]
        self.key_column = key_column
        self.key_rows = key_rows
        self.calls: dict[str, tuple[Any, Callable[[list[Row]], Any], Later[Any]]] = {}

    def bound(self, parameters: Mapping[str, Any]) -> Any:
        if self.locks is None:
            return self.sent.bound(parameters)
        return _gated(self.sent, parameters, lock=False)


def _gated(compiled: Compiled, parameters: Mapping[str, Any], *, lock: bool) -> Any:
    """A ``LockFirst`` statement's parameters bound: the statement's own (``lock`` false) or a lock's (``lock``: a
    check's parameters, given their prefix), the other side's None. A parameter of the side given that is missing
    still fails, as in a plain statement."""
    given = {LOCK_FIRST_PREFIX + name: value for name, value in parameters.items()} if lock else parameters
    other = [
        name
        for name in compiled.names
        if name not in compiled.defaults and name != LOCK_FIRST and name.startswith(LOCK_FIRST_PREFIX) != lock
    ]
    return compiled.bound({**dict.fromkeys(other), **given, LOCK_FIRST: lock})


class AsyncpgStatements:
    """A ``gateway.store.prepared.Reader`` on a write batch's asyncpg connection, in its transaction (begun here if
    no statement began it yet): ``rows`` answers what a statement returns (none without ``RETURNING``)."""

    __slots__ = (
        "_adapted",
        "_driver",
        "_dialect",
        "_later",
        "_later_rows",
        "failed",
        "_together",
        "_rest",
        "_rest_rows",
        "_locks",
    )

    def __init__(self, adapted: Any, dialect: Dialect, *, updates_later: bool = False) -> None:
        self._adapted = adapted  # SQLAlchemy's adapter: it owns the transaction (commit, rollback, savepoints)
        self._driver: Any = adapted.driver_connection
        self._dialect = dialect
        # ``update_later``'s statements (None: run at once), in the order first used, and the rows they change.
        self._later: dict[Compiled, list[Any]] | None = {} if updates_later else None
        self._later_rows: set[str] = set()
        self.failed: BaseException | None = None  # what ``flush`` met: the batch must not commit
        # ``rows_together``'s calls waiting (only in a batch without savepoints: the one that keeps updates).
        self._together: _Together | None = None
        # Running a job's rest while later jobs' statements have run already: their keys (else None), and whether
        # each of them read its key's row only (``key_rows``).
        self._rest: frozenset[str] | None = None
        self._rest_rows = False
        # ``lock_later``'s checks not sent yet, by the key of the row each locks.
        self._locks: dict[str, list[tuple[Compiled, dict[str, Any]]]] = {}

    def rows_together(
        self,
        statement: ClauseElement,
        parameters: Mapping[str, Any],
        *,
        key: str,
        key_column: int,
        then: Callable[[list[Row]], T],
        key_rows: bool = False,
        lock_first: LockFirst | None = None,
    ) -> T | Later[T]:
        """``then`` of the rows ``statement`` returns, where every row it returns holds ``key`` in column
        ``key_column``; in a batch without savepoints, a ``Later`` instead: the statement goes with the next jobs'
        calls of the same statement (other keys) in one round trip, and ``then`` runs once their answers are in, in
        job order. ``then`` may record events but must run no statement (else the batch runs again job by job).
        ``key_rows``: the statement reads the row of ``key`` and nothing an ``update_later`` may change but that row;
        then ``then`` may keep an update of that row for later too. ``lock_first``: the statement's variant that
        takes the locks still kept when the run begins as its first executions, in its round trip (``LockFirst``)."""
        if self._later is None:
            return then(self.rows(statement, parameters))
        compiled = compiled_for(statement, self._dialect, _COMPILED)
        waiting = self._together
        if waiting is not None and (waiting.compiled is not compiled or key in waiting.calls):
            self.settle()
            waiting = None
        if waiting is None:
            self._guard()
            first = None
            if lock_first is not None and self._locks:  # (sent otherwise before the run: ``_locks_first`` finds none)
                first = (
                    compiled_for(lock_first.statement, self._dialect, _COMPILED),
                    compiled_for(lock_first.stands_for, self._dialect, _COMPILED),
                )
            waiting = self._together = _Together(compiled, key_column, key_rows, first)
        later: Later[T] = Later()
        waiting.calls[key] = (waiting.bound(parameters), then, later)
        return later

    def settle(self) -> None:
        """Send the statements waiting to go together and run each job's rest, in job order (and so on, while a last
        rest began another run). Whatever fails here fails the batch (``failed``): an error of a job's rest may reach
        another job, whose statement made it settle, and must not pass for that one's own."""
        while self._together is not None:
            try:
                self._settle_run()
            except BaseException as error:
                self.failed = self.failed or error
                raise

    def _settle_run(self) -> None:
        waiting, self._together = self._together, None
        assert waiting is not None
        if self._later and (not waiting.key_rows or not self._later_rows.isdisjoint(waiting.calls)):
            self.flush()  # (a statement of theirs may read what an update kept for later changes)
        locks = self._locks_first(waiting)
        self._begun()
        compiled = waiting.sent
        arguments = [*locks, *(bound for bound, _, _ in waiting.calls.values())]
        try:
            if len(arguments) == 1:
                fetched = await_(self._driver.fetch(compiled.sql, *arguments[0]))
            else:
                fetched = await_(self._driver.fetchmany(compiled.sql, arguments))
        except PostgresError as error:
            raise _translated(error, compiled.sql, self._dialect) from error
        found: dict[str, list[Row]] = {}
        for row in compiled.convert(fetched):
            found.setdefault(row[waiting.key_column], []).append(row)
        keys = list(waiting.calls)
        self._rest_rows = waiting.key_rows
        try:
            for index, (key, (_arguments, then, later)) in enumerate(waiting.calls.items()):
                self._rest = frozenset(keys[index + 1 :]) or None
                later.give(then(found.get(key, [])))
        finally:
            self._rest = None

    def _locks_first(self, waiting: _Together) -> list[Any]:
        """The kept locks as the first executions of ``waiting``'s run (taken from those ``lock_now`` would send), in
        key order as ever; none where the run cannot take them all."""
        if waiting.locks is None or not self._locks:
            return []
        if any(compiled is not waiting.locks for checks in self._locks.values() for compiled, _ in checks):
            return []
        locks, self._locks = self._locks, {}
        return [
            _gated(waiting.sent, parameters, lock=True) for key in sorted(locks) for _compiled, parameters in locks[key]
        ]

    def before_statement(self) -> None:
        """Before a statement sent some other way (through SQLAlchemy) on the batch's connection: what waits goes
        first."""
        self.settle()
        self._guard()
        self.flush()
        self.lock_now()

    def lock_later(self, statement: ClauseElement, parameters: Mapping[str, Any], *, key: str) -> bool:
        """Take a row lock that ``statement`` takes and checks (it fails where the row is not as the job saw it) just
        before the batch's next statement, or in its COMMIT's query if none comes: a job that only writes (a new
        user) then holds it for that one round trip, not from its start. False, and nothing done, when this batch
        runs statements at once (with a savepoint per job): the caller reads and locks the row itself."""
        if self._later is None:
            return False
        check = (compiled_for(statement, self._dialect, _COMPILED), dict(parameters))
        checks = self._locks.setdefault(key, [])
        if check not in checks:  # (jobs that saw the row otherwise each have theirs checked)
            checks.append(check)
        return True

    def lock_now(self) -> None:
        """Send the checks ``lock_later`` keeps (rows in key order, as every batch locks them)."""
        if not self._locks:
            return
        locks, self._locks = self._locks, {}
        self._start()
        for key in sorted(locks):
            for compiled, parameters in locks[key]:
                try:
                    await_(self._driver.fetch(compiled.sql, *compiled.bound(parameters)))
                except PostgresError as error:
                    self.failed = _translated(error, compiled.sql, self._dialect)
                    raise self.failed from error

    def locks_inlined(self) -> list[str] | None:
        """The checks ``lock_later`` keeps, as statements with their values inlined (in key order), for the COMMIT's
        query, before its other statements; None (and still kept) where one cannot go so."""
        texts = [
            inlined(compiled.sql, compiled.bound(parameters))
            for _key, checks in sorted(self._locks.items())
            for compiled, parameters in checks
        ]
        if any(text is None for text in texts):
            return None
        self._locks = {}
        return [str(text) for text in texts]

    def _guard(self) -> None:
        if self._rest is not None:
            raise Reordered("a statement after later jobs' statements had run")

    def rows(self, statement: ClauseElement, parameters: Mapping[str, Any], *, reads: str | None = None) -> list[Row]:
        """``reads``: the statement reads the row of this id (and nothing that ``update_later`` may have changed but
        that row), so updates of other rows may still wait."""
        self.settle()
        self._guard()
        if self._later and (reads is None or reads in self._later_rows):
            self.flush()
        compiled = compiled_for(statement, self._dialect, _COMPILED)
        self._begun()
        try:
            fetched = await_(self._driver.fetch(compiled.sql, *compiled.bound(parameters)))
        except PostgresError as error:
            raise _translated(error, compiled.sql, self._dialect) from error
        return compiled.convert(fetched)

    def insert_many(self, statement: Insert, rows: list[dict[str, Any]]) -> bool:
        """``statement`` for every one of ``rows`` in one round trip (asyncpg's ``executemany``); False, and nothing
        done, when the rows cannot go this way (not all the same columns, or a column left to a default that SQLAlchemy
        computes, which the driver would not)."""
        filled = _with_defaults(statement, rows)
        if filled is None:
            return False
        rows, names = filled, tuple(filled[0])
        self.settle()
        self._guard()
        self.flush()
        compiled = compiled_for(statement, self._dialect, _COMPILED, column_keys=names)
        self._begun()
        try:
            await_(self._driver.executemany(compiled.sql, [compiled.bound(row) for row in rows]))
        except PostgresError as error:
            raise _translated(error, compiled.sql, self._dialect) from error
        return True

    def insert_inlined(self, statement: Insert, rows: list[dict[str, Any]]) -> str | None:
        """``insert_many``'s rows as one multi-row INSERT, their values inlined (``inlined``), for the COMMIT's query
        (``commit_after``); None where they cannot go so (as ``insert_many``, or a value that has no literal)."""
        filled = _with_defaults(statement, rows)
        if filled is None:
            return None
        compiled = compiled_for(statement, self._dialect, _COMPILED, column_keys=tuple(filled[0]))
        return inlined_insert(compiled.sql, [compiled.bound(row) for row in filled])

    def later_inlined(self) -> list[str] | None:
        """The updates ``update_later`` kept, as statements with their values inlined, taken from those ``flush``
        would send: for the COMMIT's query, before its other statements. None (and still kept) where one of them
        cannot go so."""
        if not self._later:
            return []
        texts: list[str] = []
        for compiled, arguments in self._later.items():
            for bound in arguments:
                text = inlined(compiled.sql, bound)
                if text is None:
                    return None
                texts.append(text)
        self._later = {}
        self._later_rows.clear()
        return texts

    def update_later(self, statement: ClauseElement, parameters: Mapping[str, Any], *, row: str) -> bool:
        """Keep an UPDATE of the row ``row`` (that returns nothing) for ``flush``, which sends every kept one in one
        round trip per statement (a batch of PUTs: one, not one per request); False, and nothing done, when this
        batch runs statements at once (``updates_later`` off: with a savepoint per job, so each job meets its own
        errors). Any statement that may read what one changed (``rows`` without a ``reads`` elsewhere, a statement
        through SQLAlchemy: ``flush_before``) flushes them first, and so does the batch before its commit; an
        error there (a uniqueness conflict) fails the whole batch, which then runs again with savepoints."""
        if self._later is None:
            return False
        self.settle()
        if self._rest is not None and (not self._rest_rows or row in self._rest):
            # (Later jobs' statements, run already, read only their own keys' rows: not this one.)
            raise Reordered("an update kept for later, after later jobs' statements had run")
        compiled = compiled_for(statement, self._dialect, _COMPILED)
        self._later.setdefault(compiled, []).append(compiled.bound(parameters))
        self._later_rows.add(row)
        return True

    def flush(self) -> None:
        """Send the updates kept by ``update_later``."""
        if not self._later:
            return
        self._guard()
        later, self._later = self._later, {}
        self._later_rows.clear()
        self._begun()
        for compiled, arguments in later.items():
            try:
                await_(self._driver.executemany(compiled.sql, arguments))
            except PostgresError as error:
                self.failed = _translated(error, compiled.sql, self._dialect)
                raise self.failed from error

    def _begun(self) -> None:
        """Before a statement: the transaction begun, and the rows it may read or change locked first."""
        self._start()
        self.lock_now()

    def _start(self) -> None:
        # The adapter begins its transaction lazily, with its first statement: this may be the batch's first.
        if self._adapted._transaction is None:
            await_(self._adapted._start_transaction())


def _with_defaults(statement: Insert, rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``rows`` as the driver is to insert them: a column left to a plain value of SQLAlchemy's (a new user's
    ``state``…) given it, as SQLAlchemy would. None when they cannot go to the driver straight: not all the same
    columns, or a column left to a default that SQLAlchemy computes."""
    names = tuple(rows[0])
    if any(tuple(row) != names for row in rows):
        return None
    table: Any = statement.table
    defaults: dict[str, Any] = {}
    for column in table.c:
        if column.default is not None and column.name not in names:
            if not column.default.is_scalar:
                return None
            defaults[column.name] = column.default.arg
    return [{**row, **defaults} for row in rows] if defaults else rows


# A compiled statement's parameters ($1, $2…) and, to be left as they are, its string constants and quoted names.
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\d+)")
# An INSERT of one row of parameters only (each maybe cast), with nothing after it (no RETURNING, no ON CONFLICT).
_VALUES = re.compile(r"^(INSERT INTO [^;]+? VALUES )(\((?:\$\d+(?:::[A-Z ]+)?(?:, )?)+\))$")


def literal(value: Any) -> str | None:
    """``value`` (a parameter as the driver takes it) as an SQL constant, or None where this does not know how: only
    where ``literals_safe``. A placeholder's cast (``$1::VARCHAR``) types the constant that replaces it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"({value})"
    if isinstance(value, float):
        return f"({value!r})" if math.isfinite(value) else None
    if isinstance(value, str):
        return string_literal(value) if "\x00" not in value else None
    if isinstance(value, datetime.datetime):
        # (A naive one is read in the session's time zone as text, where asyncpg would take it as UTC.)
        return string_literal(value.isoformat()) if value.tzinfo is not None else None
    if isinstance(value, datetime.date | datetime.time):
        return string_literal(value.isoformat())
    return None


def inlined(sql: str, bound: Sequence[Any]) -> str | None:
    """``sql`` (asyncpg's, numbered parameters) with ``bound``'s values written in as constants; None where one has
    no ``literal``."""
    values = [literal(value) for value in bound]
    if any(value is None for value in values):
        return None

    def put(match: re.Match[str]) -> str:
        number = match.group(1)
        return match.group(0) if number is None else str(values[int(number) - 1])

    return _PLACEHOLDER.sub(put, sql)


def inlined_insert(sql: str, arguments: Sequence[Sequence[Any]]) -> str | None:
    """An ``INSERT … VALUES (…)`` for every row of ``arguments``, as one statement of as many rows, values inlined."""
    shape = _VALUES.match(sql)
    if shape is None:
        return None
    head, row = shape.groups()
    rows = [inlined(row, bound) for bound in arguments]
    if any(text is None for text in rows):
        return None
    return head + ", ".join(str(text) for text in rows)


def asyncpg_statements(connection: Connection) -> AsyncpgStatements | None:
    """``AsyncpgStatements`` on ``connection``'s asyncpg connection; None on any other driver."""
    if connection.dialect.driver != "asyncpg":
        return None
    return AsyncpgStatements(connection.connection.dbapi_connection, connection.dialect)


def _translated(error: PostgresError, sql: str, dialect: Dialect) -> DBAPIError:
    """asyncpg's ``error`` as SQLAlchemy raises it for the same statement (``IntegrityError``…, ``.orig.sqlstate``)."""
    dbapi: Any = dialect.loaded_dbapi
    mapped = dbapi.Error
    for kind in type(error).__mro__:
        if kind in dbapi._asyncpg_error_translate:
            mapped = dbapi._asyncpg_error_translate[kind]
            break
    orig = mapped(str(error.args[0]) if error.args else str(error), error)
    translated: DBAPIError = DBAPIError.instance(sql, None, orig, dbapi.Error, hide_parameters=True, dialect=dialect)
    return translated


class CommitRefused(Exception):
    """``commit_after``'s query was answered with an error: nothing it would have committed is."""


def string_literal(value: str) -> str:
    """``value`` as an SQL string constant, for a statement sent with its values inlined (``commit_after``): quotes
    doubled, which is the whole of the escaping while ``standard_conforming_strings`` is on (``literals_safe``)."""
    if "\x00" in value:  # (PostgreSQL's text holds no NUL, and a simple query would end at one)
        raise ValueError("a string constant cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def literals_safe(adapted: Any) -> bool:
    """Whether ``string_literal`` is a constant to this connection: backslashes taken as themselves (the default
    since PostgreSQL 9.1; a server configured otherwise gets its rows as parameters instead)."""
    settings = adapted._connection.get_settings()
    return getattr(settings, "standard_conforming_strings", None) == "on"


def commit_after(adapted: Any, statement: str) -> None:
    """Run ``statement`` (values inlined) and COMMIT the adapter's transaction in one round trip: one simple query,
    which PostgreSQL runs in the open transaction and which stops at the first error (the COMMIT unsent, the
    transaction aborted). ``CommitRefused``: nothing committed; anything else raised leaves the outcome unknown (the
    connection lost with the answer)."""
    driver = adapted._connection
    try:
        await_(driver.execute(f"{statement};\nCOMMIT"))
    except PostgresError as error:
        if driver.is_closed():
            raise
        # The server answered with an error, so nothing committed: either the statement failed (the COMMIT unsent)
        # or the COMMIT did (rolled back). The transaction is still the adapter's to roll back.
        raise CommitRefused(str(error)) from error
    # Committed: over for SQLAlchemy's adapter and for asyncpg too, as after their own COMMIT (asyncpg would take the
    # next transaction for a nested one, a SAVEPOINT, while it still knew this one).
    adapted._transaction = None
    if hasattr(adapted, "_started"):  # (SQLAlchemy 2.0's adapter also keeps this flag)
        adapted._started = False
    driver._top_xact = None
