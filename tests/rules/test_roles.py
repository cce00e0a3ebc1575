"""Roles from IdP groups, over real SCIM traffic on both stores: the default role, Okta group push mapped to roles,
re-mapping in the background, priorities and ties, membership changes, a mapped group deleted, deprovisioning under
each policy, and the exact events."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.ops import directories, roles, rule_evaluation
from gateway.ops.inputs import InvalidInput, NotFound
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory
from tests.rules.helpers import (
    CORE,
    GROUP,
    event_count,
    events_after,
    patch,
    post,
    run,
    send,
    settled,
    user_roles,
)


def okta_user(first: str) -> dict[str, Any]:
    email = f"{first.lower()}@acme.test"
    return {
        "schemas": [CORE],
        "userName": email,
        "name": {"givenName": first, "familyName": "Test"},
        "emails": [{"primary": True, "value": email, "type": "work"}],
        "displayName": f"{first} Test",
        "externalId": f"00u{first.lower()}",
        "groups": [],
        "password": "tI3hj5Ck",
        "active": True,
    }


async def okta_push(client: httpx.AsyncClient, directory: DirectoryFixture, name: str, members: list[str]) -> str:
    """Okta's Push Groups: the group created empty, then its members by PATCH with the id and name re-asserted."""
    group = await post(client, directory, "Groups", {"schemas": [GROUP], "displayName": name, "members": []})
    operations: list[dict[str, Any]] = [
        {"op": "replace", "value": {"id": group["id"], "displayName": name}},
        {"op": "add", "path": "members", "value": [{"value": m} for m in members]},
    ]
    await send(client, directory, "PATCH", f"Groups/{group['id']}", patch(*operations))
    return str(group["id"])


@pytest.fixture
async def okta(app: Any) -> DirectoryFixture:
    return await make_directory(app.state.database, type="okta", name="Okta")


async def _roles(app: Any, directory: DirectoryFixture) -> None:
    org = directory.organization_id
    await run(
        app, lambda s: roles.create_role(s, organization_id=org, slug="member", name="Member", default=True, scope=None)
    )
    await run(app, lambda s: roles.create_role(s, organization_id=org, slug="admin", name="Admin", scope=None))
    await run(app, lambda s: roles.create_role(s, organization_id=org, slug="billing", name="Billing", scope=None))


def _role_change(data: dict[str, Any]) -> tuple[str, Any, list[str], Any, list[str]]:
    previous = data["previous_attributes"]
    return (
        data["id"],
        data["role"] and data["role"]["slug"],
        [r["slug"] for r in data["roles"]],
        previous["role"] and previous["role"]["slug"],
        [r["slug"] for r in previous["roles"]],
    )


async def test_okta_group_push_mapped_to_roles(client: httpx.AsyncClient, app: Any, okta: DirectoryFixture) -> None:
    await _roles(app, okta)
    ada, bob, cy = [await post(client, okta, "Users", okta_user(n)) for n in ("Ada", "Bob", "Cy")]
    # A new user is in no group: the default role.
    assert await user_roles(app, ada["id"]) == ("member", ["member"], {})
    admins = await okta_push(client, okta, "Engineering Admins", [ada["id"], bob["id"]])
    before = await event_count(app, okta)

    # Mapping the group re-evaluates its members in the background: one event per member whose role changed.
    await run(
        app, lambda s: roles.map_group(s, directory_id=okta.id, group_id=admins, role="admin", priority=10, scope=None)
    )
    await settled(app)
    log = await events_after(app, okta, before)
    assert [name for name, _ in log] == ["dsync.user.updated", "dsync.user.updated"]
    assert sorted(_role_change(d) for _, d in log) == sorted(
        [(u["id"], "admin", ["admin"], "member", ["member"]) for u in (ada, bob)]
    )
    assert set(log[0][1]["previous_attributes"]) == {"role", "roles"}
    assert await user_roles(app, cy["id"]) == ("member", ["member"], {})

    # The same mapping again: nothing to re-evaluate, no event.
    before = await event_count(app, okta)
    await run(
        app, lambda s: roles.map_group(s, directory_id=okta.id, group_id=admins, role="admin", priority=10, scope=None)
    )
    await settled(app)
    assert await events_after(app, okta, before) == []

    # Joining the mapped group: the membership event, then the role change, in the same request.
    before = await event_count(app, okta)
    add = patch({"op": "add", "path": "members", "value": [{"value": cy["id"]}]})
    await send(client, okta, "PATCH", f"Groups/{admins}", add)
    log = await events_after(app, okta, before)
    assert [name for name, _ in log] == ["dsync.group.user_added", "dsync.user.updated"]
    assert _role_change(log[1][1]) == (cy["id"], "admin", ["admin"], "member", ["member"])

    # Leaving it: back to the default role.
    before = await event_count(app, okta)
    remove = patch({"op": "remove", "path": f'members[value eq "{cy["id"]}"]'})
    await send(client, okta, "PATCH", f"Groups/{admins}", remove)
    log = await events_after(app, okta, before)
    assert [name for name, _ in log] == ["dsync.group.user_removed", "dsync.user.updated"]
    assert _role_change(log[1][1]) == (cy["id"], "member", ["member"], "admin", ["admin"])

    # Re-mapping the group to another role: its members change, nobody else.
    before = await event_count(app, okta)
    await run(app, lambda s: roles.map_group(s, directory_id=okta.id, group_id=admins, role="billing", scope=None))
    await settled(app)
    log = await events_after(app, okta, before)
    assert sorted(_role_change(d) for _, d in log) == sorted(
        [(u["id"], "billing", ["billing"], "admin", ["admin"]) for u in (ada, bob)]
    )

    # Unmapping: back to the default.
    before = await event_count(app, okta)
    await run(app, lambda s: roles.unmap_group(s, directory_id=okta.id, group_id=admins, scope=None))
    await settled(app)
    log = await events_after(app, okta, before)
    assert sorted(_role_change(d) for _, d in log) == sorted(
        [(u["id"], "member", ["member"], "billing", ["billing"]) for u in (ada, bob)]
    )


