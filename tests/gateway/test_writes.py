"""Grouped commits: concurrent SCIM writes share transactions, yet each gets its own outcome and nothing is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.models import DirectoryUser, Event, GroupMembership
from tests.conftest import DirectoryFixture


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
