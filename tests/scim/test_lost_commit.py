"""A PostgreSQL write batch whose COMMIT loses its answer with the connection (a network cut, a failover, the server
restarting) is answered by what really happened: if it committed, each request gets its own answer (not a 409 or
404 from running the jobs again on top of their own work); if not, the jobs run again and nothing is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from asyncpg.exceptions import ConnectionDoesNotExistError
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from gateway.store import grouped_writer
from tests.conftest import DirectoryFixture, recorded_events

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def _lose_the_answer(monkeypatch: pytest.MonkeyPatch, *, after_commit: bool) -> list[int]:
    """The next batch's connection is cut as it commits: just after its COMMIT landed, or just before it was sent."""
    cut: list[int] = []
    commit = grouped_writer.commit_kept

    def cutting(session: Session, connection: Connection, **how: Any) -> None:
        if cut:
            commit(session, connection, **how)
            return
        cut.append(1)
        driver: Any = connection.connection.driver_connection
        if after_commit:
            commit(session, connection, **how)
            driver.terminate()
            raise ConnectionDoesNotExistError("connection was closed in the middle of operation")
        driver.terminate()
        commit(session, connection, **how)

    monkeypatch.setattr(grouped_writer, "commit_kept", cutting)
    return cut


def _user(name: str) -> dict[str, Any]:
    return {"userName": name, "emails": [{"value": name, "primary": True}]}


@pytest.mark.parametrize("after_commit", [True, False], ids=["committed", "not-committed"])
async def test_a_commit_whose_answer_is_lost_is_answered_by_what_happened(
    app: Any,
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    monkeypatch: pytest.MonkeyPatch,
    after_commit: bool,
) -> None:
    created = await client.post(f"{directory.path}/Users", json=_user("kept@acme.test"), headers=directory.headers)
    assert created.status_code == 201
    doomed = created.json()["id"]
    before = len(await recorded_events(app.state.database, directory.id))
    cut = _lose_the_answer(monkeypatch, after_commit=after_commit)

    names = [f"user{i}@acme.test" for i in range(4)]
    answers = await asyncio.gather(
        *(client.post(f"{directory.path}/Users", json=_user(name), headers=directory.headers) for name in names),
        client.delete(f"{directory.path}/Users/{doomed}", headers=directory.headers),
    )

    assert cut == [1]
    assert [answer.status_code for answer in answers] == [201, 201, 201, 201, 204], [a.text for a in answers]
    listed = await client.get(f"{directory.path}/Users", headers=directory.headers)
    assert sorted(user["userName"] for user in listed.json()["Resources"]) == names
    events = [(name, data["id"]) for name, data in await recorded_events(app.state.database, directory.id)]
    expected = [("dsync.user.created", answer.json()["id"]) for answer in answers[:4]]
    assert sorted(events[before:]) == sorted([*expected, ("dsync.user.deleted", doomed)])  # each once
    # The writer goes on, on a new connection.
    again = await client.post(f"{directory.path}/Users", json=_user("after@acme.test"), headers=directory.headers)
    assert again.status_code == 201