async def test_priorities_and_ties(client: httpx.AsyncClient, app: Any, okta: DirectoryFixture) -> None:
    await _roles(app, okta)
    ada = await post(client, okta, "Users", okta_user("Ada"))
    first = await okta_push(client, okta, "Billing", [ada["id"]])
    second = await okta_push(client, okta, "Admins", [ada["id"]])
    await run(
        app, lambda s: roles.map_group(s, directory_id=okta.id, group_id=first, role="billing", priority=5, scope=None)
    )
    await run(
        app, lambda s: roles.map_group(s, directory_id=okta.id, group_id=second, role="admin", priority=5, scope=None)
    )
    await settled(app)
    # A tie: the lower slug first.
    assert await user_roles(app, ada["id"]) == ("admin", ["admin", "billing"], {})
    await run(
        app, lambda s: roles.map_group(s, directory_id=okta.id, group_id=first, role="billing", priority=6, scope=None)
    )
    await settled(app)
    assert await user_roles(app, ada["id"]) == ("billing", ["billing", "admin"], {})
    # The mapped group deleted (Okta unpushes it): the member's roles recomputed in the same request.
    before = await event_count(app, okta)
    await send(client, okta, "DELETE", f"Groups/{first}")
    log = await events_after(app, okta, before)
    assert [name for name, _ in log] == ["dsync.group.deleted", "dsync.user.updated"]
    assert _role_change(log[1][1]) == (ada["id"], "admin", ["admin"], "billing", ["billing", "admin"])


@pytest.mark.parametrize("policy", ["keep_inactive", "delete_inactive"])
async def test_deprovisioning(client: httpx.AsyncClient, app: Any, okta: DirectoryFixture, policy: str) -> None:
    await run(app, lambda s: directories.set_deprovision_policy(s, directory_id=okta.id, policy=policy))
    await _roles(app, okta)
    ada = await post(client, okta, "Users", okta_user("Ada"))
    admins = await okta_push(client, okta, "Admins", [ada["id"]])
    await run(app, lambda s: roles.map_group(s, directory_id=okta.id, group_id=admins, role="admin", scope=None))
    await settled(app)
    before = await event_count(app, okta)
    deactivate = patch({"op": "replace", "value": {"active": False}})
    await send(client, okta, "PATCH", f"Users/{ada['id']}", deactivate)
    log = await events_after(app, okta, before)
    if policy == "delete_inactive":
        assert [name for name, _ in log] == ["dsync.user.deleted"]
        assert log[0][1]["state"] == "inactive" and log[0][1]["role"] is None
        return
    # Kept inactive: no role any more; the one event says so with the state.
    assert [name for name, _ in log] == ["dsync.user.updated"]
    data = log[0][1]
    assert (data["state"], data["role"], data["roles"]) == ("inactive", None, [])
    assert data["previous_attributes"]["role"] == {"slug": "admin"}
    assert data["previous_attributes"]["roles"] == [{"slug": "admin"}]
    # Reactivated: its groups give its role back.
    before = await event_count(app, okta)
    await send(client, okta, "PATCH", f"Users/{ada['id']}", patch({"op": "replace", "value": {"active": True}}))
    [(name, data)] = await events_after(app, okta, before)
    assert (name, data["role"], data["previous_attributes"]["role"]) == ("dsync.user.updated", {"slug": "admin"}, None)


