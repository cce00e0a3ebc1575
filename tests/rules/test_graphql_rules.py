"""Roles and custom attribute rules through GraphQL: queries, the nine mutations, DirectoryUser.role/roles/
customAttributes, users filtered by role, event users' roles, and organization keys scoped to their own rules."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import DirectoryFixture, make_directory
from tests.gateway.test_graphql import api_key, codes, gql
from tests.rules.helpers import GROUP, post, settled

ROLE = "id slug name isDefault"
MAPPING = "id groupId groupName role priority"


async def _admin(app: Any) -> str:
    return await api_key(app, None)


async def test_rules_through_graphql(client: httpx.AsyncClient, app: Any, directory: DirectoryFixture) -> None:
    org = directory.organization_id
    key = await api_key(app, org)  # an organization key manages its own organization's rules
    users = [
        await post(client, directory, "Users", {"userName": f"u{i}@acme.test", "name": {"givenName": f"U{i}"}})
        for i in range(3)
    ]
    group = await post(
        client,
        directory,
        "Groups",
        {"schemas": [GROUP], "displayName": "Admins", "members": [{"value": users[0]["id"]}]},
    )

    created = await gql(
        client,
        'mutation($o: ID!) { createRole(organizationId: $o, slug: "member", name: "Member", isDefault: true)'
        f" {{ {ROLE} }} }}",
        key,
        {"o": org},
    )
    assert created["data"]["createRole"]["isDefault"] is True
    admin = await gql(
        client,
        f'mutation($o: ID!) {{ createRole(organizationId: $o, slug: "admin", name: "Admin") {{ {ROLE} }} }}',
        key,
        {"o": org},
    )
    admin_id = admin["data"]["createRole"]["id"]
    renamed = await gql(
        client, 'mutation($id: ID!) { updateRole(id: $id, name: "Administrators") { name } }', key, {"id": admin_id}
    )
    assert renamed["data"]["updateRole"]["name"] == "Administrators"
    mapped = await gql(
        client,
        'mutation($d: ID!, $g: ID!) { mapGroupToRole(directoryId: $d, groupId: $g, role: "admin", priority: 3)'
        f" {{ {MAPPING} }} }}",
        key,
        {"d": directory.id, "g": group["id"]},
    )
    assert mapped["data"]["mapGroupToRole"]["groupName"] == "Admins"
    await settled(app)

    listed = await gql(
        client,
        f"query($o: ID!, $d: ID!) {{ roles(organizationId: $o) {{ slug name }}"
        f" roleMappings(directoryId: $d) {{ {MAPPING} }} }}",
        key,
        {"o": org, "d": directory.id},
    )
    assert [r["slug"] for r in listed["data"]["roles"]] == ["admin", "member"]
    assert [(m["groupId"], m["role"], m["priority"]) for m in listed["data"]["roleMappings"]] == [
        (group["id"], "admin", 3)
    ]

    # Users carry their role, and can be filtered by it.
    query = (
        'query($d: ID!) { directory(id: $d) { users(role: "admin")'
        " { edges { node { id role roles customAttributes } } } } }"
    )
    page = await gql(client, query, key, {"d": directory.id})
    [edge] = page["data"]["directory"]["users"]["edges"]
    assert edge["node"] == {"id": users[0]["id"], "role": "admin", "roles": ["admin"], "customAttributes": {}}
    one = await gql(client, "query($id: ID!) { directoryUser(id: $id) { role roles } }", key, {"id": users[1]["id"]})
    assert one["data"]["directoryUser"] == {"role": "member", "roles": ["member"]}

    # The events show the role change.
    events = await gql(
        client,
        'query($d: ID!) { events(directoryId: $d, events: ["dsync.user.updated"])'
        " { edges { node { user { id role roles } } } } }",
        key,
        {"d": directory.id},
    )
    changed = [e["node"]["user"] for e in events["data"]["events"]["edges"]]
    assert {"id": users[0]["id"], "role": "admin", "roles": ["admin"]} in changed

    # Attributes.
    defined = await gql(
        client,
        'mutation($o: ID!) { defineAttribute(organizationId: $o, name: "badge") { name standard } }',
        key,
        {"o": org},
    )
    assert defined["data"]["defineAttribute"] == {"name": "badge", "standard": False}
    path = "urn:vendor:ext:User:badge"
    mapping = await gql(
        client,
        'mutation($d: ID!, $p: String) { mapAttribute(directoryId: $d, name: "badge", path: $p) { name path source } }',
        key,
        {"d": directory.id, "p": path},
    )
    assert mapping["data"]["mapAttribute"] == {"name": "badge", "path": path, "source": "CUSTOM"}
    rules = await gql(
        client,
        "query($o: ID!, $d: ID!) { attributeDefinitions(organizationId: $o) { name standard }"
        " attributeMappings(directoryId: $d) { name path source } }",
        key,
        {"o": org, "d": directory.id},
    )
    assert {"name": "badge", "standard": False} in rules["data"]["attributeDefinitions"]
    assert {
        "name": "department",
        "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "source": "DEFAULT",
    } in rules["data"]["attributeMappings"]
    reset = await gql(
        client,
        'mutation($d: ID!) { resetAttributeMapping(directoryId: $d, name: "badge") { source } }',
        key,
        {"d": directory.id},
    )
    assert reset["data"]["resetAttributeMapping"]["source"] == "NONE"
    deleted = await gql(
        client, 'mutation($o: ID!) { deleteAttributeDefinition(organizationId: $o, name: "badge") }', key, {"o": org}
    )
    assert deleted["data"]["deleteAttributeDefinition"] is True

    unmapped = await gql(
        client,
        "mutation($d: ID!, $g: ID!) { unmapGroup(directoryId: $d, groupId: $g) { id } }",
        key,
        {"d": directory.id, "g": group["id"]},
    )
    assert unmapped["data"]["unmapGroup"]["id"] == group["id"]
    gone = await gql(client, "mutation($id: ID!) { deleteRole(id: $id) { id } }", key, {"id": admin_id})
    assert gone["data"]["deleteRole"]["id"] == admin_id

    # Bad input is BAD_USER_INPUT, never a 500.
    bad = await gql(
        client,
        'mutation($o: ID!) { createRole(organizationId: $o, slug: "Not a slug", name: "x") { id } }',
        key,
        {"o": org},
    )
    assert codes(bad) == ["BAD_USER_INPUT"]
    bad_path = await gql(
        client,
        'mutation($d: ID!) { mapAttribute(directoryId: $d, name: "department", path: "a[b") { name } }',
        key,
        {"d": directory.id},
    )
    assert codes(bad_path) == ["BAD_USER_INPUT"]


async def test_other_organizations_rules_look_missing(
    client: httpx.AsyncClient, app: Any, directory: DirectoryFixture
) -> None:
    other = await make_directory(app.state.database, name="Other")
    key = await api_key(app, other.organization_id)
    org, d = directory.organization_id, directory.id
    for document, variables in [
        ("query($o: ID!) { roles(organizationId: $o) { id } }", {"o": org}),
        ("query($d: ID!) { roleMappings(directoryId: $d) { id } }", {"d": d}),
        ("query($o: ID!) { attributeDefinitions(organizationId: $o) { name } }", {"o": org}),
        ("query($d: ID!) { attributeMappings(directoryId: $d) { name } }", {"d": d}),
        ('mutation($o: ID!) { createRole(organizationId: $o, slug: "x", name: "X") { id } }', {"o": org}),
        ('mutation($d: ID!) { mapAttribute(directoryId: $d, name: "department", path: "title") { name } }', {"d": d}),
        ('mutation($o: ID!) { defineAttribute(organizationId: $o, name: "x") { name } }', {"o": org}),
    ]:
        assert codes(await gql(client, document, key, variables)) == ["NOT_FOUND"], document


@pytest.mark.parametrize(
    "document",
    [
        '{ roles(organizationId: "org_x") { id } }',
        '{ roleMappings(directoryId: "directory_x") { id } }',
        'mutation { createRole(organizationId: "org_x", slug: "a", name: "A") { id } }',
        'mutation { mapGroupToRole(directoryId: "directory_x", groupId: "g", role: "a") { id } }',
        'mutation { mapAttribute(directoryId: "directory_x", name: "department", path: "title") { name } }',
    ],
)
async def test_rules_need_an_api_key(client: httpx.AsyncClient, document: str) -> None:
    assert codes(await gql(client, document, None)) == ["UNAUTHENTICATED"]
