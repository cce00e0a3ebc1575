"""``/workos/webhook_endpoints`` over the ASGI app on SQLite and PostgreSQL (create with the secret once, list in
WorkOS's envelope, get, update, delete, organization scope, the private-address policy, WorkOS's error shapes), and
the official Python SDK's webhooks module against a real ``dsync serve``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from workos import WorkOSClient
from workos._errors import NotFoundError, UnprocessableEntityError

from gateway.ops import webhook_endpoints
from gateway.settings import Settings
from tests.conftest import DirectoryFixture, make_directory
from tests.gateway.conftest import live_server
from tests.workos.test_api import api_key, auth

API = "/workos/webhook_endpoints"
URL = "https://hooks.example.com/dsync"


@pytest.fixture
async def keys(app: Any, directory: DirectoryFixture) -> dict[str, str]:
    other = await make_directory(app.state.database, name="Other tenant", type="okta")
    return {
        "admin": await api_key(app, None),
        "own": await api_key(app, directory.organization_id),
        "other": await api_key(app, other.organization_id),
        "other_organization": other.organization_id,
    }


async def create(client: httpx.AsyncClient, key: str, **body: Any) -> httpx.Response:
    return await client.post(API, json={"endpoint_url": URL, "events": [], **body}, headers=auth(key))


async def test_lifecycle(
    client: httpx.AsyncClient, directory: DirectoryFixture, keys: dict[str, str], app: Any
) -> None:
    created = await create(client, keys["own"], events=["dsync.user.created", "dsync.user.created"])
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["object"] == "webhook_endpoint" and endpoint["id"].startswith("webhook_endpoint_")
    assert endpoint["endpoint_url"] == URL and endpoint["status"] == "enabled"
    assert endpoint["events"] == ["dsync.user.created"]  # deduplicated
    assert endpoint["organization_id"] == directory.organization_id
    assert endpoint["secret"].startswith("whsec_") and endpoint["created_at"].endswith("Z")
    stored = await app.state.database.query(
        lambda s: webhook_endpoints.get_webhook_endpoint(s, webhook_endpoint_id=endpoint["id"], scope=None)
    )
    assert stored.secret == endpoint["secret"]  # the secret that signs deliveries

    # The secret is shown once: list, get and update answer WorkOS's empty string in its place.
    shown = {**endpoint, "secret": ""}
    listed = (await client.get(API, headers=auth(keys["own"]))).json()
    assert listed == {"object": "list", "data": [shown], "list_metadata": {"before": None, "after": None}}
    assert (await client.get(f"{API}/{endpoint['id']}", headers=auth(keys["own"]))).json() == shown

    changed = await client.patch(
        f"{API}/{endpoint['id']}",
        json={
            "endpoint_url": " https://other.example.com/hook ",
            "events": ["dsync.group.created"],
            "status": "disabled",
        },
        headers=auth(keys["own"]),
    )
    assert changed.status_code == 200, changed.text
    updated = changed.json()
    assert updated["endpoint_url"] == "https://other.example.com/hook" and updated["events"] == ["dsync.group.created"]
    assert updated["status"] == "disabled" and updated["secret"] == ""
    assert updated["updated_at"] >= endpoint["updated_at"] and updated["created_at"] == endpoint["created_at"]
    # Omitted fields stay; an empty event list means every event again.
    again = await client.patch(f"{API}/{endpoint['id']}", json={"events": []}, headers=auth(keys["own"]))
    assert again.json()["events"] == [] and again.json()["status"] == "disabled"
    assert again.json()["endpoint_url"] == "https://other.example.com/hook"
    enabled = await client.patch(f"{API}/{endpoint['id']}", json={"status": "enabled"}, headers=auth(keys["own"]))
    assert enabled.json()["status"] == "enabled"

    deleted = await client.delete(f"{API}/{endpoint['id']}", headers=auth(keys["own"]))
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await client.get(f"{API}/{endpoint['id']}", headers=auth(keys["own"]))).status_code == 404
    assert (await client.delete(f"{API}/{endpoint['id']}", headers=auth(keys["own"]))).status_code == 404
    assert (await client.get(API, headers=auth(keys["own"]))).json()["data"] == []


async def test_scope_and_pagination(
    client: httpx.AsyncClient, directory: DirectoryFixture, keys: dict[str, str]
) -> None:
    own = [(await create(client, keys["own"])).json()["id"] for _ in range(3)]
    theirs = (await create(client, keys["other"])).json()["id"]
    everyone = (await create(client, keys["admin"])).json()
    assert everyone["organization_id"] is None  # an admin's endpoint for every organization's events
    for_them = await create(client, keys["admin"], organization_id=keys["other_organization"])
    assert for_them.status_code == 201 and for_them.json()["organization_id"] == keys["other_organization"]

    listed = (await client.get(API, headers=auth(keys["own"]), params={"order": "asc"})).json()["data"]
    assert [e["id"] for e in listed] == own
    first = (await client.get(API, headers=auth(keys["own"]), params={"limit": 2})).json()
    assert [e["id"] for e in first["data"]] == own[:0:-1] and first["list_metadata"]["after"] == own[1]
    rest = (await client.get(API, headers=auth(keys["own"]), params={"limit": 2, "after": own[1]})).json()
    assert [e["id"] for e in rest["data"]] == own[:1] and rest["list_metadata"] == {"before": own[0], "after": None}
    everything = (await client.get(API, headers=auth(keys["admin"]), params={"limit": 100})).json()["data"]
    assert len(everything) == 6
    filtered = await client.get(API, headers=auth(keys["admin"]), params={"organization_id": directory.organization_id})
    assert [e["id"] for e in filtered.json()["data"]] == own[::-1]

    # Another organization's endpoint answers exactly like a missing one, whatever the method.
    for method, body in (("GET", None), ("PATCH", {"status": "disabled"}), ("DELETE", None)):
        hidden = await client.request(method, f"{API}/{theirs}", json=body, headers=auth(keys["own"]))
        missing = await client.request(method, f"{API}/webhook_endpoint_missing", json=body, headers=auth(keys["own"]))
        assert hidden.status_code == missing.status_code == 404, method
        assert hidden.json() == {
            "message": f"Webhook endpoint not found: '{theirs}'.",
            "code": "entity_not_found",
            "entity_id": theirs,
        }
    assert (await client.get(f"{API}/{everyone['id']}", headers=auth(keys["own"]))).status_code == 404
    foreign = await create(client, keys["own"], organization_id=keys["other_organization"])
    assert foreign.status_code == 404 and foreign.json()["code"] == "entity_not_found"
    unknown = await create(client, keys["admin"], organization_id="organization_missing")
    assert unknown.status_code == 404 and unknown.json()["entity_id"] == "organization_missing"
    # The admin still sees the other organization's endpoint untouched.
    assert (await client.get(f"{API}/{theirs}", headers=auth(keys["admin"]))).json()["status"] == "enabled"


async def test_private_addresses(client: httpx.AsyncClient, keys: dict[str, str], settings: Settings) -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://10.0.0.5/hook", "http://localhost/hook", "http://[::1]/"):
        refused = await create(client, keys["own"], endpoint_url=url)
        assert refused.status_code == 422, url
        body = refused.json()
        assert body["code"] == "invalid_request_parameters" and body["message"] == "Validation failed"
        assert body["errors"][0]["field"] == "endpoint_url" and "private" in body["errors"][0]["code"]
    public = (await create(client, keys["own"])).json()
    moved = await client.patch(
        f"{API}/{public['id']}", json={"endpoint_url": "http://192.168.1.2/"}, headers=auth(keys["own"])
    )
    assert moved.status_code == 422 and moved.json()["errors"][0]["field"] == "endpoint_url"
    assert (await client.get(f"{API}/{public['id']}", headers=auth(keys["own"]))).json()["endpoint_url"] == URL
    # Admin keys may target the operator's own network.
    admin = await create(client, keys["admin"], endpoint_url="http://127.0.0.1:8080/hook")
    assert admin.status_code == 201 and admin.json()["endpoint_url"] == "http://127.0.0.1:8080/hook"


async def test_validation(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    key = keys["own"]
    for body, field in (
        ({"events": []}, "endpoint_url"),
        ({"endpoint_url": 5}, "endpoint_url"),
        ({"endpoint_url": "ftp://files.example.com/"}, "endpoint_url"),
        ({"endpoint_url": "https://user:pw@hooks.example.com/"}, "endpoint_url"),
        ({"endpoint_url": URL, "events": ["user.created"]}, "events"),
        ({"endpoint_url": URL, "events": "dsync.user.created"}, "events"),
        ({"endpoint_url": URL, "status": "paused"}, "status"),
        ({"endpoint_url": URL, "organization_id": 7}, "organization_id"),
    ):
        response = await client.post(API, json=body, headers=auth(key))
        assert response.status_code == 422, body
        assert response.json()["code"] == "invalid_request_parameters"
        assert response.json()["errors"][0]["field"] == field, body
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        response = await client.post(API, content=raw, headers={**auth(key), "Content-Type": "application/json"})
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body"
    everyone = await client.post(API, json={"endpoint_url": URL, "organization_id": None}, headers=auth(key))
    assert everyone.status_code == 422 and everyone.json()["errors"][0]["field"] == "organization_id"
    assert (await client.post(API, json={"endpoint_url": URL})).status_code == 401
    endpoint = (await create(client, key)).json()
    bad = await client.patch(f"{API}/{endpoint['id']}", json={"status": True}, headers=auth(key))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
    assert (await client.get(f"{API}/x%00y", headers=auth(key))).json()["code"] == "entity_not_found"
    wrong = await client.put(f"{API}/{endpoint['id']}", json={}, headers=auth(key))
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, PATCH, DELETE"
    assert (await client.delete(API, headers=auth(key))).headers["allow"] == "GET, POST"
    assert (await client.get(API, headers=auth(key), params={"limit": "0"})).status_code == 422
    # The root alias serves the same resource.
    root = await client.get("/webhook_endpoints", headers=auth(key))
    assert root.status_code == 200 and root.json() == (await client.get(API, headers=auth(key))).json()


def python_sdk_run(port: int, key: str) -> dict[str, Any]:
    """What an application does with the Python SDK's ``webhooks`` module."""
    webhooks = WorkOSClient(
        api_key=key, client_id="client_unused", base_url=f"http://127.0.0.1:{port}/workos/"
    ).webhooks
    result: dict[str, Any] = {}
    result["created"] = webhooks.create_webhook_endpoint(endpoint_url=URL, events=["dsync.user.created"])
    second = webhooks.create_webhook_endpoint(endpoint_url=URL, events=[])
    result["listed"] = webhooks.list_webhook_endpoints().data
    result["paged"] = [e.id for e in webhooks.list_webhook_endpoints(limit=1, order="asc").auto_paging_iter()]
    result["updated"] = webhooks.update_webhook_endpoint(
        result["created"].id, endpoint_url="https://moved.example.com/", status="disabled", events=["dsync.deleted"]
    )
    webhooks.delete_webhook_endpoint(second.id)
    result["after_delete"] = [e.id for e in webhooks.list_webhook_endpoints().data]
    try:
        webhooks.delete_webhook_endpoint(second.id)
    except NotFoundError as error:
        result["not_found"] = error
    try:
        webhooks.create_webhook_endpoint(endpoint_url=URL, events=["user.created"])
    except UnprocessableEntityError as error:
        result["invalid"] = error
    return result


@pytest.mark.slow
async def test_python_sdk(settings: Settings) -> None:
    async with live_server(settings) as server:
        r = await asyncio.to_thread(python_sdk_run, server["port"], server["key"])
    created = r["created"]
    assert created.object == "webhook_endpoint" and created.secret.startswith("whsec_")
    assert created.endpoint_url == URL and created.status == "enabled" and created.events == ["dsync.user.created"]
    assert [e.secret for e in r["listed"]] == ["", ""] and r["listed"][1].id == created.id  # newest first
    assert r["paged"][0] == created.id and len(r["paged"]) == 2
    updated = r["updated"]
    assert updated.id == created.id and updated.endpoint_url == "https://moved.example.com/"
    assert updated.status == "disabled" and updated.events == ["dsync.deleted"]
    assert r["after_delete"] == [created.id]
    assert r["not_found"].status_code == 404
    assert r["invalid"].status_code == 422