async def test_default_role_changes(client: httpx.AsyncClient, app: Any, okta: DirectoryFixture) -> None:
    org = okta.organization_id
    ada = await post(client, okta, "Users", okta_user("Ada"))
    # No roles defined: no role, and user events say so.
    assert await user_roles(app, ada["id"]) == (None, [], {})
    before = await event_count(app, okta)
    member = await run(
        app, lambda s: roles.create_role(s, organization_id=org, slug="member", name="Member", default=True, scope=None)
    )
    await settled(app)
    [(name, data)] = await events_after(app, okta, before)
    assert _role_change(data) == (ada["id"], "member", ["member"], None, [])
    # Deleting the default role: nobody has a role again.
    before = await event_count(app, okta)
    await run(app, lambda s: roles.delete_role(s, role_id=member.id, scope=None))
    await settled(app)
    [(name, data)] = await events_after(app, okta, before)
    assert _role_change(data) == (ada["id"], None, [], "member", ["member"])


async def test_role_inputs_and_scope(app: Any, okta: DirectoryFixture) -> None:
    org = okta.organization_id
    other = await make_directory(app.state.database, name="Other")
    with pytest.raises(InvalidInput):
        await run(app, lambda s: roles.create_role(s, organization_id=org, slug="Not A Slug", name="x", scope=None))
    await run(app, lambda s: roles.create_role(s, organization_id=org, slug="admin", name="Admin", scope=None))
    with pytest.raises(InvalidInput):
        await run(app, lambda s: roles.create_role(s, organization_id=org, slug="admin", name="Again", scope=None))
    # Another organization's key sees none of it.
    with pytest.raises(NotFound):
        await run(app, lambda s: roles.list_roles(s, organization_id=org, scope=other.organization_id))
    with pytest.raises(NotFound):
        await run(app, lambda s: roles.list_role_mappings(s, directory_id=okta.id, scope=other.organization_id))
    # A role of another organization cannot be mapped.
    with pytest.raises(NotFound):
        await run(
            app,
            lambda s: roles.map_group(s, directory_id=other.id, group_id="directory_group_x", role="admin", scope=None),
        )


@pytest.fixture
async def woken_app(settings: Any) -> AsyncIterator[Any]:
    """An app whose evaluator never polls (a minute) and works two users per transaction: a mapping change must
    wake it, and a group's members are walked in chunks."""
    tuned = dataclasses.replace(settings, rule_evaluation_poll_seconds=60.0, rule_evaluation_chunk=2)
    application = create_app(tuned)
    async with application.router.lifespan_context(application):
        yield application


async def test_a_change_wakes_the_evaluator_and_big_groups_go_in_chunks(
    woken_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = woken_app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        okta = await make_directory(app.state.database, type="okta", name="Okta")
        await _roles(app, okta)
        users = [await post(client, okta, "Users", okta_user(n)) for n in ("Ada", "Bob", "Cy", "Dee", "Eve")]
        group = await okta_push(client, okta, "Admins", [u["id"] for u in users[:4]])
        before = await event_count(app, okta)
        started = time.monotonic()
        await run(app, lambda s: roles.map_group(s, directory_id=okta.id, group_id=group, role="admin", scope=None))
        await settled(app)
        assert time.monotonic() - started < 30  # woken at once, not at the next minute's look
        log = await events_after(app, okta, before)
        assert sorted(d["id"] for _, d in log) == sorted(u["id"] for u in users[:4])
        assert app.state.rule_evaluator.changed == 4

        # A big mapped group deleted: the deletion stays quick, its members are re-evaluated in the background.
        monkeypatch.setattr(rule_evaluation, "INLINE_LIMIT", 2)
        before = await event_count(app, okta)
        await send(client, okta, "DELETE", f"Groups/{group}")
        await settled(app)
        log = await events_after(app, okta, before)
        assert [name for name, _ in log] == ["dsync.group.deleted"] + ["dsync.user.updated"] * 4
        assert all(_role_change(d)[1:] == ("member", ["member"], "admin", ["admin"]) for _, d in log[1:])
