"""The official WorkOS SDKs against a real ``dsync serve`` (uvicorn on 127.0.0.1), configured with nothing but the
gateway's address and an API key: the Python SDK (``workos`` on PyPI, base URL ``…/workos/``) and the Node SDK
(``@workos-inc/node``, host and port) list and get every object, page through 1,000 users both ways, and read events
after a cursor."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from workos import WorkOSClient
from workos._errors import AuthenticationError, NotFoundError

from gateway.settings import Settings
from tests.conftest import DirectoryFixture
from tests.gateway.conftest import live_server

NODE_PROJECT = Path(__file__).parent / "node"
USERS = 1000
pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite is enough here: the REST layer's own tests run on both stores."""
    path = tmp_path / "dsync.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    """``npm install`` once into the gitignored tests/workos/node/node_modules."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the Node SDK test")
    if not (NODE_PROJECT / "node_modules" / "@workos-inc" / "node").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_PROJECT, check=True, timeout=300)
    return NODE_PROJECT


async def provision(port: int, directory: DirectoryFixture) -> dict[str, Any]:
    """1,000 users and a group of 3 through SCIM, as an identity provider would send them."""
    base = f"http://127.0.0.1:{port}{directory.path}"
    async with httpx.AsyncClient(headers=directory.headers, timeout=30) as scim:
        gate = asyncio.Semaphore(8)

        async def create(i: int) -> str:
            body = {"userName": f"user{i:04}@acme.test", "externalId": f"ext-{i}", "name": {"givenName": f"U{i}"}}
            async with gate:
                response = await scim.post(f"{base}/Users", json=body)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        ids = await asyncio.gather(*(create(i) for i in range(USERS)))
        group = await scim.post(
            f"{base}/Groups", json={"displayName": "Engineering", "members": [{"value": i} for i in ids[:3]]}
        )
    return {"user_ids": sorted(ids), "group_id": group.json()["id"], "members": sorted(ids[:3])}


def python_sdk_run(port: int, key: str, directory_id: str, group_id: str) -> dict[str, Any]:
    """What an application does with the Python SDK (sync client; run off the event loop serving the gateway)."""
    client = WorkOSClient(api_key=key, client_id="client_unused", base_url=f"http://127.0.0.1:{port}/workos/")
    sync = client.directory_sync
    result: dict[str, Any] = {}
    result["directories"] = sync.list_directories().data
    result["directory"] = sync.get_directory(directory_id)
    result["all_users"] = [u.id for u in sync.list_users(directory=directory_id, limit=100).auto_paging_iter()]
    forward: list[list[str]] = []
    page = sync.list_users(directory=directory_id, limit=100)
    while True:
        forward.append([u.id for u in page.data])
        if page.list_metadata.after is None:
            break
        page = sync.list_users(directory=directory_id, limit=100, after=page.list_metadata.after)
    backward: list[list[str]] = []
    before: str | None = forward[-1][0]
    while before is not None:
        page = sync.list_users(directory=directory_id, limit=100, before=before)
        backward.append([u.id for u in page.data])
        before = page.list_metadata.before
    result["forward"], result["backward"] = forward, backward
    result["ascending"] = [u.id for u in sync.list_users(directory=directory_id, order="asc").auto_paging_iter()]
    result["members"] = sorted(u.id for u in sync.list_users(group=group_id).data)
    result["user"] = sync.get_user(result["members"][0])
    result["groups"] = sync.list_groups(directory=directory_id).data
    result["user_groups"] = sync.list_groups(user=result["members"][0]).data
    result["group"] = sync.get_group(group_id)
    names = ["dsync.user.created", "dsync.group.user_added"]
    first = client.events.list_events(events=names, limit=5)
    result["first_events"] = first.data
    result["later_events"] = client.events.list_events(events=names, limit=100, after=first.list_metadata.after).data
    result["all_events"] = list(client.events.list_events(events=names, limit=100).auto_paging_iter())
    try:
        sync.get_user("directory_user_missing")
    except NotFoundError as error:
        result["not_found"] = error
    try:
        WorkOSClient(
            api_key="dsync_key_wrong", client_id="c", base_url=client.base_url
        ).directory_sync.list_directories()
    except AuthenticationError as error:
        result["unauthorized"] = error
    sync.delete_directory(directory_id)
    try:
        sync.get_directory(directory_id)
    except NotFoundError as error:
        result["deleted"] = error
    return result


