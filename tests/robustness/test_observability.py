"""Observability: /metrics in Prometheus's format with bounded labels (route templates, never ids), request ids on
every response and in every log record of a request, JSON logs, and /readyz failing while the database or the
broadcaster is unreachable.

Metrics are process-wide (one gateway per process in production), so each test compares scrapes before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import websockets
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from gateway import cli
from gateway.app import create_app
from gateway.observe.logs import REQUEST_ID, configure_logging, redact
from gateway.ops import api_keys
from gateway.settings import Settings, get_settings
from gateway.store.migrate import upgrade
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory, recorded_events
from tests.gateway.conftest import live_server
from tests.redis_server import free_port
from tests.waiting import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

USERS = "/scim/v2/{directory_id}/Users"
USER = "/scim/v2/{directory_id}/Users/{id}"


def parse_metrics(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(http: httpx.AsyncClient, **headers: str) -> Samples:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return parse_metrics(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def user_body(name: str) -> dict[str, Any]:
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": True}


async def test_scim_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    before = await scrape(client)
    ids = []
    for i in range(3):
        created = await client.post(
            f"{directory.path}/Users", json=user_body(f"u{i}@acme.test"), headers=directory.headers
        )
        assert created.status_code == 201
        ids.append(created.json()["id"])
    assert (await client.get(f"{directory.path}/Users/{ids[0]}", headers=directory.headers)).status_code == 200
    patch = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
    assert (await client.patch(f"{directory.path}/Users/{ids[1]}", json=patch, headers=directory.headers)).is_success
    wrong = {**directory.headers, "Authorization": "Bearer not-the-token"}
    assert (await client.get(f"{directory.path}/Users/{ids[2]}", headers=wrong)).status_code == 401
    assert (await client.get(f"{directory.path}/Nowhere/{ids[2]}", headers=directory.headers)).status_code == 404
    response = await client.get("/metrics")
    after = parse_metrics(response.text)

    assert delta(before, after, "dsync_http_requests_total", method="POST", route=USERS, status="201") == 3
    assert delta(before, after, "dsync_http_requests_total", method="GET", route=USER, status="200") == 1
    assert delta(before, after, "dsync_http_requests_total", method="PATCH", route=USER, status="200") == 1
    assert delta(before, after, "dsync_http_requests_total", method="GET", route=USER, status="401") == 1
    catch_all = "/scim/v2/{directory_id}/{rest:path}"
    assert delta(before, after, "dsync_http_requests_total", method="GET", route=catch_all, status="404") == 1
    assert delta(before, after, "dsync_http_request_duration_seconds_count", method="POST", route=USERS) == 3
    assert (
        delta(before, after, "dsync_http_request_duration_seconds_bucket", method="POST", route=USERS, le="+Inf") == 3
    )
    # Every event this process committed (the activation, three users, one update), counted once committed.
    events = await recorded_events(app.state.database, directory.id)
    assert delta(before, after, "dsync_events_written_total") == len(events) == 5
    # Bounded labels: no directory or user id anywhere.
    for raw_id in [directory.id, *ids]:
        assert raw_id not in response.text


async def test_graphql_operations_are_counted_by_type(client: httpx.AsyncClient, app: Any) -> None:
    key = (await app.state.database.transaction(lambda s: api_keys.create_api_key(s))).key
    headers = {"Authorization": f"Bearer {key}"}
    before = await scrape(client)
    for document in [
        "{ organizations(first: 1) { totalCount } }",
        '{ organization(id: "org_missing") { id } }',
        'mutation { createOrganization(name: "Metrics") { id } }',
        "{ organizations(first: 1) { nope } }",  # invalid: refused before execution
    ]:
        assert (await client.post("/graphql", json={"query": document}, headers=headers)).status_code == 200
    after = await scrape(client)
    assert delta(before, after, "dsync_graphql_operations_total", operation_type="query") == 2
    assert delta(before, after, "dsync_graphql_operations_total", operation_type="mutation") == 1
    assert delta(before, after, "dsync_graphql_operations_total", operation_type="invalid") == 1
    assert delta(before, after, "dsync_http_requests_total", method="POST", route="/graphql", status="200") == 4


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_metrics_can_require_a_token(settings: Settings) -> None:
    application = create_app(dataclasses.replace(settings, metrics_token="metrics-secret"))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
            assert (await http.get("/metrics")).status_code == 401
            assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
            assert (await http.get("/metrics", headers={"Authorization": "metrics-secret"})).status_code == 401
            samples = await scrape(http, Authorization="Bearer metrics-secret")
            assert value(samples, "dsync_broadcaster_connected") == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_response_carries_a_request_id(client: httpx.AsyncClient, directory: DirectoryFixture) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-Id": "trace-42.a:b/c+d=e"})
    assert echoed.headers["x-request-id"] == "trace-42.a:b/c+d=e"
    generated = [(await client.get(f"{directory.path}/Users", headers=directory.headers)) for _ in range(2)]
    ids = [response.headers["x-request-id"] for response in generated]
    assert ids[0] != ids[1] and all(ids)
    for insane in ["has space", "x" * 129, 'quote"d', "", "dsync_key_lookslikeakey", "Bearer abc"]:
        response = await client.get(
            f"{directory.path}/Users/missing", headers={**directory.headers, "X-Request-Id": insane}
        )
        assert response.status_code == 404
        assert response.headers["x-request-id"] not in (insane, "")
    # Errors too, SCIM's 401 and the router's 405.
    unauthorized = await client.get(f"{directory.path}/Users", headers={"X-Request-Id": "abc-401"})
    assert unauthorized.status_code == 401 and unauthorized.headers["x-request-id"] == "abc-401"
    refused = await client.delete("/healthz", headers={"X-Request-Id": "abc-405"})
    assert refused.status_code == 405 and refused.headers["x-request-id"] == "abc-405"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in ("dsync", "uvicorn", "uvicorn.access")]
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for logger, old_level in saved:
            logger.setLevel(old_level)
        access = logging.getLogger("uvicorn.access")
        access.disabled, access.propagate = False, True
        logging.captureWarnings(False)


def test_json_logs_carry_time_level_logger_message_and_request_id(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(log_format="json", level="debug", access_log=True, stream=stream)
    logger = logging.getLogger("dsync.test")
    logger.debug("outside a request")
    token = REQUEST_ID.set("req-1")
    try:
        logger.info("inside %s", "a request")
        frame = '< TEXT \'{"type":"connection_init","payload":{"Authorization":"Bearer dsync_key_abc123"}}\' [90 bytes]'
        logging.getLogger("uvicorn.error").debug(frame)
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/healthz", "1.1", 200
        )
        try:
            raise RuntimeError("boom with Authorization: Bearer sekrit")
        except RuntimeError:
            logger.exception("failed")
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("sqlalchemy.engine.Engine").info("a library below WARNING is not shown")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["message"] for r in records[:2]] == ["outside a request", "inside a request"]
    assert "request_id" not in records[0]
    assert all(r["request_id"] == "req-1" for r in records[1:])
    assert {"time", "level", "logger", "message"} <= records[1].keys()
    assert records[1]["level"] == "info" and records[1]["logger"] == "dsync.test"
    assert records[1]["time"].endswith("Z")
    assert "dsync_key_abc123" not in records[2]["message"] and "[redacted]" in records[2]["message"]
    assert records[3] | {"method": "GET", "path": "/healthz", "status": 200} == records[3]
    assert "sekrit" not in records[4]["exception"] and "RuntimeError" in records[4]["exception"]
    assert len(records) == 5


def test_text_logs_and_bad_settings(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(log_format="text", level="info", access_log=False, stream=stream)
    token = REQUEST_ID.set("req-2")
    try:
        logging.getLogger("dsync").info("rotated, old token was dsync_scim_AbC-123_x")
        logging.getLogger("dsync").debug("not at info level")
        logging.getLogger("uvicorn.access").info("access log is off")
    finally:
        REQUEST_ID.reset(token)
    [line] = stream.getvalue().splitlines()
    assert " INFO    dsync [req-2] rotated, old token was [redacted]" in line
    with pytest.raises(ValueError, match="DSYNC_LOG_FORMAT"):
        configure_logging(log_format="xml", level="info", access_log=False)
    with pytest.raises(ValueError, match="DSYNC_LOG_LEVEL"):
        configure_logging(log_format="json", level="verbose", access_log=False)


def test_serve_refuses_an_unknown_log_format(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DSYNC_LOG_FORMAT", "xml")
    get_settings.cache_clear()
    try:
        assert cli.main(["serve", "--port", "1"]) == 2  # before touching the database or the port
    finally:
        get_settings.cache_clear()
    assert "DSYNC_LOG_FORMAT must be one of text, json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("< Authorization: Bearer abc.def", "< Authorization: [redacted]"),
        ("{'authorization': 'Bearer abc'}", "{'authorization': '[redacted]'}"),
        ('{"AUTHORIZATION":"dsync_key_x"}', '{"AUTHORIZATION":"[redacted]"}'),
        ("sent bearer abc123, then", "sent bearer [redacted], then"),
        ("GET /x?token=abc&b=1", "GET /x?token=[redacted]&b=1"),
        ("key dsync_key_Zz_9-y and dsync_scim_q", "key [redacted] and [redacted]"),
        ("< cookie: session=abc; other=def", "< cookie: [redacted]"),
        (
            '< TEXT \'{"type": "connection_init", "payload": {"a...tail-of-a-key"}}\' [121 bytes]',
            "< TEXT [redacted] [121 bytes]",
        ),
        ("< CONT '...' [3 bytes, continued]", "< CONT [redacted] [3 bytes, continued]"),
        ('> TEXT \'{"type":"connection_ack"}\' [25 bytes]', '> TEXT \'{"type":"connection_ack"}\' [25 bytes]'),
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_websocket_connections_subscriptions_and_deliveries(settings: Settings) -> None:
    async with live_server(settings) as live:
        port, directory = live["port"], live["directory"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            before = await scrape(http)
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/graphql",
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                additional_headers={"X-Request-Id": "ws-connection-1"},
            ) as ws:
                assert ws.response is not None and ws.response.headers["x-request-id"] == "ws-connection-1"
                await ws.send(
                    json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {live['key']}"}})
                )
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                query = "subscription($dir: ID) { directoryEvents(directoryId: $dir) { cursor event } }"
                payload = {"query": query, "variables": {"dir": directory.id}}
                await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
                await eventually(lambda: live["app"].state.hub.subscriber_count == 1)
                scim = f"/scim/v2/{directory.id}/Users"
                for i in range(2):
                    created = await http.post(scim, json=user_body(f"ws{i}@acme.test"), headers=directory.headers)
                    assert created.status_code == 201
                received = [json.loads(await ws.recv()) for _ in range(3)]  # dsync.activated and two users
                assert [m["payload"]["data"]["directoryEvents"]["event"] for m in received][-2:] == [
                    "dsync.user.created",
                    "dsync.user.created",
                ]
                during = await scrape(http)
                assert delta(before, during, "dsync_websocket_connections") == 1
                assert value(during, "dsync_subscriptions") == 1
                assert value(during, "dsync_subscriber_lag_events") == 0
                delivered = [delta(before, during, "dsync_events_delivered_total", source=s) for s in ("live", "log")]
                assert sum(delivered) == 3  # live, unless one committed while the subscription first read the log
                assert delta(before, during, "dsync_graphql_operations_total", operation_type="subscription") == 1
                assert value(during, "dsync_broadcaster_connected") == 1
            await eventually(lambda: live["app"].state.hub.subscriber_count == 0)
            after = await scrape(http)
            assert delta(before, after, "dsync_websocket_connections") == 0
            assert value(after, "dsync_subscriptions") == 0


# -- /readyz -----------------------------------------------------------------------------------------------------


async def test_ready_when_database_and_broadcaster_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broadcaster": "ok"}


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_not_ready_while_the_broadcaster_is_unreachable(settings: Settings) -> None:
    closed_port = free_port()  # nothing listens there
    application = create_app(dataclasses.replace(settings, broadcast_url=f"redis://127.0.0.1:{closed_port}/0"))
    async with application.router.lifespan_context(application):  # starts anyway, retrying in the background
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
            response = await http.get("/readyz")
            assert response.status_code == 503
            assert response.json() == {"status": "unavailable", "database": "ok", "broadcaster": "unreachable"}
            assert (await http.get("/healthz")).status_code == 200  # alive, just not ready
            samples = await scrape(http)
            assert value(samples, "dsync_broadcaster_connected") == 0
            assert value(samples, "dsync_broadcaster_reconnects_total") >= 1


@contextlib.asynccontextmanager
async def _scratch_postgres() -> AsyncIterator[tuple[str, str]]:
    """A migrated PostgreSQL database of its own (this test drops it): (SQLAlchemy URL, libpq URL of the server)."""
    base = os.environ.get("DSYNC_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("DSYNC_TEST_POSTGRES_URL is not set")
    server = base.replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"dsync_ready_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        url = base.rsplit("/", 1)[0] + f"/{name}"
        await asyncio.to_thread(upgrade, url)
        yield url, server
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


@pytest.mark.slow
@pytest.mark.postgres
async def test_not_ready_once_the_database_is_gone() -> None:
    async with _scratch_postgres() as (url, server):
        application = create_app(Settings(database_url=url, public_url=PUBLIC_URL, scim_rate_limit=0))
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
                assert (await http.get("/readyz")).status_code == 200
                directory = await make_directory(application.state.database)
                name = url.rsplit("/", 1)[1]
                connection = await asyncpg.connect(server)
                try:  # terminates every session of the gateway, and nothing can reconnect
                    await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                finally:
                    await connection.close()
                response = await http.get("/readyz")
                assert response.status_code == 503
                assert response.json() == {"status": "unavailable", "database": "unreachable", "broadcaster": "ok"}
                # SCIM answers a clean error meanwhile, not a hang.
                scim = await http.get(f"{directory.path}/Users", headers=directory.headers)
                assert scim.status_code == 500
