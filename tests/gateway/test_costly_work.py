"""Costly work in worker processes (gateway.ops.costly_work): the largest allowed PATCH and a costly query's read
plan answer exactly what the server's threads answer, from a worker process; a dead worker costs no request; a worker
runs below the server, in a session (and so a Linux autogroup) of its own; one owner has one job sent at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.ops import api_keys
from gateway.ops.costly_work import CostlyWork, _lower_priority
from gateway.settings import Settings
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory

pytestmark = pytest.mark.slow

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# Cost 1 + 1 + 100 x 3 x 2 = 602: above the background cost (300), so a costly-work process answers it.
COSTLY = (
    "query($id: ID!) { directory(id: $id) { groups(first: 100) { edges { node { name "
    + " ".join(f"m{i}: members(first: 100) {{ totalCount edges {{ node {{ id userName }} }} }}" for i in range(3))
    + " } } } } }"
)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, DirectoryFixture]]:
    application = create_app(dataclasses.replace(settings, costly_workers=1))
    async with application.router.lifespan_context(application):
        directory = await make_directory(application.state.database)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL, timeout=60) as http:
            yield application, http, directory


def _worst_patch(operations: int, values: int) -> dict[str, Any]:
    ops = [
        {"op": "replace", "path": f'emails[value co "e{i % values}@"].type', "value": f"t{i}"}
        for i in range(operations)
    ]
    return {"schemas": [PATCH], "Operations": ops}


async def _big_user(http: httpx.AsyncClient, directory: DirectoryFixture, values: int) -> str:
    """A user with ``values`` emails (the most allowed); its URL."""
    emails = [{"value": f"e{i}@a.test", "type": "work"} for i in range(values)]
    created = await http.post(
        f"{directory.path}/Users", json={"userName": "big@a.test", "emails": emails}, headers=directory.headers
    )
    assert created.status_code == 201, created.text
    return f"{directory.path}/Users/{created.json()['id']}"


async def test_largest_patch_is_applied_in_a_worker_process(
    gateway: tuple[Starlette, httpx.AsyncClient, DirectoryFixture], settings: Settings
) -> None:
    application, http, directory = gateway
    costly: CostlyWork = application.state.costly_work
    values = settings.scim_max_multi_values
    url = await _big_user(http, directory, values)
    runs = costly.runs
    patched = await http.patch(
        url, json=_worst_patch(settings.scim_max_patch_operations, values), headers=directory.headers
    )
    assert patched.status_code == 200, patched.text
    assert costly.runs == runs + 1
    assert [e["type"] for e in patched.json()["emails"]] == [f"t{i}" for i in range(values)]
    stored = (await http.get(url, headers=directory.headers)).json()
    assert stored["emails"] == patched.json()["emails"]

    # A refusal raised in the worker comes back as the same SCIM error, nothing written.
    too_many = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "emails", "value": [{"value": "n@a.test"}]}]}
    too_many["Operations"] += _worst_patch(50, values)["Operations"]
    refused = await http.patch(url, json=too_many, headers=directory.headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["scimType"] == "invalidValue"
    assert "at most 100 values" in refused.json()["detail"]
    assert costly.runs == runs + 2
    assert (await http.get(url, headers=directory.headers)).json()["emails"] == stored["emails"]


async def test_costly_query_answers_the_same_from_a_worker_process(
    gateway: tuple[Starlette, httpx.AsyncClient, DirectoryFixture],
) -> None:
    application, http, directory = gateway
    costly: CostlyWork = application.state.costly_work
    ids = []
    for i in range(5):
        response = await http.post(
            f"{directory.path}/Users", json={"userName": f"u{i}@a.test"}, headers=directory.headers
        )
        ids.append(response.json()["id"])
    for g in range(3):
        group = {"displayName": f"G{g}", "members": [{"value": user_id} for user_id in ids[g:]]}
        assert (await http.post(f"{directory.path}/Groups", json=group, headers=directory.headers)).status_code == 201
    database = application.state.database
    key = (
        await database.transaction(lambda s: api_keys.create_api_key(s, organization_id=directory.organization_id))
    ).key
    body = {"query": COSTLY, "variables": {"id": directory.id}}
    headers = {"Authorization": f"Bearer {key}"}
    runs = costly.runs
    remote = await http.post("/graphql", json=body, headers=headers)
    assert remote.status_code == 200 and "errors" not in remote.json(), remote.text
    assert costly.runs == runs + 1 and costly.fallbacks == 0
    for pid in list(costly._pool._processes):  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
    for _ in range(2):  # the job the dead worker held is executed here; the next one by its replacement
        assert (await http.post("/graphql", json=body, headers=headers)).json() == remote.json()
    costly.stop()  # no pool: the store's reader threads answer
    local = await http.post("/graphql", json=body, headers=headers)
    assert costly.runs == runs + 3 and costly.fallbacks == 1
    assert remote.json() == local.json()
    assert remote.json()["data"]["directory"]["groups"]["edges"][2]["node"]["m1"]["totalCount"] == 3


async def test_a_killed_worker_costs_no_request(
    gateway: tuple[Starlette, httpx.AsyncClient, DirectoryFixture], settings: Settings
) -> None:
    application, http, directory = gateway
    costly: CostlyWork = application.state.costly_work
    values = settings.scim_max_multi_values
    url = await _big_user(http, directory, values)
    patch = _worst_patch(20, values)
    assert (await http.patch(url, json=patch, headers=directory.headers)).status_code == 200
    for pid in list(costly._pool._processes):  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
    for _ in range(3):
        assert (await http.patch(url, json=patch, headers=directory.headers)).status_code == 200
    assert costly.started


def _priority_of_a_child(nice: int) -> tuple[int, bool, str]:
    """A forked child's nice level, whether it leads a session of its own, and its autogroup, after
    ``_lower_priority(nice)``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once
        try:
            _lower_priority(nice)
            autogroup = ""
            if os.path.exists("/proc/self/autogroup"):
                with open("/proc/self/autogroup") as file:
                    autogroup = file.read().strip()
            report = f"{os.getpriority(os.PRIO_PROCESS, 0)}|{os.getsid(0) == os.getpid()}|{autogroup}"
            os.write(write, report.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        level, leader, autogroup = pipe.read().split("|")
    os.waitpid(pid, 0)
    return int(level), leader == "True", autogroup


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_worker_runs_below_the_server_in_a_group_of_its_own() -> None:
    level, leader, autogroup = _priority_of_a_child(10)
    assert level == max(10, os.getpriority(os.PRIO_PROCESS, 0))
    assert leader  # its own session: the server's CPU share is not what the worker spends
    if autogroup:  # Linux with autogroup scheduling built in: the group is niced too
        assert autogroup.endswith("nice 10")
    level, leader, _ = _priority_of_a_child(0)  # DSYNC_COSTLY_NICE=0: as the server, in its session
    assert level == os.getpriority(os.PRIO_PROCESS, 0) and not leader


class _Overlap:
    """How many jobs of each owner ran at once, at most (jobs on threads: ``DSYNC_COSTLY_WORKERS=0``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}

    def job(self, owner: str) -> str:
        with self._lock:
            self.running[owner] = self.running.get(owner, 0) + 1
            self.most[owner] = max(self.most.get(owner, 0), self.running[owner])
            self.most["all"] = max(self.most.get("all", 0), sum(self.running.values()))
        time.sleep(0.05)
        with self._lock:
            self.running[owner] -= 1
        return owner


async def test_one_owner_has_one_job_at_a_time(settings: Settings) -> None:
    costly = CostlyWork(dataclasses.replace(settings, costly_workers=0))
    overlap = _Overlap()
    jobs = [costly.run(overlap.job, owner, owner=owner) for owner in ("org_a", "org_a", "org_a", "org_b")]
    assert await asyncio.gather(*jobs) == ["org_a", "org_a", "org_a", "org_b"]
    assert overlap.most["org_a"] == 1 and overlap.most["org_b"] == 1
    assert overlap.most["all"] == 2  # another owner's job did not wait for org_a's
    assert costly._owners == {}  # nothing kept for owners with nothing to run
    unowned = [costly.run(overlap.job, "anyone") for _ in range(2)]
    await asyncio.gather(*unowned)
    assert overlap.most["anyone"] == 2