@pytest.fixture
async def gateway(settings: Settings) -> Any:
    async with live_server(settings) as server:
        server.update(await provision(server["port"], server["directory"]))
        yield server


async def test_python_sdk(gateway: dict[str, Any]) -> None:
    directory: DirectoryFixture = gateway["directory"]
    r = await asyncio.to_thread(python_sdk_run, gateway["port"], gateway["key"], directory.id, gateway["group_id"])
    user_ids: list[str] = gateway["user_ids"]
    assert [d.id for d in r["directories"]] == [directory.id]
    assert r["directory"].id == directory.id and r["directory"].state == "linked"
    assert r["directory"].type == "jump cloud scim v2.0" and r["directory"].organization_id == directory.organization_id
    assert r["all_users"] == user_ids[::-1]
    assert [len(p) for p in r["forward"]] == [100] * 10 and sum(r["forward"], []) == user_ids[::-1]
    assert r["backward"] == r["forward"][-2::-1]
    assert r["ascending"] == user_ids
    assert r["members"] == gateway["members"]
    user = r["user"]
    assert user.directory_id == directory.id and user.organization_id == directory.organization_id
    assert user.idp_id.startswith("ext-") and user.username.endswith("@acme.test") and user.state == "active"
    assert [g.id for g in user.groups] == [gateway["group_id"]]
    assert [g.id for g in r["groups"]] == [gateway["group_id"]] == [g.id for g in r["user_groups"]]
    assert r["group"].name == "Engineering" and r["group"].organization_id == directory.organization_id
    events = r["all_events"]
    assert len(events) == USERS + 3
    assert [e.id for e in r["first_events"] + r["later_events"]] == [e.id for e in events[:105]]
    assert {e.event for e in events} == {"dsync.user.created", "dsync.group.user_added"}
    added = next(e for e in events if e.event == "dsync.group.user_added")
    assert added.data.group.id == gateway["group_id"]
    assert r["not_found"].status_code == 404 and r["not_found"].code == "entity_not_found"
    assert r["unauthorized"].status_code == 401
    assert r["deleted"].status_code == 404


async def test_node_sdk(gateway: dict[str, Any], node_sdk: Path) -> None:
    directory: DirectoryFixture = gateway["directory"]
    env = {
        **os.environ,
        "DSYNC_PORT": str(gateway["port"]),
        "DSYNC_KEY": gateway["key"],
        "DIRECTORY_ID": directory.id,
        "GROUP_ID": gateway["group_id"],
    }
    process = await asyncio.create_subprocess_exec(
        "node", "sdk_check.mjs", cwd=node_sdk, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode == 0, stderr.decode()
    r = json.loads(stdout)
    user_ids: list[str] = gateway["user_ids"]
    assert [d["id"] for d in r["directories"]] == [directory.id]
    # The Node SDK reports WorkOS's linked/unlinked as active/inactive.
    assert r["directory"]["state"] == "active" and r["directory"]["organizationId"] == directory.organization_id
    assert [len(p) for p in r["forward"]] == [100] * 10 and sum(r["forward"], []) == user_ids[::-1]
    assert r["backward"] == r["forward"][-2::-1]
    assert sum(r["ascending"], []) == user_ids
    assert sorted(r["members"]) == gateway["members"]
    assert r["user"]["directoryId"] == directory.id and r["user"]["groups"][0]["id"] == gateway["group_id"]
    assert r["user"]["idpId"].startswith("ext-") and r["user"]["state"] == "active"
    assert [g["id"] for g in r["groups"]] == [gateway["group_id"]] and r["group"]["name"] == "Engineering"
    assert len(r["firstEvents"]) == 5 and r["firstEventsAfter"] == r["firstEvents"][-1]["id"]
    assert len(r["laterEvents"]) == 100
    assert r["laterEvents"][0]["event"] == "dsync.user.created" and "directoryId" in r["laterEvents"][0]["data"]
    assert r["notFound"]["name"] == "NotFoundException" and r["notFound"]["code"] == "entity_not_found"
    assert r["unauthorized"] == {"name": "UnauthorizedException", "status": 401, "isUnauthorized": True}
