"""Tenant isolation matrix: every SCIM route with every other directory's token and ids, every GraphQL root field
with another organization's key, and subscriptions over a real server. A foreign object answers exactly like a
missing one, nothing leaks, nothing changes.

Tenants: organization A with directories A1 and A2 (neighbours inside one organization), organization B with B1,
and B2 which has never been called with its own token (it must stay unlinked)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy import select, text
from sqlmodel import SQLModel, col

from gateway.app import create_app
from gateway.graphql.schema import schema
from gateway.ops import api_keys, directories, organizations, setup_links, webhook_endpoints
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.ids import new_id
from gateway.store.models import Event
from tests.conftest import PUBLIC_URL, DirectoryFixture

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"

_TALLY: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_tally() -> Iterator[None]:
    yield
    print(f"\nisolation cases tried: {sum(_TALLY.values())} ({_TALLY})")


def _count(request: pytest.FixtureRequest, cases: int = 1) -> None:
    _TALLY[request.node.name] = _TALLY.get(request.node.name, 0) + cases


# -- tenants ------------------------------------------------------------------------------------------------------


@dataclass
class Tenant:
    directory: DirectoryFixture
    user: str = ""
    group: str = ""
    user_name: str = ""

    @property
    def name(self) -> str:
        return self.user_name.split("@")[0]


async def _directory(database: Database, organization_id: str, name: str) -> DirectoryFixture:
    issued = await database.transaction(
        lambda session: directories.create_directory(
            session, organization_id=organization_id, name=name, type="okta", public_url=PUBLIC_URL
        )
    )
    return DirectoryFixture(
        id=issued.directory.id, organization_id=organization_id, token=issued.bearer_token, endpoint=issued.endpoint
    )


async def _seed(client: httpx.AsyncClient, tenant: Tenant, label: str) -> None:
    """A user with a name only this directory has, another named like every directory's, and a group of both."""
    d = tenant.directory
    tenant.user_name = f"only-{label}@acme.test"
    body = {"userName": tenant.user_name, "externalId": f"ext-{label}", "displayName": f"Only {label}"}
    tenant.user = (await client.post(f"{d.path}/Users", json=body, headers=d.headers)).json()["id"]
    common = (await client.post(f"{d.path}/Users", json={"userName": "ada@acme.test"}, headers=d.headers)).json()
    group = {
        "displayName": f"Group {label}",
        "externalId": f"gext-{label}",
        "members": [{"value": tenant.user}, {"value": common["id"]}],
    }
    tenant.group = (await client.post(f"{d.path}/Groups", json=group, headers=d.headers)).json()["id"]


