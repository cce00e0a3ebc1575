"""A noisy GraphQL neighbour: tenant A sends the most expensive query its budget allows, over HTTP and over the
WebSocket, as fast as its key's rate limit lets it, plus over-budget queries (refused before they run); tenant B's
GraphQL and SCIM requests keep answering, promptly, on a real uvicorn (SQLite and PostgreSQL). Before issue #13 a
1.7 KB query ran ~56,000 statements and B's SCIM GET waited 15-25 s; bench/noisy_graphql.py measures the ratio."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest

from gateway.ops import api_keys
from gateway.settings import Settings
from tests.conftest import DirectoryFixture, make_directory
from tests.gateway.conftest import live_server
from tests.gateway.test_websocket_protocol import connect, init

pytestmark = pytest.mark.slow

# Cost 1 + 1 + 100 × 9 × 2 = 1,802: within the default budget of 2,000 (gateway.graphql.cost).
WORST = (
    "query($id: ID!) { directory(id: $id) { groups(first: 100) { edges { node { "
    + " ".join(f"m{i}: members(first: 100) {{ totalCount edges {{ node {{ id userName }} }} }}" for i in range(9))
    + " } } } } }"
)
TOO_COSTLY = WORST.replace(
    "groups(first: 100) { edges { node { ", "users(first: 100) { edges { node { groups { "
).replace(" } } } } }", " } } } } } }")
B_GRAPHQL = "query($id: ID!) { directory(id: $id) { userCount users(first: 20) { edges { node { id email } } } } }"
LOAD_SECONDS = 4.0


async def _seed(http: httpx.AsyncClient, directory: DirectoryFixture, users: int, groups: int) -> None:
    ids: list[str] = []
    for i in range(users):
        body = {"userName": f"u{i}@{directory.id[-6:].lower()}.test", "name": {"givenName": "U", "familyName": str(i)}}
        response = await http.post(f"{directory.path}/Users", json=body, headers=directory.headers)
        ids.append(str(response.json()["id"]))
    for g in range(groups):
        group = {"displayName": f"G{g}", "members": [{"value": user_id} for user_id in ids]}
        assert (await http.post(f"{directory.path}/Groups", json=group, headers=directory.headers)).status_code == 201


async def _graphql(http: httpx.AsyncClient, key: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


async def test_tenant_b_keeps_working_under_tenant_a_worst_allowed_graphql(settings: Settings) -> None:
    overrides = {"graphql_rate_limit": Settings.graphql_rate_limit, "graphql_rate_burst": Settings.graphql_rate_burst}
    async with live_server(settings, **overrides) as live:
        database, port = live["database"], live["port"]
        a, b = live["directory"], await make_directory(database, name="Tenant B")
        key_a, key_b = [
            (await database.transaction(lambda s, o=o: api_keys.create_api_key(s, organization_id=o))).key
            for o in (a.organization_id, b.organization_id)
        ]
        base = f"http://127.0.0.1:{port}"
        async with (
            httpx.AsyncClient(base_url=base, timeout=60) as http,
            httpx.AsyncClient(base_url=base, timeout=60) as http_b,
        ):
            await _seed(http, a, users=40, groups=20)  # replies stay under the client's 1 MiB frames
            await _seed(http, b, users=20, groups=2)
            answers: dict[str, int] = {}
            stop = asyncio.Event()

            def count(body: dict[str, Any]) -> None:
                for code in _codes(body) or ["OK"]:
                    answers[code] = answers.get(code, 0) + 1

            async def a_over_http(query: str) -> None:
                while not stop.is_set():
                    count(await _graphql(http, key_a, query, {"id": a.id}))

            async def a_over_websocket() -> None:
                async with connect(port) as ws:
                    await init(ws, key_a)
                    n = 0
                    while not stop.is_set():
                        n += 1
                        payload = {"query": WORST, "variables": {"id": a.id}}
                        await ws.send(json.dumps({"type": "subscribe", "id": str(n), "payload": payload}))
                        while True:
                            message = json.loads(await ws.recv())
                            if message["type"] == "next":
                                count(message["payload"])
                            elif message["type"] == "error":
                                count({"errors": message["payload"]})
                            if message["type"] in ("complete", "error"):
                                break

            async def b_requests() -> list[float]:
                latencies = []
                while not stop.is_set():
                    started = time.perf_counter()
                    scim = await http_b.get(f"{b.path}/Users?count=20", headers=b.headers)
                    assert scim.status_code == 200 and scim.json()["totalResults"] == 20
                    body = await _graphql(http_b, key_b, B_GRAPHQL, {"id": b.id})
                    assert "errors" not in body and body["data"]["directory"]["userCount"] == 20, body
                    latencies.append(time.perf_counter() - started)
                    # A well-behaved client: within its key's own rate limit (not what this test is about), which a
                    # fast enough loop would otherwise exhaust after its burst.
                    await asyncio.sleep(max(0.0, 1.25 / Settings.graphql_rate_limit - latencies[-1]))
                return latencies

            load = [
                asyncio.create_task(a_over_http(WORST)),
                asyncio.create_task(a_over_http(WORST)),
                asyncio.create_task(a_over_http(TOO_COSTLY)),
                asyncio.create_task(a_over_websocket()),
            ]
            b_task = asyncio.create_task(b_requests())
            await asyncio.sleep(LOAD_SECONDS)
            stop.set()
            latencies = await b_task
            for task in load:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(30):
                        await task
    # The worst allowed query ran (on a loaded machine it may also meet the deadline: TIMEOUT, as it should).
    assert answers.get("OK", 0) + answers.get("TIMEOUT", 0) >= 1, answers
    assert answers.get("QUERY_TOO_COSTLY", 0) >= 1, answers
    assert set(answers) <= {"OK", "QUERY_TOO_COSTLY", "RATE_LIMITED", "TIMEOUT"}, answers
    # B was served throughout, never slowly (before: 15-25 s for one SCIM GET). Alone on the 2-core reference
    # machine a round (SCIM GET + GraphQL query) takes at most ~2 s under this load; the bound leaves room for a
    # machine shared with other runs.
    assert latencies and max(latencies) < 10.0, (len(latencies), max(latencies))
