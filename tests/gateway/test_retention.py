"""Event log retention (gateway.events.retention): expired events are pruned in batches, the newest is always kept,
a resume cursor below what was kept answers CURSOR_EXPIRED (events query and subscriptions), and one event stores at
most MAX_EVENT_BYTES."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from gateway.events import retention
from gateway.events.filter import EventFilter
from gateway.events.hub import CursorExpired
from gateway.events.payloads import MAX_EVENT_BYTES
from gateway.graphql.pagination import encode_cursor
from gateway.ops import api_keys
from gateway.store.models import Event, utcnow
from gateway.store.serialization import dumps_bytes
from tests.conftest import DirectoryFixture, recorded_events
from tests.gateway.conftest import live_server
from tests.gateway.test_websocket_protocol import connect, init

EVENTS = "query($after: String) { events(first: 100, after: $after) { edges { cursor node { cursor event } } } }"


async def _users(client: httpx.AsyncClient, directory: DirectoryFixture, count: int) -> None:
    for i in range(count):
        body = {"userName": f"u{i}@acme.test", "name": {"givenName": "U", "familyName": str(i)}}
        response = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
        assert response.status_code == 201


async def _age_all_events(database: Any, days: int) -> list[int]:
    old = utcnow() - timedelta(days=days)

    def age(session: Any) -> list[int]:
        session.execute(update(Event).values(created_at=old))
        return sorted(int(e.cursor) for e in session.query(Event))

    cursors: list[int] = await database.transaction(age)
    return cursors


async def test_prune_keeps_the_newest_and_expires_old_cursors(
    client: httpx.AsyncClient, app: Any, directory: DirectoryFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = app.state.database
    await _users(client, directory, 6)
    cursors = await _age_all_events(database, 31)
    monkeypatch.setattr(retention, "BATCH", 2)  # several batches
    assert await retention.prune_expired(database, retention_days=30) == len(cursors) - 1
    kept = await _age_all_events(database, 0)
    assert kept == [cursors[-1]]  # the newest stays: it holds the head
    assert await retention.prune_expired(database, retention_days=30) == 0

    key = (await database.transaction(lambda s: api_keys.create_api_key(s, organization_id=None))).key
    headers = {"Authorization": f"Bearer {key}"}

    async def events_after(cursor: int) -> Any:
        variables = {"after": encode_cursor(cursor)}
        return (await client.post("/graphql", json={"query": EVENTS, "variables": variables}, headers=headers)).json()

    expired = await events_after(cursors[0])
    assert expired["data"] is None
    assert expired["errors"][0]["extensions"] == {"code": "CURSOR_EXPIRED", "oldestCursor": str(cursors[-1])}
    assert "re-read the directory" in expired["errors"][0]["message"]
    for fine in (cursors[-2], cursors[-1], 0):  # right below the oldest kept, the newest, from the start
        assert "errors" not in await events_after(fine)

    # The hub's stream raises the typed error; the subscription maps it.
    stream = app.state.hub.stream(EventFilter(organization_id=None, directory_id=None, names=None), after=cursors[0])
    with pytest.raises(CursorExpired):
        await anext(stream)
    await stream.aclose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_subscription_resuming_below_the_log_is_told_to_reread(settings: Any) -> None:
    async with live_server(settings) as live:
        directory = live["directory"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live['port']}") as http:
            await _users(http, directory, 3)
        cursors = await _age_all_events(live["database"], 40)
        await retention.prune_expired(live["database"], retention_days=30)
        async with connect(live["port"]) as ws:
            await init(ws, live["key"])
            query = "subscription($after: String) { directoryEvents(after: $after) { cursor } }"
            payload = {"query": query, "variables": {"after": str(cursors[0])}}
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
            message = json.loads(await ws.recv())
            assert message["type"] == "next"
            assert message["payload"]["errors"][0]["extensions"]["code"] == "CURSOR_EXPIRED"


async def test_one_event_stores_at_most_max_event_bytes(
    client: httpx.AsyncClient, app: Any, directory: DirectoryFixture
) -> None:
    big = "x" * (MAX_EVENT_BYTES + 1000)
    body = {"userName": "big@acme.test", "name": {"givenName": "Big", "familyName": "One"}, "title": "Engineer"}
    user = (await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)).json()
    url = f"{directory.path}/Users/{user['id']}"
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "title", "value": "Staff"},
            {"op": "add", "path": "nickName", "value": big},
        ],
    }
    assert (await client.patch(url, json=patch, headers=directory.headers)).status_code == 200
    log = await recorded_events(app.state.database, directory.id)
    name, data = log[-1]
    assert name == "dsync.user.updated" and len(dumps_bytes(data)) <= MAX_EVENT_BYTES
    # What consumers need stays: the typed fields and their previous values; the raw body is left out.
    assert data["job_title"] == "Staff" and data["previous_attributes"]["job_title"] == "Engineer"
    assert data["raw_attributes"] == {} and "raw_attributes" not in data["previous_attributes"]
    # A small update keeps its raw attributes, as before.
    created = log[0][1] if log[0][0] == "dsync.user.created" else log[1][1]
    assert created["raw_attributes"]["title"] == "Engineer"
