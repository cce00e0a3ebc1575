"""No tenant can slow another down or change its data: tenant A sends the worst each SCIM limit allows (the largest
PATCH on the largest resource, a flood with a wrong token, bodies nested too deep, PATCHes over the limits) while
tenant B provisions and reads as usual. Every B request succeeds, every over-limit A request is refused, nothing
answers 5xx and B's data is exactly what B sent. (``bench/noisy_neighbour.py`` measures B's latency meanwhile.)"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory

pytestmark = pytest.mark.slow

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, DirectoryFixture, DirectoryFixture]]:
    application = create_app(dataclasses.replace(settings, scim_unauthenticated_rate_limit=1))
    async with application.router.lifespan_context(application):
        database = application.state.database
        tenant_a = await make_directory(database, name="A")
        tenant_b = await make_directory(database, name="B")
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL, timeout=60) as http:
            yield http, tenant_a, tenant_b


def worst_patch(operations: int, values: int) -> dict[str, Any]:
    """As many operations as allowed, each one a filter no index narrows (a scan of every value)."""
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": f'emails[value co "e{i % values}@"].type', "value": f"t{i}"}
        for i in range(operations)
    ]
    return {"schemas": [PATCH], "Operations": ops}


def deep_body(depth: int) -> bytes:
    return b'{"userName": "deep@a.test", "x": ' + b"[" * depth + b"]" * depth + b"}"


async def test_tenant_a_at_its_worst_changes_nothing_for_tenant_b(
    gateway: tuple[httpx.AsyncClient, DirectoryFixture, DirectoryFixture], settings: Settings
) -> None:
    http, a, b = gateway
    values, operations = settings.scim_max_multi_values, settings.scim_max_patch_operations
    emails = [{"value": f"e{i}@a.test", "type": "work"} for i in range(values)]
    big = await http.post(f"{a.path}/Users", json={"userName": "big@a.test", "emails": emails}, headers=a.headers)
    assert big.status_code == 201
    big_url = f"{a.path}/Users/{big.json()['id']}"
    assert (await http.get(f"{b.path}/Users", headers=b.headers)).status_code == 200  # B is known before the flood
    wrong = {**a.headers, "Authorization": "Bearer dsync_scim_wrong"}
    over_ops = worst_patch(operations + 1, values)
    over_values = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "emails", "value": [{"value": "n@a"}]}]}
    b_statuses: list[int] = []
    a_statuses: dict[str, list[int]] = {"worst": [], "flood": [], "deep": [], "over": []}
    done = asyncio.Event()

    async def attack(kind: str, send: Any) -> None:
        while not done.is_set():
            a_statuses[kind].append((await send()).status_code)
            # In process, the attacker's client shares the server's event loop: a refusal answered at once would
            # otherwise turn the loop into a spin the real network never allows.
            await asyncio.sleep(0.005)

    attackers = [
        asyncio.ensure_future(
            attack("worst", lambda: http.patch(big_url, json=worst_patch(operations, values), headers=a.headers))
        ),
        asyncio.ensure_future(
            attack("flood", lambda: http.post(f"{b.path}/Users", json={"userName": "x@b.test"}, headers=wrong))
        ),
        asyncio.ensure_future(
            attack("deep", lambda: http.post(f"{a.path}/Users", content=deep_body(300), headers=a.headers))
        ),
        asyncio.ensure_future(attack("over", lambda: http.patch(big_url, json=over_ops, headers=a.headers))),
        asyncio.ensure_future(attack("over", lambda: http.patch(big_url, json=over_values, headers=a.headers))),
    ]
    created: list[str] = []
    for i in range(40):
        body = {"userName": f"b{i}@b.test", "name": {"givenName": f"B{i}"}, "emails": [{"value": f"b{i}@b.test"}]}
        response = await http.post(f"{b.path}/Users", json=body, headers=b.headers)
        b_statuses.append(response.status_code)
        created.append(response.json()["id"])
        listed = await http.get(f"{b.path}/Users", params={"filter": f'userName eq "b{i}@b.test"'}, headers=b.headers)
        b_statuses.append(listed.status_code)
    done.set()
    await asyncio.gather(*attackers)

    assert set(b_statuses) == {200, 201}
    assert a_statuses["worst"] and set(a_statuses["worst"]) == {200}
    assert set(a_statuses["flood"]) <= {401, 429} and 429 in a_statuses["flood"]
    assert a_statuses["deep"] and set(a_statuses["deep"]) == {400}
    assert a_statuses["over"] and set(a_statuses["over"]) == {400}
    listed = (await http.get(f"{b.path}/Users", params={"count": 100}, headers=b.headers)).json()
    assert listed["totalResults"] == 40
    assert sorted(u["id"] for u in listed["Resources"]) == sorted(created)
    assert {u["userName"] for u in listed["Resources"]} == {f"b{i}@b.test" for i in range(40)}
    assert len((await http.get(big_url, headers=a.headers)).json()["emails"]) == values
