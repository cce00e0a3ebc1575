"""Every operation's budget, over HTTP and over graphql-transport-ws alike (gateway.graphql.budget, cost,
execution): its cost is computed before it runs and refused above DSYNC_GRAPHQL_MAX_COST; each API key has a token
bucket; every execution has the deadline; DataLoaders belong to one operation, not to the connection."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from graphql import parse

from gateway.graphql.context import Context
from gateway.graphql.cost import cached_operation_cost, operation_cost
from gateway.graphql.schema import schema
from gateway.settings import Settings
from tests.gateway.conftest import live_server
from tests.gateway.test_websocket_protocol import connect, init

MEMBERS = "members(first: 100) { totalCount }"
# The shape of the query from issue #13 (56,000 statements before): refused before it runs.
TOO_COSTLY = (
    "query($id: ID!) { directory(id: $id) { users(first: 100) { edges { node { groups { "
    + " ".join(f"m{i}: {MEMBERS}" for i in range(28))
    + " } } } } } }"
)
PAGE = "query($id: ID!, $n: Int) { directory(id: $id) { users(first: $n) { edges { node { id groups { id } } } } } }"


def cost(query: str, variables: dict[str, Any] | None = None) -> int:
    return operation_cost(schema._schema, parse(query), operation_name=None, variables=variables)


def test_the_cost_model() -> None:
    assert cost(TOO_COSTLY) == 1 + 1 + 100 * (1 + 10 * 28 * 2)
    # Page sizes: literal, variable, default 20, clamped at 100; plain lists by their assumed size.
    assert cost(PAGE, {"n": 100}) == 1 + 1 + 100 * 1
    assert cost(PAGE, {}) == 1 + 1 + 20 * 1
    assert cost(PAGE.replace("$n: Int", "$n: Int = 5"), {}) == 1 + 1 + 5
    assert cost(PAGE, {"n": 10_000}) == cost(PAGE, {"n": 100})
    assert cost("{ organizations(first: 50) { edges { node { directories { userCount } } } } }") == 1 + 50 * (1 + 10)
    # Plain attributes, pageInfo and __typename are free; totalCount is a statement; fragments count where spread.
    fragment = "fragment U on DirectoryUser { groups { memberCount } } "
    spread = fragment + 'query { directory(id: "x") { users(last: 3) { totalCount edges { node { ...U } } } } }'
    assert cost(spread) == 1 + 1 + 1 + 3 * (1 + 10)
    assert cost('mutation { deleteDirectory(id: "x") { id } }') == 10
    assert cost("subscription { directoryEvents { cursor user { id } } }") == 1


def test_the_cached_cost_is_the_cost() -> None:
    """Computed once per document, operation and page-size values: the same figure for every variable combination."""
    fragment = "fragment U on DirectoryUser { groups { memberCount } } "
    spread = (
        fragment
        + "query Q($k: Int = 7, $c: String) { directory(id: $c) { users(last: $k) { edges { node { ...U } } } } }"
    )
    documents = [parse(PAGE), parse(PAGE.replace("$n: Int", "$n: Int = 5")), parse(spread), parse(TOO_COSTLY)]
    variable_sets: list[dict[str, Any] | None] = [
        None,
        {},
        {"n": 100},
        {"n": 3},
        {"n": 10_000},
        {"n": None},
        {"n": True},
        {"n": "7"},
        {"k": 2, "c": "a"},
        {"k": 2, "c": "b"},
        {"k": None},
        {"id": "x", "n": 4},
    ]
    for _ in range(2):  # the second round answers from the cache
        for document in documents:
            for variables in variable_sets:
                name = "Q" if document.definitions[-1].name is not None else None  # type: ignore[attr-defined]
                expected = operation_cost(schema._schema, document, operation_name=name, variables=variables)
                got = cached_operation_cost(schema._schema, document, operation_name=name, variables=variables)
                assert got == expected, (variables, expected, got)


async def test_budget_and_rate_limit_over_http(client: httpx.AsyncClient, app: Any, directory: Any) -> None:
    settings: Settings = app.state.settings
    key = await _admin_key(app)
    body = await _post(client, key, TOO_COSTLY, {"id": directory.id})
    assert body["data"] is None
    error = body["errors"][0]
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": cost(TOO_COSTLY), "budget": 2000}
    assert settings.graphql_max_cost == 2000
    assert "errors" not in await _post(client, key, PAGE, {"id": directory.id, "n": 100})


SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE
async def test_rate_limit_per_api_key(settings: Settings) -> None:
    async with live_server(settings, graphql_rate_limit=1.0, graphql_rate_burst=3) as live:
        other = await _admin_key(live["app"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live['port']}") as http:
            answers = [await _post(http, live["key"], "{ organizations { totalCount } }") for _ in range(5)]
            limited = [a for a in answers if "errors" in a]
            assert len(limited) == 2 and len(answers) - len(limited) == 3
            extensions = limited[0]["errors"][0]["extensions"]
            assert extensions["code"] == "RATE_LIMITED" and extensions["retryAfterSeconds"] == 1
            # Another key has its own bucket.
            assert "errors" not in await _post(http, other, "{ organizations { totalCount } }")
        # The WebSocket draws on the same bucket, per operation.
        async with connect(live["port"]) as ws:
            await init(ws, live["key"])
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }"}}))
            message = json.loads(await ws.recv())
            assert message["type"] in ("error", "next")
            errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
            assert errors[0]["extensions"]["code"] == "RATE_LIMITED"


@SQLITE
async def test_cost_rate_per_api_key_and_refusals_wait(settings: Settings) -> None:
    """Each operation takes its cost from its key's bucket: a key that asks costly pages gets COST_RATE_LIMITED (with
    its cost and the seconds to wait) long before its request rate runs out, and every refusal waits a moment."""
    page = {"id": "", "n": 100}
    async with live_server(
        settings, graphql_cost_rate=10.0, graphql_cost_burst=250, graphql_refusal_delay_ms=200
    ) as live:
        page["id"] = live["directory"].id
        other = await _admin_key(live["app"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live['port']}") as http:
            assert cost(PAGE, page) == 102
            assert "errors" not in await _post(http, live["key"], PAGE, page)
            assert "errors" not in await _post(http, live["key"], PAGE, page)
            started = time.monotonic()
            refused = await _post(http, live["key"], PAGE, page)
            assert time.monotonic() - started >= 0.2
            extensions = refused["errors"][0]["extensions"]
            assert refused["data"] is None
            assert extensions["code"] == "COST_RATE_LIMITED" and extensions["cost"] == 102
            assert 1 <= extensions["retryAfterSeconds"] <= 6  # (102 - 46 left) / 10 per second, minus the refill
            assert "errors" not in await _post(http, live["key"], "{ organizations { totalCount } }")  # cost 1
            assert "errors" not in await _post(http, other, PAGE, page)  # another key, another bucket
            started = time.monotonic()
            unauthenticated = await _post(http, "dsync_wrong", "{ organizations { totalCount } }")
            assert unauthenticated["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert time.monotonic() - started >= 0.2
        # Over the WebSocket: the same bucket, the same wait.
        async with connect(live["port"]) as ws:
            await init(ws, live["key"])
            started = time.monotonic()
            subscribe = {"type": "subscribe", "id": "1", "payload": {"query": PAGE, "variables": page}}
            await ws.send(json.dumps(subscribe))
            message = json.loads(await ws.recv())
            errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
            assert errors[0]["extensions"]["code"] == "COST_RATE_LIMITED"
            assert time.monotonic() - started >= 0.2


@SQLITE
async def test_the_websocket_has_the_same_budget_and_deadline(settings: Settings) -> None:
    async with live_server(settings) as live:
        directory_id = live["directory"].id
        async with connect(live["port"]) as ws:
            await init(ws, live["key"])
            payload = {"query": TOO_COSTLY, "variables": {"id": directory_id}}
            await ws.send(json.dumps({"type": "subscribe", "id": "costly", "payload": payload}))
            message = json.loads(await ws.recv())
            assert message["type"] == "error" and message["id"] == "costly"
            assert message["payload"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
            # A subscription is costed per event, as its selection.
            nested = "subscription { directoryEvents { cursor user { id } group { id } } }"
            await ws.send(json.dumps({"type": "subscribe", "id": "live", "payload": {"query": nested}}))
            await ws.send(json.dumps({"type": "complete", "id": "live"}))
    async with live_server(settings, graphql_timeout_seconds=0.000001) as live, connect(live["port"]) as ws:
        await init(ws, live["key"])
        query = "{ organizations { totalCount edges { node { id } } } }"
        await ws.send(json.dumps({"type": "subscribe", "id": "q", "payload": {"query": query}}))
        message = json.loads(await ws.recv())
        assert message["type"] == "next", message
        assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["TIMEOUT"]


@SQLITE
async def test_dataloaders_belong_to_one_operation(app: Any) -> None:
    context = Context(database=app.state.database, settings=app.state.settings, hub=None, _principal=None)
    context.start_operation()
    first = context.loaders
    assert context.loaders is first  # one operation's resolvers share them
    context.start_operation()
    assert context.loaders is not first  # the next operation on the same connection does not


async def _admin_key(app: Any) -> str:
    from gateway.ops import api_keys

    database = app.state.database
    return str((await database.transaction(lambda s: api_keys.create_api_key(s, organization_id=None))).key)


async def _post(http: httpx.AsyncClient, key: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


@SQLITE
async def test_costly_operations_run_in_the_background_over_http_and_websocket(settings: Settings) -> None:
    """Above DSYNC_GRAPHQL_BACKGROUND_COST an operation's steps take turns (gateway.ops.priority): same answer, same
    deadline, over both transports; cheaper ones run as before (until DSYNC_GRAPHQL_FOREGROUND_MS of loop time)."""
    async with live_server(settings, graphql_background_cost=50, graphql_foreground_ms=10_000.0) as live:
        scheduler = live["app"].state.scheduler
        page = {"id": live["directory"].id, "n": 100}  # cost 102
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live['port']}") as http:
            cheap = await _post(http, live["key"], "{ organizations { totalCount } }")
            assert "errors" not in cheap and scheduler.background_steps == 0
            answer = await _post(http, live["key"], PAGE, page)
            assert "errors" not in answer and answer["data"]["directory"]["users"]["edges"] == []
            over_http = scheduler.background_steps
            assert over_http > 0
            assert scheduler.foreground_requests == 0  # every request's count went back
        async with connect(live["port"]) as ws:
            await init(ws, live["key"])
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": PAGE, "variables": page}}))
            message = json.loads(await ws.recv())
            assert message["type"] == "next" and "errors" not in message["payload"], message
            assert scheduler.background_steps > over_http
    async with live_server(settings, graphql_background_cost=50, graphql_timeout_seconds=0.000001) as live:
        page["id"] = live["directory"].id
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live['port']}") as http:
            answer = await _post(http, live["key"], PAGE, page)
            assert [e["extensions"]["code"] for e in answer["errors"]] == ["TIMEOUT"]
        async with connect(live["port"]) as ws:
            await init(ws, live["key"])
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": PAGE, "variables": page}}))
            message = json.loads(await ws.recv())
            assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["TIMEOUT"], message
