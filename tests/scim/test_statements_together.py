"""PostgreSQL's write batches send a run of jobs' calls of one statement together (``rows_together``): what each job
does once its answer is in (its rest) runs in job order; a rest that would use the connection after later jobs'
statements ran, or that raises, makes the batch run again with a savepoint per job, where each job gets its own
answer or error. The last rest of a run may use the connection: nothing of a later job has run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import String, column, text
from sqlalchemy.orm import Session

from gateway.store import grouped_writer
from gateway.store.batch_driver import AsyncpgStatements, Reordered

pytestmark = [
    pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
]

_ECHO = text("SELECT CAST(:key AS VARCHAR) AS key").columns(column("key", String))
_ONE = text("SELECT 1 AS one").columns(column("one", String))


def _job(key: str, rest: Callable[[Session, list[Any]], Any] | None = None) -> Callable[[Session], Any]:
    def job(session: Session) -> Any:
        statements = grouped_writer.postgres_statements(session)
        assert statements is not None

        def then(rows: list[Any]) -> Any:
            return rest(session, rows) if rest is not None else [row[0] for row in rows]

        return statements.rows_together(_ECHO, {"key": key}, key=key, key_column=0, then=then)

    return job


def _uses_the_connection(session: Session, rows: list[Any]) -> Any:
    statements = grouped_writer.postgres_statements(session)
    assert statements is not None
    return [row[0] for row in rows] + [statements.rows(_ONE, {})[0][0]]


def _raises(_session: Session, _rows: list[Any]) -> Any:
    raise ValueError("refused by its rest")


async def _in_one_batch(app: Any, jobs: list[Callable[[Session], Any]]) -> list[Any]:
    database = app.state.database
    busy = asyncio.ensure_future(database.transaction(lambda session: session.execute(text("SELECT pg_sleep(0.3)"))))
    await asyncio.sleep(0.05)
    tasks = [asyncio.ensure_future(database.transaction(job)) for job in jobs]
    await busy
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_run_of_calls_answers_each_job_its_own_rows(app: Any, in_savepoints: list[object]) -> None:
    results = await _in_one_batch(app, [_job("a"), _job("b"), _job("a"), _job("c", _uses_the_connection)])
    assert results == [["a"], ["b"], ["a"], ["c", 1]]
    assert in_savepoints == []  # the last rest of a run may use the connection


async def test_a_rest_using_the_connection_after_later_statements_reruns_the_batch(
    app: Any, in_savepoints: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    reordered: list[BaseException] = []
    guard = AsyncpgStatements._guard

    def watching(statements: AsyncpgStatements) -> None:
        try:
            guard(statements)
        except Reordered as error:
            reordered.append(error)
            raise

    monkeypatch.setattr(AsyncpgStatements, "_guard", watching)
    results = await _in_one_batch(app, [_job("a"), _job("b", _uses_the_connection), _job("c")])
    assert results == [["a"], ["b", 1], ["c"]]
    assert len(reordered) == 1
    assert len(in_savepoints) == 3  # run again, each job in a savepoint


async def test_a_rest_that_raises_fails_its_own_job_only(app: Any, in_savepoints: list[object]) -> None:
    results = await _in_one_batch(app, [_job("a"), _job("b", _raises), _job("c")])
    assert results[0] == ["a"] and results[2] == ["c"]
    assert isinstance(results[1], ValueError)
    assert len(in_savepoints) == 3


async def test_a_rest_failing_inside_another_jobs_statement_is_not_that_jobs_error(
    app: Any, in_savepoints: list[object]
) -> None:
    """A later job's statement sends the run first, so a rest's error surfaces there: caught by that job as its own,
    it would answer the wrong request. The batch runs again with savepoints instead, each job getting its own."""

    def catching(session: Session) -> Any:
        statements = grouped_writer.postgres_statements(session)
        assert statements is not None
        try:
            return statements.rows(_ONE, {})[0][0]
        except ValueError as error:
            return f"caught {error}"

    results = await _in_one_batch(app, [_job("a"), _job("b", _raises), catching, _job("c")])
    assert results[0] == ["a"] and isinstance(results[1], ValueError)
    assert results[2] == 1 and results[3] == ["c"]
    assert len(in_savepoints) == 4
