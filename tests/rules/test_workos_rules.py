"""The WorkOS-compatible REST API carries roles and custom attributes as WorkOS shapes them: ``role: {slug}``,
``roles: [{slug}]`` and ``custom_attributes`` on directory users and on the events about them."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.ops import roles
from tests.conftest import DirectoryFixture
from tests.gateway.test_graphql import api_key
from tests.rules.helpers import CORE, ENTERPRISE, GROUP, post, run, settled


async def test_directory_users_and_events(client: httpx.AsyncClient, app: Any, directory: DirectoryFixture) -> None:
    org = directory.organization_id
    key = await api_key(app, org)
    headers = {"Authorization": f"Bearer {key}"}
    await run(
        app, lambda s: roles.create_role(s, organization_id=org, slug="member", name="Member", default=True, scope=None)
    )
    await run(app, lambda s: roles.create_role(s, organization_id=org, slug="admin", name="Admin", scope=None))
    body = {
        "schemas": [CORE, ENTERPRISE],
        "userName": "ada@acme.test",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        ENTERPRISE: {"department": "R&D", "costCenter": "42"},
    }
    ada = await post(client, directory, "Users", body)
    group = await post(
        client, directory, "Groups", {"schemas": [GROUP], "displayName": "Admins", "members": [{"value": ada["id"]}]}
    )
    await run(
        app, lambda s: roles.map_group(s, directory_id=directory.id, group_id=group["id"], role="admin", scope=None)
    )
    await settled(app)

    user = (await client.get(f"/workos/directory_users/{ada['id']}", headers=headers)).json()
    assert user["role"] == {"slug": "admin"} and user["roles"] == [{"slug": "admin"}]
    assert user["custom_attributes"] == {"department": "R&D", "cost_center": "42"}
    listed = (await client.get("/workos/directory_users", params={"directory": directory.id}, headers=headers)).json()
    assert [u["role"] for u in listed["data"]] == [{"slug": "admin"}]

    events = (await client.get("/workos/events", params={"events": "dsync.user.updated"}, headers=headers)).json()
    [updated] = events["data"]
    assert updated["data"]["role"] == {"slug": "admin"}
    assert updated["data"]["previous_attributes"] == {"role": {"slug": "member"}, "roles": [{"slug": "member"}]}
