"""Subscriptions end to end: a real uvicorn on 127.0.0.1, a gql WebSocket client (graphql-transport-ws), SCIM
writes over HTTP; events arrive in order, and a resumed subscription misses and repeats nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from gateway import admin
from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import make_directory, recorded_events

pytestmark = pytest.mark.slow

SUBSCRIBE = """subscription($dir: ID, $after: String) {
  directoryEvents(directoryId: $dir, after: $after) { cursor event user { id } }
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    port = _free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # up to 10 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    database = app.state.database
    directory = await make_directory(database)
    key = (await database.transaction(lambda s: admin.create_api_key(s, organization_id=None))).key
    try:
        yield {"port": port, "directory": directory, "key": key, "database": database}
    finally:
        server.should_exit = True
        await task


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
        await live["database"].transaction(lambda s: admin.create_api_key(s, organization_id=other.organization_id))
    ).key
    with pytest.raises(Exception, match="not found"):
        await asyncio.wait_for(_collect(port, other_key, {"dir": directory.id}, 1), timeout=10)
