"""Each SCIM request is one database job: authentication, the rate limit and activation ride along with it.

Activation is the one extra transaction, and only when a directory's first authorized request could not link it
itself (a read, or a write that failed); a write links it in its own transaction, so ``dsync.activated`` comes
before that write's events."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.ops import directories, organizations
from gateway.settings import Settings
from gateway.store import grouped_writer
from gateway.store.database import Database
from gateway.store.models import Organization
from tests.conftest import PUBLIC_URL, make_directory, recorded_events


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No background jobs of their own (webhook delivery, retention) beside the ones counted here."""
    return dataclasses.replace(settings, webhook_worker=False, event_retention_days=0)


@pytest.fixture(autouse=True)
async def _quiet_request_log(app: Any) -> None:
    """The request log writes its buffer every second as a job of its own, which would be counted here. Stopped
    (what it holds is written at shutdown)."""
    await app.state.request_log.stop()


@pytest.fixture
def jobs(app: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many read and write jobs the store ran (``lookup``: a read by index, see ``Database.lookup``)."""
    database: Database = app.state.database
    counts = {"query": 0, "lookup": 0, "transaction": 0}

    def counting(name: str) -> Callable[..., Any]:
        run = getattr(database, name)

        async def counted(job: Any, **options: Any) -> Any:
            counts[name] += 1
            return await run(job, **options)

        return counted

    for name in counts:
        monkeypatch.setattr(database, name, counting(name))
    return counts


async def _names(app: Any, directory_id: str) -> list[str]:
    return [name for name, _ in await recorded_events(app.state.database, directory_id)]


async def test_a_failed_first_read_links_once_then_reads_are_one_job(
    app: Any, client: httpx.AsyncClient, jobs: dict[str, int]
) -> None:
    directory = await make_directory(app.state.database)
    jobs.update(query=0, transaction=0)
    missing = await client.get(f"{directory.path}/Users/directory_user_nope", headers=directory.headers)
    assert missing.status_code == 404
    assert jobs == {"query": 0, "lookup": 1, "transaction": 1}  # the read, then the activation
    assert await _names(app, directory.id) == ["dsync.activated"]

    jobs.update(query=0, lookup=0, transaction=0)
    assert (await client.get(f"{directory.path}/Users", headers=directory.headers)).status_code == 200
    assert (await client.post(f"{directory.path}/Users/.search", json={}, headers=directory.headers)).status_code == 200
    filtered = await client.get(f'{directory.path}/Users?filter=userName eq "a@x.test"', headers=directory.headers)
    assert filtered.status_code == 200
    assert jobs == {"query": 2, "lookup": 1, "transaction": 0}


async def test_a_first_write_links_in_its_own_transaction(
    app: Any, client: httpx.AsyncClient, jobs: dict[str, int]
) -> None:
    directory = await make_directory(app.state.database)
    jobs.update(query=0, transaction=0)
    wrong = {**directory.headers, "Authorization": "Bearer dsync_scim_wrong"}
    assert (
        await client.post(f"{directory.path}/Users", json={"userName": "a@x.test"}, headers=wrong)
    ).status_code == 401
    assert await _names(app, directory.id) == []  # a wrong token never links

    created = await client.post(f"{directory.path}/Users", json={"userName": "a@x.test"}, headers=directory.headers)
    assert created.status_code == 201
    assert jobs == {"query": 0, "lookup": 0, "transaction": 2}  # one per request, none for authentication or activation
    assert await _names(app, directory.id) == ["dsync.activated", "dsync.user.created"]


async def test_a_failed_first_write_still_links(app: Any, client: httpx.AsyncClient, jobs: dict[str, int]) -> None:
    directory = await make_directory(app.state.database)
    jobs.update(query=0, transaction=0)
    body = {"userName": "a@x.test"}
    stale = {**directory.headers, "If-Match": 'W/"0"'}
    missing = await client.put(f"{directory.path}/Users/directory_user_nope", json=body, headers=stale)
    assert missing.status_code == 404
    assert jobs == {"query": 0, "lookup": 0, "transaction": 2}  # the write rolled back, so the activation ran alone
    assert await _names(app, directory.id) == ["dsync.activated"]
    assert (await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)).status_code == 201
    assert await _names(app, directory.id) == ["dsync.activated", "dsync.user.created"]


async def test_reads_by_index_see_a_rotation_or_deletion_at_the_next_request(
    app: Any, client: httpx.AsyncClient, jobs: dict[str, int]
) -> None:
    """A GET by id or by ``userName eq`` authenticates with the row its own statement reads: nothing is cached, so a
    rotated token fails (and the new one works) from the very next request, and a deleted directory answers 401."""
    database: Database = app.state.database
    directory = await make_directory(database)
    created = await client.post(f"{directory.path}/Users", json={"userName": "a@x.test"}, headers=directory.headers)
    by_id = f"{directory.path}/Users/{created.json()['id']}"
    by_name = f'{directory.path}/Users?filter=userName eq "A@x.test"'
    missing = f"{directory.path}/Users/directory_user_nope"
    assert (await client.get(by_id, headers=directory.headers)).status_code == 200
    found = await client.get(by_name, headers=directory.headers)
    assert found.status_code == 200 and found.json()["totalResults"] == 1
    jobs.update(query=0, lookup=0, transaction=0)

    def rotate(session: Session) -> str:
        issued = directories.rotate_directory_token(session, directory_id=directory.id, public_url=PUBLIC_URL)
        return issued.bearer_token

    token = await database.transaction(rotate)
    fresh = {**directory.headers, "Authorization": f"Bearer {token}"}
    for url in (by_id, by_name, missing):  # 401 before 404: a wrong token learns nothing of what exists
        assert (await client.get(url, headers=directory.headers)).status_code == 401
    assert (await client.get(by_id, headers=fresh)).status_code == 200
    assert (await client.get(by_name, headers=fresh)).json()["Resources"][0]["userName"] == "a@x.test"
    assert (await client.get(missing, headers=fresh)).status_code == 404
    assert jobs["lookup"] == 6 and jobs["query"] == 0  # each one read, authentication included

    await database.transaction(lambda session: directories.delete_directory(session, directory_id=directory.id))
    for url in (by_id, by_name, missing):
        assert (await client.get(url, headers=fresh)).status_code == 401


class _Locked:
    """A SQLite connection whose database another process holds locked."""

    @property
    def dbapi_connection(self) -> Any:
        return self

    def execute(self, *_args: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # SQLite's lookups only: no skipped variant
async def test_a_lookup_that_meets_a_lock_reads_again_on_a_thread(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's lookups run on the event loop and never wait there for a lock: they read again on a reader thread."""
    database: Database = app.state.database
    assert database.is_sqlite
    directory = await make_directory(database)
    created = await client.post(f"{directory.path}/Users", json={"userName": "a@x.test"}, headers=directory.headers)
    monkeypatch.setattr(database, "_lookups", _Locked())
    read = await client.get(f"{directory.path}/Users/{created.json()['id']}", headers=directory.headers)
    assert read.status_code == 200 and read.json()["userName"] == "a@x.test"
    monkeypatch.undo()  # the real connection back, closed at shutdown


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # SQLite's light writes only
async def test_a_light_write_that_meets_another_writer_runs_again_on_the_thread(
    app: Any, client: httpx.AsyncClient
) -> None:
    """Light write batches run on the event loop and never wait there for a lock: while another process holds
    SQLite's write lock, the event loop keeps answering, and the write commits on the writer thread once the lock is
    released."""
    database: Database = app.state.database
    directory = await make_directory(database)
    path = make_url(database.settings.database_url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    try:
        body = {"userName": "a@x.test"}
        post = asyncio.ensure_future(client.post(f"{directory.path}/Users", json=body, headers=directory.headers))
        lag = 0.0  # the longest the event loop was kept from a 10 ms timer while the lock was held
        for _ in range(100):
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, time.perf_counter() - started - 0.01)
        assert not post.done() and lag < 0.5
    finally:
        other.execute("COMMIT")
        other.close()
    created = await post
    assert created.status_code == 201
    assert await _names(app, directory.id) == ["dsync.activated", "dsync.user.created"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # SQLite's light writes only
async def test_light_jobs_through_the_driver_and_the_session_commit_as_one(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's light batches are begun and committed through the driver (``grouped_writer.InlineSessions``): a job
    that writes through its session joins that transaction, and one that raises leaves the others to commit."""
    database: Database = app.state.database
    direct: list[int] = []
    original = grouped_writer._run_direct

    def counting(connection: Any, jobs: list[Any]) -> Any:
        direct.append(len(jobs))
        return original(connection, jobs)

    monkeypatch.setattr(grouped_writer, "_run_direct", counting)

    def create(name: str) -> Callable[[Session], str]:
        return lambda session: organizations.create_organization(session, name=name).id

    def fail(_session: Session) -> None:
        raise RuntimeError("this job fails alone")

    results = await asyncio.gather(
        database.transaction(create("Alpha"), light=True),
        database.transaction(fail, light=True),
        database.transaction(create("Gamma"), light=True),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    assert direct[0] == 3  # the three together, through the driver (then again with savepoints)
    names = await database.query(lambda s: sorted(s.scalars(select(col(Organization.name)))))
    assert names == ["Alpha", "Gamma"]
    both = await database.transaction(create("Delta"), light=True)
    assert both.startswith("org_")
    assert await database.query(lambda s: s.scalar(select(func.count()).select_from(Organization))) == 3
