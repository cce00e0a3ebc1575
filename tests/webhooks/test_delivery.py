"""Webhooks end to end: SCIM changes on the real app reach a real HTTP receiver as signed deliveries that the
official WorkOS Python SDK verifies unchanged, in cursor order, through a receiver outage, into the dead letter
state and back; two instances on PostgreSQL never deliver one event at the same time."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col
from workos import WorkOSClient

from gateway.app import create_app
from gateway.ops import webhook_endpoints as hooks
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.models import Event, WebhookEndpointState
from gateway.webhooks.delivery import DeliveryClient
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory
from tests.waiting import eventually
from tests.webhook_receiver import Receiver, receiving

WORKOS = WorkOSClient(api_key="sk_test_unused", client_id="client_unused")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        public_url=PUBLIC_URL,
        scim_rate_limit=0,
        event_poll_seconds=0.2,
        webhook_backoff_base_seconds=0.05,
        webhook_max_backoff_seconds=0.3,
        # A delivery in flight when a receiver is killed may get no answer at all: it fails at this timeout.
        webhook_timeout_seconds=2.0,
        webhook_process=False,
    )


async def _endpoint(
    database: Database, url: str, organization_id: str | None, **kwargs: Any
) -> hooks.IssuedWebhookEndpoint:
    return await database.transaction(
        lambda s: hooks.create_webhook_endpoint(
            s, url=url, organization_id=organization_id, allow_private=True, **kwargs
        )
    )


async def _log(database: Database, organization_id: str) -> list[tuple[str, str]]:
    def read(session: Session) -> list[tuple[str, str]]:
        rows = session.execute(
            select(col(Event.id), col(Event.event))
            .where(col(Event.organization_id) == organization_id)
            .order_by(col(Event.cursor))
        )
        return [(row[0], row[1]) for row in rows]

    return await database.query(read)


async def _users(client: httpx.AsyncClient, directory: DirectoryFixture, count: int, prefix: str = "u") -> list[str]:
    ids = []
    for i in range(count):
        response = await client.post(
            f"{directory.path}/Users",
            headers=directory.headers,
            json={
                "userName": f"{prefix}{i}@acme.test",
                "name": {"givenName": "Ada", "familyName": f"L{i}"},
                "emails": [{"value": f"{prefix}{i}@acme.test", "primary": True}],
                "active": True,
            },
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _ids(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["id"] for r in receiver.received]


def _in_order_without_repeats(ids: list[str]) -> list[str]:
    seen: list[str] = []
    for event_id in ids:
        if event_id not in seen:
            seen.append(event_id)
    return seen


async def test_deliveries_verify_with_the_official_workos_sdk(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    database: Database = app.state.database
    async with receiving() as receiver:
        issued = await _endpoint(database, receiver.url(), directory.organization_id)
        only_groups = await _endpoint(
            database, receiver.url("/groups"), directory.organization_id, events=["dsync.group.created"]
        )
        [user_id] = await _users(client, directory, 1)
        group = await client.post(
            f"{directory.path}/Groups",
            headers=directory.headers,
            json={"displayName": "Engineering", "members": [{"value": user_id}]},
        )
        assert group.status_code == 201
        patch = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "CTO"}],
        }
        assert (
            await client.patch(f"{directory.path}/Users/{user_id}", headers=directory.headers, json=patch)
        ).status_code == 200
        assert (
            await client.delete(f"{directory.path}/Groups/{group.json()['id']}", headers=directory.headers)
        ).status_code == 204
        assert (await client.delete(f"{directory.path}/Users/{user_id}", headers=directory.headers)).status_code == 204
        log = await _log(database, directory.organization_id)
        names = [name for _, name in log]
        assert names[0] == "dsync.activated" and "dsync.group.user_added" in names and names[-1] == "dsync.user.deleted"

        await eventually(lambda: len([r for r in receiver.received if r.path == "/hook"]) >= len(log), within=15)
        main = [r for r in receiver.received if r.path == "/hook"]
        assert [json.loads(r.body)["id"] for r in main] == [event_id for event_id, _ in log]
        for received in main:
            event = WORKOS.webhooks.verify_event(
                event_body=received.body, event_signature=received.headers["workos-signature"], secret=issued.secret
            )
            body = json.loads(received.body)
            assert set(body) == {"id", "event", "data", "created_at"}
            # The SDK parsed WorkOS's data shape into its typed event (not its catch-all for unknown ones).
            assert type(event).__name__.startswith("Dsync"), type(event)
            assert getattr(event, "id", None) == body["id"] and getattr(event, "event", None) == body["event"]
            assert received.headers["content-type"] == "application/json"
            with pytest.raises(ValueError):  # another endpoint's secret does not verify
                WORKOS.webhooks.verify_event(
                    event_body=received.body,
                    event_signature=received.headers["workos-signature"],
                    secret=only_groups.secret,
                )
        await eventually(lambda: any(r.path == "/groups" for r in receiver.received), within=10)
        assert [json.loads(r.body)["event"] for r in receiver.received if r.path == "/groups"] == [
            "dsync.group.created"
        ]
        for _ in range(50):  # the attempts are recorded in a batch after the deliveries
            attempts = await database.query(
                lambda s: hooks.list_webhook_attempts(s, webhook_endpoint_id=issued.endpoint.id, scope=None)
            )
            if len(attempts) == len(log):
                break
            await asyncio.sleep(0.1)
        assert {a.status_code for a in attempts} == {200} and len(attempts) == len(log)


async def test_a_receiver_outage_mid_stream_loses_nothing_and_keeps_the_order(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    database: Database = app.state.database
    receiver = Receiver()
    await receiver.start()
    try:
        issued = await _endpoint(database, receiver.url(), directory.organization_id)
        writer = asyncio.create_task(_users(client, directory, 20))
        await eventually(lambda: len(receiver.received) >= 10, within=15)
        await receiver.stop()  # killed mid-stream: deliveries fail and back off
        await writer
        # The stream goes on while the receiver is down (ingest may have outrun the first part's deliveries).
        await _users(client, directory, 40, prefix="v")

        async def failed() -> bool:
            endpoint = await database.query(
                lambda s: hooks.get_webhook_endpoint(s, webhook_endpoint_id=issued.endpoint.id, scope=None)
            )
            return endpoint.failed_attempts >= 1 and bool(endpoint.last_error)

        # Within the delivery timeout plus a few backoffs, with room for a loaded CI machine (30 s and more).
        for _ in range(300):
            if await failed():
                break
            await asyncio.sleep(0.1)
        assert await failed()
        await receiver.start()  # back on the same port
        log = [event_id for event_id, _ in await _log(database, directory.organization_id)]
        await eventually(lambda: _in_order_without_repeats(_ids(receiver)) == log, within=20)
        # At least once, in order: a repeat can only be the event that was in flight when the receiver died.
        ids = _ids(receiver)
        assert all(log.index(b) >= log.index(a) for a, b in zip(ids, ids[1:], strict=False))
        attempts = await database.query(
            lambda s: hooks.list_webhook_attempts(s, webhook_endpoint_id=issued.endpoint.id, scope=None)
        )
        assert any(a.status_code is None and a.error and a.next_attempt_at for a in attempts)
    finally:
        await receiver.stop()


async def test_dead_letter_then_resume_and_redeliver(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, settings: Settings
) -> None:
    database: Database = app.state.database
    object.__setattr__(settings, "webhook_retry_hours", 1.0 / 3600)  # give up after one second of failures
    async with receiving(status=500) as receiver:
        issued = await _endpoint(database, receiver.url(), directory.organization_id)
        endpoint_id = issued.endpoint.id
        await _users(client, directory, 3)

        async def state() -> str:
            row = await database.query(
                lambda s: hooks.get_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=None)
            )
            return row.state

        for _ in range(100):
            if await state() == WebhookEndpointState.FAILED.value:
                break
            await asyncio.sleep(0.1)
        assert await state() == WebhookEndpointState.FAILED.value
        attempts = await database.query(
            lambda s: hooks.list_webhook_attempts(s, webhook_endpoint_id=endpoint_id, scope=None)
        )
        assert (
            attempts[0].status_code == 500 and attempts[0].error == "HTTP 500" and attempts[0].next_attempt_at is None
        )
        assert all(a.duration_ms >= 0 for a in attempts)

        receiver.status = 200
        await asyncio.sleep(0.5)
        assert receiver.received == []  # a failed endpoint waits for an operator
        await database.transaction(
            lambda s: hooks.resume_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=None)
        )
        log = [event_id for event_id, _ in await _log(database, directory.organization_id)]
        await eventually(lambda: _ids(receiver) == log, within=10)

        # Redeliver from the second event: it and everything after it come again, in order.
        await database.transaction(
            lambda s: hooks.redeliver_webhook_endpoint(
                s, webhook_endpoint_id=endpoint_id, scope=None, from_event_id=log[1]
            )
        )
        await eventually(lambda: _ids(receiver) == log + log[1:], within=10)


async def test_an_organization_endpoint_never_reaches_a_private_address() -> None:
    client = DeliveryClient(timeout_seconds=2)
    async with receiving() as receiver:
        try:
            refused = await client.post(url=receiver.url(), body=b"{}", secret="s", allow_private=False)
            assert refused.status_code is None and refused.error and "refused" in refused.error
            assert receiver.received == []
            allowed = await client.post(url=receiver.url(), body=b"{}", secret="s", allow_private=True)
            assert allowed.delivered
        finally:
            await client.close()


async def test_redirects_are_not_followed_and_timeouts_fail() -> None:
    client = DeliveryClient(timeout_seconds=0.3)
    async with receiving(status=307) as redirecting, receiving(delay=2.0) as slow:
        try:
            redirected = await client.post(url=redirecting.url(), body=b"{}", secret="s", allow_private=True)
            assert redirected.status_code == 307 and not redirected.delivered
            timed_out = await client.post(url=slow.url(), body=b"{}", secret="s", allow_private=True)
            assert timed_out.status_code is None and timed_out.error and "Timeout" in timed_out.error
        finally:
            await client.close()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # several instances share PostgreSQL
async def test_two_instances_never_deliver_an_event_twice_at_once(database_url: str, settings: Settings) -> None:
    first, second = create_app(settings), create_app(settings)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        directory = await make_directory(first.state.database)
        async with receiving(delay=0.002) as receiver:
            for i in range(3):  # one path per endpoint: the same event may go to two endpoints at once
                await _endpoint(first.state.database, receiver.url(f"/hook{i}"), directory.organization_id)
            clients = [
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)
                for app in (first, second)
            ]
            try:
                await asyncio.gather(
                    _users(clients[0], directory, 40, prefix="a"), _users(clients[1], directory, 40, prefix="b")
                )
            finally:
                for http in clients:
                    await http.aclose()
            log = [event_id for event_id, _ in await _log(first.state.database, directory.organization_id)]
            await eventually(lambda: len(receiver.received) >= 3 * len(log), within=30)
            await asyncio.sleep(0.5)
            assert receiver.concurrent_duplicates == 0
            # Each endpoint got every event exactly once, in order, whichever instance delivered it.
            assert len(receiver.received) == 3 * len(log)
            for i in range(3):
                assert [json.loads(r.body)["id"] for r in receiver.received if r.path == f"/hook{i}"] == log


async def test_a_graceful_stop_records_every_acknowledged_delivery(settings: Settings) -> None:
    application = create_app(settings)
    async with receiving() as receiver:
        async with application.router.lifespan_context(application):
            database: Database = application.state.database
            directory = await make_directory(database)
            issued = await _endpoint(database, receiver.url(), directory.organization_id)
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=PUBLIC_URL)
            async with http:
                await _users(http, directory, 5)
            log = await _log(database, directory.organization_id)
            await eventually(lambda: len(receiver.received) >= len(log), within=15)
        # Stopped right after the deliveries: their record was written on the way out, not lost with the buffer.
        database = Database(settings)
        try:
            endpoint = await database.query(
                lambda s: hooks.get_webhook_endpoint(s, webhook_endpoint_id=issued.endpoint.id, scope=None)
            )
            head = await database.query(
                lambda s: s.scalar(select(col(Event.cursor)).where(col(Event.id) == log[-1][0]))
            )
            assert endpoint.cursor == head and endpoint.lease_owner is None
        finally:
            await database.dispose()
