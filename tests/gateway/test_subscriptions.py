"""Subscriptions end to end: a real uvicorn on 127.0.0.1, a gql WebSocket client (graphql-transport-ws), SCIM
writes over HTTP; events arrive in order, and a resumed subscription misses and repeats nothing."""

from __future__ import annotations

import asyncio
from random import Random
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy import select
from sqlmodel import col

from gateway.ops import api_keys
from gateway.store.models import Event
from tests.conftest import make_directory, recorded_events

pytestmark = pytest.mark.slow

SUBSCRIBE = """subscription($dir: ID, $after: String) {
  directoryEvents(directoryId: $dir, after: $after) { cursor event user { id } }
}"""


def _transport(port: int, key: str | None) -> WebsocketsTransport:
    payload = {"Authorization": f"Bearer {key}"} if key else {}
    return WebsocketsTransport(
        url=f"ws://127.0.0.1:{port}/graphql", init_payload=payload, subprotocols=["graphql-transport-ws"]
    )


async def _collect(port: int, key: str, variables: dict[str, Any], count: int) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    async with Client(transport=_transport(port, key)) as session:
        async for result in session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values=variables)):
            received.append(result["directoryEvents"])
            if len(received) == count:
                break
    return received


async def test_events_arrive_in_order_and_resume_without_gaps(live: dict[str, Any]) -> None:
    directory, port, key = live["directory"], live["port"], live["key"]
    # Everything so far (dsync.activated comes with the first SCIM request below) and 12 more live events.
    listener = asyncio.create_task(_collect(port, key, {"dir": directory.id, "after": "0"}, 13))
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        ids = []
        for i in range(10):
            response = await http.post(
                f"{directory.path}/Users", json={"userName": f"live{i}@acme.test"}, headers=directory.headers
            )
            ids.append(response.json()["id"])
        group = await http.post(
            f"{directory.path}/Groups",
            json={"displayName": "Live", "members": [{"value": ids[0]}]},
            headers=directory.headers,
        )
        assert group.status_code == 201
    received = await asyncio.wait_for(listener, timeout=15)
    log = await recorded_events(live["database"], directory.id)
    assert [e["event"] for e in received] == [name for name, _ in log][:13]
    cursors = [int(e["cursor"]) for e in received]
    assert cursors == sorted(cursors) and len(set(cursors)) == 13
    # Resume after the 5th event: the 8 that followed, nothing repeated, nothing missing.
    resumed = await asyncio.wait_for(
        _collect(port, key, {"dir": directory.id, "after": received[4]["cursor"]}, 8), timeout=15
    )
    assert [e["cursor"] for e in resumed] == [e["cursor"] for e in received[5:13]]


async def test_connections_need_a_key_and_see_only_their_organization(live: dict[str, Any]) -> None:
    port, directory = live["port"], live["directory"]
    with pytest.raises(Exception):  # noqa: B017  (the server closes the socket: 4403 Forbidden)
        await asyncio.wait_for(_collect(port, "dsync_key_wrong", {"dir": directory.id}, 1), timeout=10)
    other = await make_directory(live["database"], name="Other")
    other_key = (
        await live["database"].transaction(lambda s: api_keys.create_api_key(s, organization_id=other.organization_id))
    ).key
    with pytest.raises(Exception, match="not found"):
        await asyncio.wait_for(_collect(port, other_key, {"dir": directory.id}, 1), timeout=10)


async def test_resuming_repeatedly_during_concurrent_writes_misses_and_repeats_nothing(live: dict[str, Any]) -> None:
    """Thousands of events from concurrent SCIM writers while a client keeps dropping its connection after a few
    hundred events and resuming from the last cursor it saw: it ends with exactly the log, in order."""
    directory, port, key = live["directory"], live["port"], live["key"]
    writers, per_writer = 4, 500

    async def write(writer: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=directory.headers) as http:
            for i in range(per_writer):
                body = {"userName": f"w{writer}-{i}@acme.test", "active": True}
                response = await http.post(f"{directory.path}/Users", json=body)
                assert response.status_code == 201, response.text

    writing = asyncio.gather(*(write(w) for w in range(writers)))
    received: list[dict[str, Any]] = []
    sessions = 0
    random = Random(5)
    expected = writers * per_writer + 1  # + dsync.activated
    async with asyncio.timeout(120):
        while len(received) < expected:
            after = received[-1]["cursor"] if received else "0"
            want = min(random.randint(50, 400), expected - len(received))
            received.extend(await _collect(port, key, {"dir": directory.id, "after": after}, want))
            sessions += 1
        await writing
    log = await recorded_events(live["database"], directory.id)
    assert len(log) == expected and sessions >= 5
    cursors = [int(e["cursor"]) for e in received]
    assert cursors == sorted(set(cursors))  # in order, no repeat
    assert [e["event"] for e in received] == [name for name, _ in log]
    async with live["database"].read() as session:
        from_log = await session.scalars(
            select(col(Event.cursor)).where(col(Event.directory_id) == directory.id).order_by(col(Event.cursor))
        )
        assert cursors == list(from_log)  # nothing missing


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"after": "999999"}, "unknown cursor"),
        ({"after": "abc"}, "invalid cursor"),
        ({"after": "²"}, "invalid cursor"),
        ({"events": ["dsync.user.craeted"]}, "unknown event name"),
        ({"dir": "directory_\u0000"}, "not found"),  # PostgreSQL text cannot hold NUL: answered like any unknown id
    ],
)
async def test_bad_cursors_and_event_names_are_refused_clearly(
    live: dict[str, Any], variables: dict[str, Any], message: str
) -> None:
    query = """subscription($dir: ID, $after: String, $events: [String!]) {
      directoryEvents(directoryId: $dir, after: $after, events: $events) { cursor }
    }"""
    async with Client(transport=_transport(live["port"], live["key"])) as session:
        with pytest.raises(Exception, match=message):
            request = GraphQLRequest(query, variable_values={"dir": live["directory"].id, **variables})
            async for _ in session.subscribe(request):
                pass
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live['port']}") as http:
        if "events" in variables:  # the events query refuses the same names
            answer = await http.post(
                "/graphql",
                json={"query": 'query { events(events: ["dsync.user.craeted"]) { totalCount } }'},
                headers={"Authorization": f"Bearer {live['key']}"},
            )
            assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
