"""Reads by index without the ORM's or Core's per-statement machinery: the embedded store's fastest path.

A SCIM GET by id, or by ``userName eq "…"``, is one or two statements that each find a row or two through an index.
SQLite answers such a statement in microseconds; what it cost was everything around it (a session, a pooled
connection, BEGIN and ROLLBACK through the engine's events, the statement's cache key, the result's wrapping). A
``Reader`` runs prebuilt Core ``SELECT`` statements, each compiled once for the dialect, straight on a DBAPI
connection, and converts their columns with the very result processors the engine would use (timestamps, JSON
through the store's codec): same SQL, same values, a fraction of the cost.

``Database.lookup`` hands a job a ``DbapiReader`` on SQLite (over a connection of its own, on the event loop), and on
PostgreSQL an asyncpg one (``gateway.store.lookup_connections``); the code that reads is the same on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, ReturnsRows

Row = tuple[Any, ...]


class Reader(Protocol):
    """Runs prebuilt ``SELECT`` statements with their bound parameters, answering plain tuples."""

    def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> list[Row]: ...


class Compiled:
    """One statement compiled for one dialect: its SQL, how its parameters are passed (and converted: timestamps,
    JSON), its columns' converters. A ``SELECT``, or an ``INSERT``/``UPDATE``/``DELETE`` (its columns: what it
    returns)."""

    __slots__ = ("sql", "names", "positional", "defaults", "processors", "converters")

    def __init__(self, statement: ClauseElement, dialect: Dialect, *, column_keys: Sequence[str] | None = None) -> None:
        # ``column_keys``: an INSERT's columns (those of its rows), as an ``executemany`` of them binds them.
        compiled = statement.compile(dialect=dialect, column_keys=None if column_keys is None else list(column_keys))
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self.positional = compiled.positional
        self.names: Sequence[str] = compiled.positiontup or ()
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("a prepared statement takes no expanding (IN list) parameters")
        # The values of the statement's own literals (``lower(:param_1)``…), under the names the SQL gives them.
        self.defaults = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        processors: list[tuple[str, Callable[[Any], Any]]] = []
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None and bind.required:
                processors.append((name, process))
        self.processors = processors
        converters: list[tuple[int, Callable[[Any], Any]]] = []
        # (A ``text()`` statement has no columns of its own: its rows, if any, are taken as they come.)
        for index, column in enumerate(getattr(statement, "exported_columns", ())):
            convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if convert is not None:
                converters.append((index, convert))
        self.converters = converters

    def bound(self, parameters: Mapping[str, Any]) -> Any:
        """The parameters as the driver takes them: a tuple in the SQL's order, or a mapping by name."""
        values = {**self.defaults, **parameters}
        for name, process in self.processors:
            if values[name] is not None:
                values[name] = process(values[name])
        return tuple(values[name] for name in self.names) if self.positional else values

    def convert(self, fetched: Sequence[Any]) -> list[Row]:
        """The driver's rows as plain tuples of the values the engine would give."""
        if not self.converters:
            return [tuple(row) for row in fetched]
        result: list[Row] = []
        for row in fetched:
            columns = list(row)
            for index, convert in self.converters:
                columns[index] = convert(columns[index])
            result.append(tuple(columns))
        return result


def compiled_for(
    statement: ClauseElement,
    dialect: Dialect,
    cache: dict[Any, Compiled],
    *,
    column_keys: tuple[str, ...] | None = None,
) -> Compiled:
    """``statement`` compiled for ``dialect`` (and an INSERT's ``column_keys``), once per ``cache`` (one cache per
    dialect)."""
    key = statement if column_keys is None else (statement, column_keys)
    compiled = cache.get(key)
    if compiled is None:
        compiled = cache[key] = Compiled(statement, dialect, column_keys=column_keys)
    return compiled


class DbapiReader:
    """A ``Reader`` straight on a DBAPI connection (the caller owns its transaction); statements are compiled on
    first use and kept (``cache``, shared by the readers of one engine). It runs a write job's statements too
    (``gateway.store.grouped_writer.direct_statements``): ``rows`` answers what they return (none without
    ``RETURNING``), and its errors are the driver's own (``sqlite3.IntegrityError``…), not SQLAlchemy's."""

    __slots__ = ("_connection", "_dialect", "_cache")

    def __init__(self, connection: Any, dialect: Dialect, cache: dict[Any, Compiled]) -> None:
        self._connection = connection
        self._dialect = dialect
        self._cache = cache

    def rows(self, statement: ReturnsRows, parameters: Mapping[str, Any]) -> list[Row]:
        compiled = compiled_for(statement, self._dialect, self._cache)
        return compiled.convert(self._connection.execute(compiled.sql, compiled.bound(parameters)).fetchall())
