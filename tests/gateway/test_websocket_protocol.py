"""graphql-transport-ws hygiene on a real uvicorn, with a raw WebSocket client so every frame is visible:
connection-init timeout, allowed origins (and CORS over HTTP), server pings, the per-connection subscription cap,
clean unsubscribe, and revoked keys closing open connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.ops import api_keys
from gateway.settings import Settings
from tests.gateway.conftest import live_server
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

SUBSCRIBE = "subscription($dir: ID) { directoryEvents(directoryId: $dir) { cursor event } }"


@asynccontextmanager
async def connect(port: int, *, origin: str | None = None) -> AsyncIterator[ClientConnection]:
    headers = {"Origin": origin} if origin else None
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers=headers,
        ping_interval=None,  # only the application-level pings under test
    ) as ws:
        yield ws


async def init(ws: ClientConnection, key: str) -> None:
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"


async def subscribe(ws: ClientConnection, operation_id: str, directory_id: str) -> None:
    payload = {"query": SUBSCRIBE, "variables": {"dir": directory_id}}
    await ws.send(json.dumps({"type": "subscribe", "id": operation_id, "payload": payload}))


async def closed_with(ws: ClientConnection, *, answer_pings: bool = False) -> tuple[int | None, str]:
    """Read until the server closes the socket; the close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await ws.recv())
                if answer_pings and message["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
    return closed.value.rcvd.code if closed.value.rcvd else None, closed.value.rcvd.reason if closed.value.rcvd else ""


async def test_a_connection_that_never_initialises_is_closed(settings: Settings) -> None:
    async with live_server(settings, ws_init_timeout_seconds=0.5) as live, connect(live["port"]) as ws:
        code, reason = await closed_with(ws)
        assert code == 4408 and "timeout" in reason.lower()


async def test_only_allowed_browser_origins_may_connect(settings: Settings) -> None:
    async with live_server(settings, allowed_origins=("https://dash.acme.test",)) as live:
        port, key = live["port"], live["key"]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(port, origin="https://evil.test"):
                pass
        assert refused.value.response.status_code == 403
        for origin in ("https://dash.acme.test", f"http://127.0.0.1:{port}", None):  # allowed, same origin, no browser
            async with connect(port, origin=origin) as ws:
                await init(ws, key)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
            allowed = await http.options("/graphql", headers={"Origin": "https://dash.acme.test", **preflight})
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://dash.acme.test"
            denied = await http.options("/graphql", headers={"Origin": "https://evil.test", **preflight})
            assert "access-control-allow-origin" not in denied.headers
            scim = await http.options(f"{live['directory'].path}/Users", headers={"Origin": "https://dash.acme.test"})
            assert "access-control-allow-origin" not in scim.headers  # SCIM is server-to-server


async def test_the_server_pings_and_closes_peers_that_do_not_answer(settings: Settings) -> None:
    async with live_server(settings, ws_ping_seconds=0.3) as live:
        async with connect(live["port"]) as ws:
            await init(ws, live["key"])
            code, reason = await closed_with(ws)
            assert code == 4499 and "pong" in reason
        async with connect(live["port"]) as ws:  # a peer that answers stays connected through many pings
            await init(ws, live["key"])
            pings = 0
            async with asyncio.timeout(5):
                while pings < 5:
                    if json.loads(await ws.recv())["type"] == "ping":
                        pings += 1
                        await ws.send(json.dumps({"type": "pong"}))
            await ws.send(json.dumps({"type": "ping"}))  # and the client may ping the server
            assert json.loads(await ws.recv())["type"] in ("pong", "ping")


async def test_subscriptions_per_connection_are_capped(settings: Settings) -> None:
    async with live_server(settings, ws_max_subscriptions=2) as live, connect(live["port"]) as ws:
        await init(ws, live["key"])
        for operation_id in ("1", "2", "3"):
            await subscribe(ws, operation_id, live["directory"].id)
        message = json.loads(await ws.recv())
        assert message["id"] == "3" and message["type"] == "error"
        assert "limit" in message["payload"][0]["message"].lower()
        await eventually(lambda: live["app"].state.hub.subscriber_count == 2)


async def test_unsubscribing_and_disconnecting_leave_nothing_behind(settings: Settings) -> None:
    async with live_server(settings) as live:
        hub = live["app"].state.hub
        baseline = len(asyncio.all_tasks())
        async with connect(live["port"]) as ws:
            await init(ws, live["key"])
            for operation_id in ("a", "b", "c"):
                await subscribe(ws, operation_id, live["directory"].id)
            await eventually(lambda: hub.subscriber_count == 3)
            await ws.send(json.dumps({"type": "complete", "id": "b"}))
            await eventually(lambda: hub.subscriber_count == 2)
        await eventually(lambda: hub.subscriber_count == 0)  # closed with two still running
        await eventually(lambda: len(asyncio.all_tasks()) <= baseline)
        assert not hub._key_watchers


async def _organization_key(database: Any, organization_id: str) -> tuple[str, str]:
    issued = await database.transaction(lambda s: api_keys.create_api_key(s, organization_id=organization_id))
    return issued.api_key.id, issued.key


async def test_revoking_a_key_closes_its_open_connections(settings: Settings) -> None:
    async with live_server(settings, ws_ping_seconds=0.5) as live:
        port, database, directory = live["port"], live["database"], live["directory"]
        key_id, key = await _organization_key(database, directory.organization_id)
        other_id, other = await _organization_key(database, directory.organization_id)
        async with connect(port) as ws, connect(port) as bystander:
            await init(ws, key)
            await init(bystander, other)
            await subscribe(ws, "1", directory.id)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                revoked = await http.post(
                    "/graphql",
                    json={"query": f'mutation {{ revokeApiKey(id: "{key_id}") {{ id revokedAt }} }}'},
                    headers={"Authorization": f"Bearer {live['key']}"},
                )
                assert revoked.json()["data"]["revokeApiKey"]["revokedAt"]
            async with asyncio.timeout(0.4):  # at once, before the next keepalive tick
                code, _ = await closed_with(ws, answer_pings=True)
            assert code == 4403
            # Revoked elsewhere (the CLI, another instance without a broadcaster): the next tick notices.
            await database.transaction(lambda s: api_keys.revoke_api_key(s, api_key_id=other_id))
            code, _ = await closed_with(bystander, answer_pings=True)
            assert code == 4403
