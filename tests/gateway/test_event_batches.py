"""``directoryEventBatches``: events committed together reach a level subscriber in one message, split at
``maxBatch``, in order, and a bad ``maxBatch`` is refused."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from tests.gateway.conftest import live_server
from tests.gateway.test_websocket_protocol import connect, init

pytestmark = pytest.mark.slow

BATCHES = "subscription($d: ID, $m: Int!) { directoryEventBatches(directoryId: $d, maxBatch: $m) { cursor event } }"


async def _next(ws: Any) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        return dict(message)


async def test_events_committed_together_arrive_together(settings: Settings) -> None:
    async with live_server(settings) as live:
        port, directory = live["port"], live["directory"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=directory.headers) as http:
            members = []
            for i in range(4):
                created = await http.post(f"{directory.path}/Users", json={"userName": f"b{i}@acme.test"})
                members.append({"value": created.json()["id"]})
            async with connect(port) as ws:
                await init(ws, live["key"])
                payload = {"query": BATCHES, "variables": {"d": directory.id, "m": 3}}
                await ws.send(json.dumps({"type": "subscribe", "id": "b", "payload": payload}))
                await asyncio.sleep(0.5)  # level with the log: live events from here
                # One transaction: dsync.group.created and four dsync.group.user_added.
                group = await http.post(f"{directory.path}/Groups", json={"displayName": "G", "members": members})
                assert group.status_code == 201
                batches: list[list[dict[str, Any]]] = []
                while sum(len(batch) for batch in batches) < 5:
                    message = await _next(ws)
                    assert message["type"] == "next" and message["id"] == "b", message
                    batches.append(message["payload"]["data"]["directoryEventBatches"])
        assert [len(batch) for batch in batches] == [3, 2]
        events = [item["event"] for batch in batches for item in batch]
        assert events == ["dsync.group.created"] + ["dsync.group.user_added"] * 4
        cursors = [int(item["cursor"]) for batch in batches for item in batch]
        assert cursors == sorted(cursors) and len(set(cursors)) == 5


async def test_max_batch_out_of_range_is_refused(settings: Settings) -> None:
    async with live_server(settings) as live, connect(live["port"]) as ws:
        await init(ws, live["key"])
        payload = {"query": BATCHES, "variables": {"d": live["directory"].id, "m": 0}}
        await ws.send(json.dumps({"type": "subscribe", "id": "b", "payload": payload}))
        message = await _next(ws)
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
