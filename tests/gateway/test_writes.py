"""Grouped commits: concurrent SCIM writes share transactions, yet each gets its own outcome and nothing is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events import log
from gateway.settings import Settings
from gateway.store import grouped_writer
from gateway.store.database import Database
from gateway.store.models import DirectoryUser, Event, GroupMembership
from tests.conftest import DirectoryFixture, recorded_events


async def test_concurrent_creates_with_conflicts(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    # 60 concurrent POSTs, 20 of them colliding on userName (case-insensitively) with another request.
    names = [f"user{i}@acme.test" for i in range(40)] + [f"USER{i}@acme.test" for i in range(20)]

    async def post(name: str) -> httpx.Response:
        return await client.post(f"{directory.path}/Users", json={"userName": name}, headers=directory.headers)

    responses = await asyncio.gather(*(post(n) for n in names))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 40 + [409] * 20
    assert all(r.json().get("scimType") == "uniqueness" for r in responses if r.status_code == 409)
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    async with app.state.database.read() as session:
        stored = set(await session.scalars(select(col(DirectoryUser.id))))
        events = list(await session.execute(select(col(Event.event), col(Event.data)).order_by(col(Event.cursor))))
    assert stored == created
    created_events = [d["id"] for e, d in events if e == "dsync.user.created"]
    assert len(created_events) == 40 and set(created_events) == created


async def test_events_of_awkward_values_are_recorded_as_sent(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL a batch's new users, kept updates and events go in its COMMIT's round trip, their values inlined
    # as constants: quotes, backslashes, dollar quotes and non-ASCII text must come back exactly as sent.
    inlined: list[str] = []
    commit = grouped_writer.commit_kept

    def spying(session: Session, connection: Any, **how: Any) -> None:
        if how.get("before") is not None:
            inlined.append(how["before"])
        commit(session, connection, **how)

    monkeypatch.setattr(grouped_writer, "commit_kept", spying)
    awkward = ["O'Brien", "it''s", "back\\slash\\", "$$dollar$$", "'); DROP TABLE events; --", "Zoë 山田 \u2028", "\\'"]

    async def post(i: int, family: str) -> httpx.Response:
        body = {"userName": f"awkward{i}@acme.test", "name": {"familyName": family}, "displayName": family}
        return await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)

    assert (await post(-1, "first")).status_code == 201  # (the first request links the directory, in its own way)
    responses = await asyncio.gather(*(post(i, family) for i, family in enumerate(awkward)))
    assert [r.status_code for r in responses] == [201] * len(awkward)
    created = {r.json()["id"]: family for r, family in zip(responses, awkward, strict=True)}
    recorded = {data["id"]: data for name, data in await recorded_events(app.state.database, directory.id)}
    assert {user_id: recorded[user_id]["last_name"] for user_id in created} == created
    assert {user_id: recorded[user_id]["display_name"] for user_id in created} == created

    async def stored(user_id: str) -> dict[str, Any]:
        user: dict[str, Any] = (await client.get(f"{directory.path}/Users/{user_id}", headers=directory.headers)).json()
        return user

    read = {user_id: await stored(user_id) for user_id in created}
    assert {user_id: user["name"]["familyName"] for user_id, user in read.items()} == created

    async def put(user_id: str, family: str) -> httpx.Response:
        body = {**read[user_id], "title": family + "\\'$1", "externalId": f"ext-{family}"}
        return await client.put(f"{directory.path}/Users/{user_id}", json=body, headers=directory.headers)

    responses = await asyncio.gather(*(put(user_id, family) for user_id, family in created.items()))
    assert [r.status_code for r in responses] == [200] * len(awkward)
    read = {user_id: await stored(user_id) for user_id in created}
    assert {user_id: (u["title"], u["externalId"]) for user_id, u in read.items()} == {
        user_id: (family + "\\'$1", f"ext-{family}") for user_id, family in created.items()
    }
    events = await recorded_events(app.state.database, directory.id)
    updated = [data for name, data in events if name == "dsync.user.updated"]
    assert {data["id"]: data["job_title"] for data in updated} == {
        user_id: family + "\\'$1" for user_id, family in created.items()
    }
    if app.state.database.dialect == "postgresql":  # (the paths under test were taken)
        assert any("INSERT INTO directory_users" in query for query in inlined)
        assert any("UPDATE directory_users" in query for query in inlined)


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_commit_refused_with_its_events_runs_the_batch_again(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The events' statement sent with the COMMIT fails once (the server answers, the connection stays): nothing of the
    # batch committed, so its jobs run again and every request gets its own answer, each event recorded once.
    assert (
        await client.post(f"{directory.path}/Users", json={"userName": "first@acme.test"}, headers=directory.headers)
    ).status_code == 201
    inlined = log._in_commit_order_inlined
    refused: list[int] = []

    def failing_once(rows: list[dict[str, Any]]) -> str:
        if refused:
            return inlined(rows)
        refused.append(len(rows))
        return "SELECT 1 / 0"

    monkeypatch.setattr(log, "_in_commit_order_inlined", failing_once)
    names = [f"again{i}@acme.test" for i in range(6)]
    responses = await asyncio.gather(
        *(client.post(f"{directory.path}/Users", json={"userName": name}, headers=directory.headers) for name in names)
    )
    assert refused and [r.status_code for r in responses] == [201] * len(names)
    created = sorted(r.json()["id"] for r in responses)
    events = [data["id"] for name, data in await recorded_events(app.state.database, directory.id)]
    assert sorted(event for event in events if event in created) == created  # each once
    listed = await client.get(f"{directory.path}/Users", params={"count": 50}, headers=directory.headers)
    assert listed.json()["totalResults"] == len(names) + 1


async def test_concurrent_member_adds_to_one_group(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    users = [
        (
            await client.post(f"{directory.path}/Users", json={"userName": f"m{i}@x.test"}, headers=directory.headers)
        ).json()["id"]
        for i in range(50)
    ]
    group = (
        await client.post(f"{directory.path}/Groups", json={"displayName": "All"}, headers=directory.headers)
    ).json()["id"]

    async def add(user_id: str) -> int:
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
        }
        response = await client.patch(f"{directory.path}/Groups/{group}", json=body, headers=directory.headers)
        return response.status_code

    # Every user added twice, concurrently: 50 edges, 50 events, no duplicate and no error.
    assert set(await asyncio.gather(*(add(u) for u in users + users))) == {204}
    async with app.state.database.read() as session:
        edges = await session.scalar(select(func.count()).select_from(GroupMembership))
        added = await session.scalar(
            select(func.count()).select_from(Event).where(col(Event.event) == "dsync.group.user_added")
        )
    assert edges == 50 and added == 50
    listed = (await client.get(f"{directory.path}/Groups/{group}", headers=directory.headers)).json()
    assert sorted(m["value"] for m in listed["members"]) == sorted(users)


async def test_a_write_after_the_store_is_closed_fails_at_once(settings: Settings) -> None:
    database = Database(settings)
    await database.dispose()

    def must_not_run(session: Session) -> None:
        raise AssertionError("a write job ran after the store was closed")

    for light in (False, True):
        with pytest.raises(RuntimeError, match="shutting down"):
            await database.transaction(must_not_run, light=light)