@pytest.fixture
async def tenants(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    database: Database = app.state.database
    org_a = await database.transaction(lambda s: organizations.create_organization(s, name="A", domains=["a.test"]))
    org_b = await database.transaction(lambda s: organizations.create_organization(s, name="B", domains=["b.test"]))
    found = {
        "A1": Tenant(await _directory(database, org_a.id, "A1")),
        "A2": Tenant(await _directory(database, org_a.id, "A2")),
        "B1": Tenant(await _directory(database, org_b.id, "B1")),
        "B2": Tenant(await _directory(database, org_b.id, "B2")),  # never called with its own token
    }
    for label in ("A1", "A2", "B1"):
        await _seed(client, found[label], label)
    keys = {}
    for organization_id in (org_a.id, org_b.id):
        keys[organization_id] = await database.transaction(
            lambda s, o=organization_id: api_keys.create_api_key(s, organization_id=o)  # type: ignore[misc]
        )
    hooks = {}
    for organization_id in (org_a.id, org_b.id):
        issued = await database.transaction(
            lambda s, o=organization_id: webhook_endpoints.create_webhook_endpoint(  # type: ignore[misc]
                s, url="https://hooks.example.com/dsync", organization_id=o
            )
        )
        hooks[organization_id] = issued.endpoint.id
    links = {}
    for label in ("A1", "B1"):
        directory = found[label].directory
        link = await database.transaction(
            lambda s, d=directory.id: setup_links.create_setup_link(s, directory_id=d)  # type: ignore[misc]
        )
        links[directory.organization_id] = link.link.id
    return {"tenants": found, "orgs": {"A": org_a.id, "B": org_b.id}, "keys": keys, "hooks": hooks, "links": links}


# Bookkeeping that requests write by design, whoever sends them: the request log and its error counts, when a key
# was last used, when a wrong token last reached a directory (tests/gateway/test_request_log.py checks it tells the
# caller nothing).
_BOOKKEEPING_TABLES = {"scim_requests", "scim_error_counts"}
_BOOKKEEPING_COLUMNS = {"last_used_at", "last_rejected_token_at"}


async def snapshot(database: Database) -> list[list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order (request bookkeeping aside)."""
    tables = []
    async with database.read() as session:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in _BOOKKEEPING_TABLES:
                continue
            columns = [column for column in table.columns if column.name not in _BOOKKEEPING_COLUMNS]
            rows = await session.execute(select(*columns).order_by(*table.primary_key.columns))
            tables.append([tuple(row) for row in rows])
    return tables


def _normalised(response: httpx.Response, ids: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    body = response.text
    for real, placeholder in ids.items():
        body = body.replace(real, placeholder)
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("content-type", "www-authenticate", "etag")}
    return response.status_code, body, headers


# -- SCIM ---------------------------------------------------------------------------------------------------------

# (method, path, body); {user} and {group} are filled with the ids under test.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/Users", None),
    ("GET", "/Users?filter=userName%20eq%20%22ada@acme.test%22", None),
    ("POST", "/Users", {"userName": "new@acme.test"}),
    ("GET", "/Users/{user}", None),
    ("PUT", "/Users/{user}", {"userName": "put@acme.test"}),
    ("PATCH", "/Users/{user}", {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}),
    ("DELETE", "/Users/{user}", None),
    ("GET", "/Groups", None),
    ("POST", "/Groups", {"displayName": "New"}),
    ("GET", "/Groups/{group}", None),
    ("PUT", "/Groups/{group}", {"displayName": "Put", "members": []}),
    ("PATCH", "/Groups/{group}", {"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members"}]}),
    ("DELETE", "/Groups/{group}", None),
    ("POST", "/Users/.search", {"filter": 'userName sw "only"'}),
    ("POST", "/Groups/.search", {}),
    ("POST", "/.search", {}),
    ("GET", "/ServiceProviderConfig", None),
    ("GET", "/Schemas", None),
    ("GET", f"/Schemas/{USER_URN}", None),
    ("GET", "/ResourceTypes", None),
    ("GET", "/ResourceTypes/User", None),
    ("PATCH", "/Users/{user}", {"Operations": "not a list"}),  # a bad body: still 401 first
]
ID_ROUTES = [route for route in ROUTES if "{" in route[1] and route[2] != {"Operations": "not a list"}]


async def _send(
    client: httpx.AsyncClient, directory: DirectoryFixture, token: str, route: tuple[str, str, Any], **ids: str
) -> httpx.Response:
    method, path, body = route
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    return await client.request(method, directory.path + path.format(**ids), json=body, headers=headers)


async def test_scim_with_another_directory_token(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, app: Any, tenants: dict[str, Any]
) -> None:
    """Every route of every directory, with every other directory's valid token: 401, byte for byte the answer
    to a made-up token, whether the ids exist or not; nothing changes and B2 stays unlinked."""
    database: Database = app.state.database
    found: dict[str, Tenant] = tenants["tenants"]
    before = await snapshot(database)
    made_up = "dsync_scim_" + "x" * 43
    for victim_label, victim in found.items():
        ids = {"user": victim.user or new_id("directory_user"), "group": victim.group or new_id("directory_group")}
        for route in ROUTES:
            expected = _normalised(await _send(client, victim.directory, made_up, route, **ids), {})
            assert expected[0] == 401, expected
            for label, other in found.items():
                if label == victim_label:
                    continue
                response = await _send(client, victim.directory, other.directory.token, route, **ids)
                assert _normalised(response, {}) == expected, (victim_label, label, route)
                _count(request)
    assert await snapshot(database) == before


async def test_scim_with_another_directory_ids(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, app: Any, tenants: dict[str, Any]
) -> None:
    """A directory's own token with another directory's ids (same organization or not), in the URL: exactly a
    missing id's answer; nothing changes."""
    database: Database = app.state.database
    found: dict[str, Tenant] = tenants["tenants"]
    seeded = [label for label in found if found[label].user]
    for attacker_label in seeded:
        attacker = found[attacker_label].directory
        for victim_label in seeded:
            if victim_label == attacker_label:
                continue
            victim = found[victim_label]
            for route in ID_ROUTES:
                before = await snapshot(database)
                missing = {"user": new_id("directory_user"), "group": new_id("directory_group")}
                expected = await _send(client, attacker, attacker.token, route, **missing)
                foreign = {"user": victim.user, "group": victim.group}
                response = await _send(client, attacker, attacker.token, route, **foreign)
                assert response.status_code == expected.status_code == 404, route
                placeholders = {missing["user"]: "<user>", missing["group"]: "<group>"}
                assert _normalised(response, {victim.user: "<user>", victim.group: "<group>"}) == _normalised(
                    expected, placeholders
                ), (attacker_label, victim_label, route)
                assert await snapshot(database) == before
                _count(request)


# Requests on the attacker's own resources naming the victim's objects in a filter or a body: each must answer as
# if those objects did not exist. (method, path, body(user, group, user_name)); the path's {user}, {group},
# {user_name} and {label} name the victim's objects, {own_user} and {own_group} the attacker's.
FOREIGN_REFERENCES: list[tuple[str, str, Callable[[str, str, str], Any]]] = [
    ("GET", "/Users?filter=id%20eq%20%22{user}%22", lambda u, g, n: None),
    ("GET", "/Users?filter=userName%20eq%20%22{user_name}%22", lambda u, g, n: None),
    ("GET", "/Users?filter=externalId%20eq%20%22ext-{label}%22", lambda u, g, n: None),
    ("GET", "/Users?filter=groups.value%20eq%20%22{group}%22", lambda u, g, n: None),
    ("GET", "/Groups?filter=id%20eq%20%22{group}%22", lambda u, g, n: None),
    ("GET", "/Groups?filter=members.value%20eq%20%22{user}%22", lambda u, g, n: None),
    ("GET", "/Groups?filter=displayName%20eq%20%22Group%20{label}%22", lambda u, g, n: None),
    ("POST", "/Users/.search", lambda u, g, n: {"filter": f'id eq "{u}" or userName eq "{n}"'}),
    ("POST", "/Groups/.search", lambda u, g, n: {"filter": f'members[value eq "{u}"] or id eq "{g}"'}),
    (
        "PATCH",
        "/Groups/{own_group}",
        lambda u, g, n: {
            "schemas": [PATCH],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": u}]}],
        },
    ),
    (
        "PATCH",
        "/Groups/{own_group}",
        lambda u, g, n: {
            "schemas": [PATCH],
            "Operations": [{"op": "remove", "path": f'members[value eq "{u}"]'}],
        },
    ),
    ("PUT", "/Groups/{own_group}", lambda u, g, n: {"displayName": "Mine", "members": [{"value": u}]}),
    (
        "PATCH",
        "/Users/{own_user}",
        lambda u, g, n: {
            "schemas": [PATCH],
            "Operations": [
                {
                    "op": "add",
                    "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                    "value": {"value": u},
                }
            ],
        },
    ),
]


async def test_scim_bodies_and_filters_naming_another_directory(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, app: Any, tenants: dict[str, Any]
) -> None:
    database: Database = app.state.database
    found: dict[str, Tenant] = tenants["tenants"]
    seeded = [label for label in found if found[label].user]
    for attacker_label in seeded:
        attacker = found[attacker_label]
        d = attacker.directory
        for victim_label in seeded:
            if victim_label == attacker_label:
                continue
            victim = found[victim_label]
            fake = {
                "user": new_id("directory_user"),
                "group": new_id("directory_group"),
                "user_name": "nobody@acme.test",
                "label": "ZZ",
            }
            real = {"user": victim.user, "group": victim.group, "user_name": victim.user_name, "label": victim_label}
            for method, path, body in FOREIGN_REFERENCES:
                victim_before = await _directory_rows(database, victim.directory.id)
                answers = []
                for names in (fake, real):
                    url = d.path + path.format(own_group=attacker.group, own_user=attacker.user, **names)
                    response = await client.request(
                        method, url, json=body(names["user"], names["group"], names["user_name"]), headers=d.headers
                    )
                    assert response.status_code < 300, response.text
                    answers.append(_normalised(response, {names["user"]: "<u>", names["group"]: "<g>"}))
                # Both requests act on the attacker's own resources (their versions may move): the answers must
                # be the same but for that, so none of them shows the victim's objects.
                assert answers[0][0] == answers[1][0], (method, path)
                assert _without_meta(answers[0][1]) == _without_meta(answers[1][1]), (method, path)
                assert await _directory_rows(database, victim.directory.id) == victim_before
                _count(request)
    # Uniqueness is per directory: another directory's userName is free here, so a 409 cannot reveal it (externalId
    # is unique nowhere).
    for attacker_label in seeded:
        d = found[attacker_label].directory
        for victim_label in seeded:
            if victim_label != attacker_label:
                victim = found[victim_label]
                new_user = {"userName": victim.user_name, "externalId": f"ext-{victim_label}"}
                assert (await client.post(f"{d.path}/Users", json=new_user, headers=d.headers)).status_code == 201
                new_group = {"displayName": f"Group {victim_label}", "externalId": f"gext-{victim_label}"}
                assert (await client.post(f"{d.path}/Groups", json=new_group, headers=d.headers)).status_code == 201
                _count(request, 2)


def _without_meta(body: str) -> Any:
    """The answer without what differs between two requests on the same resource (versions, timestamps)."""
    try:
        document = json.loads(body)
    except ValueError:
        return body

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("meta",)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(document)


async def _directory_rows(database: Database, directory_id: str) -> list[Any]:
    async with database.read() as session:
        rows = []
        for table in ("directory_users", "directory_groups", "group_memberships", "events"):
            result = await session.execute(
                text(f"SELECT * FROM {table} WHERE directory_id = :d ORDER BY 1"), {"d": directory_id}
            )
            rows.append([tuple(r) for r in result])
        result = await session.execute(
            text(
                "SELECT id, organization_id, name, type, state, deprovision_policy, token_hash, created_at, updated_at"
                " FROM directories WHERE id = :d"
            ),
            {"d": directory_id},
        )
        rows.append([tuple(r) for r in result])
    return rows


# -- GraphQL ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objects:
    """One tenant's ids as the GraphQL cases use them."""

    organization: str
    directory: str
    user: str
    group: str
    event: str
    api_key: str
    webhook_endpoint: str
    setup_link: str


def _missing() -> Objects:
    return Objects(
        organization=new_id("org"),
        directory=new_id("directory"),
        user=new_id("directory_user"),
        group=new_id("directory_group"),
        event=new_id("event"),
        api_key=new_id("api_key"),
        webhook_endpoint=new_id("webhook_endpoint"),
        setup_link=new_id("setup_link"),
    )


Variables = Callable[[Objects, Objects], dict[str, Any]]  # (target, own) -> variables

# Every root field, with documents naming the target's objects; `own` is the caller's organization.
GRAPHQL_CASES: dict[str, list[tuple[str, Variables]]] = {
    "organizations": [
        ("{ organizations(first: 100) { totalCount edges { node { id name directories { id } } } } }", lambda t, o: {})
    ],
    "organization": [
        (
            "query($id: ID!) { organization(id: $id) { id name directories { id } } }",
            lambda t, o: {"id": t.organization},
        )
    ],
    "directory": [
        ("query($id: ID!) { directory(id: $id) { id name userCount } }", lambda t, o: {"id": t.directory}),
        (
            "query($own: ID!, $g: ID!, $u: ID!) { directory(id: $own) { users(groupId: $g) { totalCount edges"
            " { node { id } } } groups(memberId: $u) { totalCount edges { node { id } } } } }",
            lambda t, o: {"own": o.directory, "g": t.group, "u": t.user},
        ),
    ],
    "directoryUser": [("query($id: ID!) { directoryUser(id: $id) { id userName } }", lambda t, o: {"id": t.user})],
    "directoryGroup": [("query($id: ID!) { directoryGroup(id: $id) { id name } }", lambda t, o: {"id": t.group})],
    "node": [
        ("query($id: ID!) { node(id: $id) { id } }", lambda t, o, kind=kind: {"id": getattr(t, kind)})  # type: ignore[misc]
        for kind in ("organization", "directory", "user", "group", "event")
    ],
    "events": [
        (
            "query($o: ID) { events(organizationId: $o) { totalCount edges { node { id } } } }",
            lambda t, o: {"o": t.organization},
        ),
        (
            "query($d: ID) { events(directoryId: $d) { totalCount edges { node { id } } } }",
            lambda t, o: {"d": t.directory},
        ),
        (
            "query($o: ID, $d: ID) { events(organizationId: $o, directoryId: $d) {"
            " totalCount edges { node { id } } } }",
            lambda t, o: {"o": o.organization, "d": t.directory},
        ),
    ],
    "createOrganization": [('mutation { createOrganization(name: "Evil") { id } }', lambda t, o: {})],
    "updateOrganization": [
        (
            'mutation($id: ID!) { updateOrganization(id: $id, name: "Evil") { id name } }',
            lambda t, o: {"id": t.organization},
        )
    ],
    "deleteOrganization": [
        ("mutation($id: ID!) { deleteOrganization(id: $id) { id } }", lambda t, o: {"id": t.organization})
    ],
    "createDirectory": [
        (
            'mutation($o: ID!) { createDirectory(organizationId: $o, name: "Evil") { bearerToken directory { id } } }',
            lambda t, o: {"o": t.organization},
        ),
        (
            'mutation($o: ID!) { createDirectory(organizationId: $o, name: "  ") { bearerToken } }',
            lambda t, o: {"o": t.organization},
        ),
    ],
    "renameDirectory": [
        ('mutation($id: ID!) { renameDirectory(id: $id, name: "Evil") { id name } }', lambda t, o: {"id": t.directory}),
        ('mutation($id: ID!) { renameDirectory(id: $id, name: " ") { id } }', lambda t, o: {"id": t.directory}),
    ],
    "rotateDirectoryToken": [
        ("mutation($id: ID!) { rotateDirectoryToken(id: $id) { bearerToken } }", lambda t, o: {"id": t.directory})
    ],
    "setDirectoryDeprovisionPolicy": [
        (
            "mutation($id: ID!) { setDirectoryDeprovisionPolicy(id: $id, policy: DELETE_INACTIVE) { id } }",
            lambda t, o: {"id": t.directory},
        )
    ],
    "deleteDirectory": [("mutation($id: ID!) { deleteDirectory(id: $id) { id } }", lambda t, o: {"id": t.directory})],
    "createApiKey": [
        ("mutation($o: ID) { createApiKey(organizationId: $o) { key } }", lambda t, o: {"o": t.organization})
    ],
    "revokeApiKey": [("mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }", lambda t, o: {"id": t.api_key})],
    "viewer": [("{ viewer { apiKeyId isAdmin organization { id name } } }", lambda t, o: {})],
    "apiKeys": [("{ apiKeys(includeRevoked: true) { id scope organizationId } }", lambda t, o: {})],
    # Roles and custom attributes (tests/rules): role ids are never a tenant's here, so a group id stands in.
    "roles": [("query($o: ID!) { roles(organizationId: $o) { id slug } }", lambda t, o: {"o": t.organization})],
    "roleMappings": [("query($d: ID!) { roleMappings(directoryId: $d) { id } }", lambda t, o: {"d": t.directory})],
    "attributeDefinitions": [
        ("query($o: ID!) { attributeDefinitions(organizationId: $o) { name } }", lambda t, o: {"o": t.organization})
    ],
    "attributeMappings": [
        ("query($d: ID!) { attributeMappings(directoryId: $d) { name path } }", lambda t, o: {"d": t.directory})
    ],
    "createRole": [
        (
            'mutation($o: ID!) { createRole(organizationId: $o, slug: "evil", name: "Evil") { id } }',
            lambda t, o: {"o": t.organization},
        )
    ],
    "updateRole": [('mutation($id: ID!) { updateRole(id: $id, name: "Evil") { id } }', lambda t, o: {"id": t.group})],
    "deleteRole": [("mutation($id: ID!) { deleteRole(id: $id) { id } }", lambda t, o: {"id": t.group})],
    "mapGroupToRole": [
        (
            'mutation($d: ID!, $g: ID!) { mapGroupToRole(directoryId: $d, groupId: $g, role: "admin") { id } }',
            lambda t, o: {"d": t.directory, "g": t.group},
        ),
        (
            'mutation($d: ID!, $g: ID!) { mapGroupToRole(directoryId: $d, groupId: $g, role: "admin") { id } }',
            lambda t, o: {"d": o.directory, "g": t.group},
        ),
    ],
    "unmapGroup": [
        (
            "mutation($d: ID!, $g: ID!) { unmapGroup(directoryId: $d, groupId: $g) { id } }",
            lambda t, o: {"d": t.directory, "g": t.group},
        )
    ],
    "defineAttribute": [
        (
            'mutation($o: ID!) { defineAttribute(organizationId: $o, name: "evil") { name } }',
            lambda t, o: {"o": t.organization},
        )
    ],
    "deleteAttributeDefinition": [
        (
            'mutation($o: ID!) { deleteAttributeDefinition(organizationId: $o, name: "evil") }',
            lambda t, o: {"o": t.organization},
        )
    ],
    "mapAttribute": [
        (
            'mutation($d: ID!) { mapAttribute(directoryId: $d, name: "department", path: "title") { name } }',
            lambda t, o: {"d": t.directory},
        )
    ],
    "resetAttributeMapping": [
        (
            'mutation($d: ID!) { resetAttributeMapping(directoryId: $d, name: "department") { name } }',
            lambda t, o: {"d": t.directory},
        )
    ],
    "webhookEndpoints": [
        ("query($o: ID) { webhookEndpoints(organizationId: $o) { id url } }", lambda t, o: {"o": t.organization})
    ],
    "webhookEndpoint": [
        ("query($id: ID!) { webhookEndpoint(id: $id) { id url } }", lambda t, o: {"id": t.webhook_endpoint})
    ],
    "createWebhookEndpoint": [
        (
            'mutation($o: ID) { createWebhookEndpoint(url: "https://evil.example.com/", organizationId: $o)'
            " { secret } }",
            lambda t, o: {"o": t.organization},
        )
    ],
    "updateWebhookEndpoint": [
        (
            'mutation($id: ID!) { updateWebhookEndpoint(id: $id, url: "https://evil.example.com/") { id } }',
            lambda t, o: {"id": t.webhook_endpoint},
        )
    ],
    "deleteWebhookEndpoint": [
        ("mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { id } }", lambda t, o: {"id": t.webhook_endpoint})
    ],
    "resumeWebhookEndpoint": [
        ("mutation($id: ID!) { resumeWebhookEndpoint(id: $id) { id } }", lambda t, o: {"id": t.webhook_endpoint})
    ],
    "redeliverWebhookEndpoint": [
        (
            "mutation($id: ID!, $e: ID!) { redeliverWebhookEndpoint(id: $id, fromEventId: $e) { id } }",
            lambda t, o: {"id": t.webhook_endpoint, "e": t.event},
        )
    ],
    "createSetupLink": [
        ("mutation($id: ID!) { createSetupLink(directoryId: $id) { url } }", lambda t, o: {"id": t.directory})
    ],
    "setupLinks": [
        ("query($id: ID!) { setupLinks(directoryId: $id) { id status } }", lambda t, o: {"id": t.directory})
    ],
    "revokeSetupLink": [("mutation($id: ID!) { revokeSetupLink(id: $id) { id } }", lambda t, o: {"id": t.setup_link})],
}
SUBSCRIPTION_CASES: dict[str, list[tuple[str, Variables]]] = {
    "directoryEvents": [
        ("subscription($d: ID) { directoryEvents(directoryId: $d) { id } }", lambda t, o: {"d": t.directory}),
        ("subscription($o: ID) { directoryEvents(organizationId: $o) { id } }", lambda t, o: {"o": t.organization}),
        (
            "subscription($o: ID, $d: ID) { directoryEvents(organizationId: $o, directoryId: $d) { id } }",
            lambda t, o: {"o": o.organization, "d": t.directory},
        ),
    ],
    "directoryEventBatches": [
        ("subscription($d: ID) { directoryEventBatches(directoryId: $d) { id } }", lambda t, o: {"d": t.directory}),
        (
            "subscription($o: ID) { directoryEventBatches(organizationId: $o) { id } }",
            lambda t, o: {"o": t.organization},
        ),
        (
            "subscription($o: ID, $d: ID) { directoryEventBatches(organizationId: $o, directoryId: $d) { id } }",
            lambda t, o: {"o": o.organization, "d": t.directory},
        ),
    ],
}


def test_every_root_field_is_in_the_matrix() -> None:
    """A new query, mutation or subscription cannot be added without isolation cases."""
    graphql_schema = schema._schema
    roots = [graphql_schema.query_type, graphql_schema.mutation_type]
    assert set(GRAPHQL_CASES) == {name for root in roots if root for name in root.fields}
    assert graphql_schema.subscription_type is not None
    assert set(SUBSCRIPTION_CASES) == set(graphql_schema.subscription_type.fields)


async def _objects(database: Database, tenants: dict[str, Any], label: str) -> Objects:
    tenant: Tenant = tenants["tenants"][label]
    organization = tenant.directory.organization_id
    async with database.read() as session:
        event = await session.scalar(
            select(col(Event.id)).where(col(Event.directory_id) == tenant.directory.id).limit(1)
        )
    assert event is not None
    return Objects(
        organization=organization,
        directory=tenant.directory.id,
        user=tenant.user,
        group=tenant.group,
        event=event,
        api_key=tenants["keys"][organization].api_key.id,
        webhook_endpoint=tenants["hooks"][organization],
        setup_link=tenants["links"][organization],
    )


def _placeholders(variables: dict[str, Any]) -> dict[str, str]:
    return {value: f"<{name}>" for name, value in variables.items() if isinstance(value, str)}


def _normalised_json(body: dict[str, Any], placeholders: dict[str, str]) -> str:
    text_ = json.dumps(body, sort_keys=True)
    for real, placeholder in placeholders.items():
        text_ = text_.replace(real, placeholder)
    return text_


async def _gql(client: httpx.AsyncClient, key: str, document: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": document, "variables": variables}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _markers(tenants: dict[str, Any], organization_id: str) -> set[str]:
    """What must never appear in an answer to another organization: its ids and names."""
    found: dict[str, Tenant] = tenants["tenants"]
    markers = {organization_id}
    for tenant in found.values():
        if tenant.directory.organization_id == organization_id:
            markers |= {tenant.directory.id, tenant.directory.token} | {
                m for m in (tenant.user, tenant.group, tenant.user_name) if m
            }
    return markers


async def test_graphql_with_another_organization_key(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, app: Any, tenants: dict[str, Any]
) -> None:
    database: Database = app.state.database
    keys = tenants["keys"]
    directions = [("A1", "B1"), ("B1", "A1"), ("B1", "A2")]  # (caller's directory, target's directory)
    before = await snapshot(database)
    for own_label, target_label in directions:
        own = await _objects(database, tenants, own_label)
        target = await _objects(database, tenants, target_label)
        key = keys[own.organization].key
        markers = _markers(tenants, target.organization)
        for field_name, variants in GRAPHQL_CASES.items():
            for document, variables in variants:
                foreign_vars, missing_vars = variables(target, own), variables(_missing(), own)
                foreign = await _gql(client, key, document, foreign_vars)
                missing = await _gql(client, key, document, missing_vars)
                assert _normalised_json(foreign, _placeholders(foreign_vars)) == _normalised_json(
                    missing, _placeholders(missing_vars)
                ), (field_name, own_label, target_label, foreign, missing)
                # Nothing of the target beyond the ids the caller sent (an error may repeat those).
                leaked = {m for m in markers - set(foreign_vars.values()) if m in json.dumps(foreign)}
                assert not leaked, (field_name, leaked, foreign)
                _count(request)
    assert await snapshot(database) == before


# -- subscriptions over a real server -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[int, Any]]:
    port = _free_port()
    application = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield port, application
    finally:
        server.should_exit = True
        await task


def _ws(port: int, key: str) -> WebsocketsTransport:
    return WebsocketsTransport(
        url=f"ws://127.0.0.1:{port}/graphql",
        init_payload={"authorization": f"Bearer {key}"},
        subprotocols=["graphql-transport-ws"],
    )


async def _subscription_errors(port: int, key: str, document: str, variables: dict[str, Any]) -> list[Any]:
    async with Client(transport=_ws(port, key)) as session:
        with pytest.raises(TransportQueryError) as caught:
            async for _ in session.subscribe(GraphQLRequest(document, variable_values=variables)):
                pass
    return list(caught.value.errors or [])


@pytest.mark.slow
async def test_subscriptions_with_another_organization_key(
    request: pytest.FixtureRequest, settings: Settings, app: Any, tenants: dict[str, Any]
) -> None:
    database: Database = app.state.database
    keys = tenants["keys"]
    found: dict[str, Tenant] = tenants["tenants"]
    async with _serving(settings) as (port, server_app):
        for own_label, target_label in (("A1", "B1"), ("B1", "A1"), ("B1", "A2")):
            own = await _objects(database, tenants, own_label)
            target = await _objects(database, tenants, target_label)
            key = keys[own.organization].key
            for field_name, variants in SUBSCRIPTION_CASES.items():
                for document, variables in variants:
                    foreign_vars, missing_vars = variables(target, own), variables(_missing(), own)
                    foreign = await _subscription_errors(port, key, document, foreign_vars)
                    missing = await _subscription_errors(port, key, document, missing_vars)
                    assert foreign and "not found" in json.dumps(foreign)
                    assert _normalised_json({"e": foreign}, _placeholders(foreign_vars)) == _normalised_json(
                        {"e": missing}, _placeholders(missing_vars)
                    ), (field_name, foreign, missing)
                    _count(request)

        # Organization-scoped subscriptions without a directory filter: the stored log (after "0"), or live events
        # only, receive organization A's events and never B's, whether stored before or written meanwhile.
        org_a = tenants["orgs"]["A"]
        a1, b1 = found["A1"].directory, found["B1"].directory
        hub = server_app.state.hub
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            streams: list[dict[str, Any]] = [{"after": "0"}, {}, {"events": ["dsync.user.created"]}]
            for n, stream in enumerate(streams):
                async with database.read() as session:
                    ordered = select(col(Event.id), col(Event.organization_id)).order_by(col(Event.cursor))
                    stored = [(event_id, org) for event_id, org in await session.execute(ordered)]
                received: list[dict[str, Any]] = []
                sentinel: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                listener = asyncio.create_task(_listen(port, keys[org_a].key, stream, sentinel, received))
                async with asyncio.timeout(10):
                    # Registered: what commits from now on is delivered. (The state is the server's: nothing to await.)
                    while hub.subscriber_count == 0:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                for i in range(5):
                    body = {"userName": f"b{n}-{i}@b.test"}
                    assert (await http.post(f"{b1.path}/Users", json=body, headers=b1.headers)).status_code == 201
                last = await http.post(f"{a1.path}/Users", json={"userName": f"sentinel{n}@a.test"}, headers=a1.headers)
                sentinel.set_result(last.json()["id"])
                # The sentinel's event can reach the listener before its POST's answer reaches us (then the listener,
                # not knowing the id yet, keeps waiting): wait here for it to be received, whenever it was.
                async with asyncio.timeout(15):
                    while not any((e["user"] or {}).get("id") == sentinel.result() for e in received):
                        if listener.done():
                            listener.result()  # its failure, if it failed
                        await asyncio.sleep(0.02)
                if not listener.done():
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await listener
                own_stored = [event_id for event_id, org in stored if org == org_a] if "after" in stream else []
                assert [e["id"] for e in received[:-1]] == own_stored
                assert {e["organizationId"] for e in received} == {org_a}, received
                assert received[-1]["user"]["id"] == sentinel.result()
                # Cases: every foreign event that was stored (for the replay) or written while listening.
                _count(request, 5 + (sum(org != org_a for _, org in stored) if "after" in stream else 0))


async def _listen(
    port: int, key: str, variables: dict[str, Any], sentinel: asyncio.Future[str], into: list[dict[str, Any]]
) -> None:
    document = """subscription($after: String, $events: [String!]) {
      directoryEvents(after: $after, events: $events) { id organizationId directoryId user { id } }
    }"""
    async with Client(transport=_ws(port, key)) as session:
        async for result in session.subscribe(GraphQLRequest(document, variable_values=variables)):
            event = result["directoryEvents"]
            into.append(event)
            if sentinel.done() and (event["user"] or {}).get("id") == sentinel.result():
                return
