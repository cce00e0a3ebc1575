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

Errors keep the shape the rest of the store expects: asyncpg's are raised as SQLAlchemy's (``IntegrityError`` for a
uniqueness conflict, with ``.orig.sqlstate``, so a deadlock or a serialization failure is still retried).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asyncpg import PostgresError
from sqlalchemy import Connection, Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util import await_

from gateway.store.prepared import Compiled, Row, compiled_for

# The batches' statements, compiled once per process (one PostgreSQL dialect), and INSERTs per set of columns.
_COMPILED: dict[Any, Compiled] = {}


class AsyncpgStatements:
    """A ``gateway.store.prepared.Reader`` on a write batch's asyncpg connection, in its transaction (begun here if
    no statement began it yet): ``rows`` answers what a statement returns (none without ``RETURNING``)."""

    __slots__ = ("_adapted", "_driver", "_dialect", "_later", "_later_rows", "failed")

    def __init__(self, adapted: Any, dialect: Dialect, *, updates_later: bool = False) -> None:
        self._adapted = adapted  # SQLAlchemy's adapter: it owns the transaction (commit, rollback, savepoints)
        self._driver: Any = adapted.driver_connection
        self._dialect = dialect
        # ``update_later``'s statements (None: run at once), in the order first used, and the rows they change.
        self._later: dict[Compiled, list[Any]] | None = {} if updates_later else None
        self._later_rows: set[str] = set()
        self.failed: BaseException | None = None  # what ``flush`` met: the batch must not commit

    def rows(self, statement: ClauseElement, parameters: Mapping[str, Any], *, reads: str | None = None) -> list[Row]:
        """``reads``: the statement reads the row of this id (and nothing that ``update_later`` may have changed but
        that row), so updates of other rows may still wait."""
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
        names = tuple(rows[0])
        if any(tuple(row) != names for row in rows):
            return False
        table: Any = statement.table
        # A column left to a plain value of SQLAlchemy's (a new user's ``state``…) gets it here, as SQLAlchemy would.
        defaults: dict[str, Any] = {}
        for column in table.c:
            if column.default is not None and column.name not in names:
                if not column.default.is_scalar:
                    return False
                defaults[column.name] = column.default.arg
        if defaults:
            rows = [{**row, **defaults} for row in rows]
            names = tuple(rows[0])
        self.flush()
        compiled = compiled_for(statement, self._dialect, _COMPILED, column_keys=names)
        self._begun()
        try:
            await_(self._driver.executemany(compiled.sql, [compiled.bound(row) for row in rows]))
        except PostgresError as error:
            raise _translated(error, compiled.sql, self._dialect) from error
        return True

    def update_later(self, statement: ClauseElement, parameters: Mapping[str, Any], *, row: str) -> bool:
        """Keep an UPDATE of the row ``row`` (that returns nothing) for ``flush``, which sends every kept one in one
        round trip per statement (a batch of PUTs: one, not one per request); False, and nothing done, when this
        batch runs statements at once (``updates_later`` off: with a savepoint per job, so each job meets its own
        errors). Any statement that may read what one changed (``rows`` without a ``reads`` elsewhere, a statement
        through SQLAlchemy: ``flush_before``) flushes them first, and so does the batch before its commit; an
        error there (a uniqueness conflict) fails the whole batch, which then runs again with savepoints."""
        if self._later is None:
            return False
        compiled = compiled_for(statement, self._dialect, _COMPILED)
        self._later.setdefault(compiled, []).append(compiled.bound(parameters))
        self._later_rows.add(row)
        return True

    def flush(self) -> None:
        """Send the updates kept by ``update_later``."""
        if not self._later:
            return
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
        # The adapter begins its transaction lazily, with its first statement: this may be the batch's first.
        if self._adapted._transaction is None:
            await_(self._adapted._start_transaction())


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
