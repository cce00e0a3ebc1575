"""Each SCIM request is one database job: authentication, the rate limit and activation ride along with it.

Activation is the one extra transaction, and only when a directory's first authorized request could not link it
itself (a read, or a write that failed); a write links it in its own transaction, so ``dsync.activated`` comes
before that write's events."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from gateway.store.database import Database
from tests.conftest import make_directory, recorded_events


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

        async def counted(job: Any) -> Any:
            counts[name] += 1
            return await run(job)

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
