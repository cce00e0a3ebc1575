"""GraphQL API coverage beyond test_graphql.py: single-object queries, node(id), filters, event time ranges and
backward pages, organization and API key mutations, and UNAUTHENTICATED on every root field."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from gateway.graphql.loaders import Loaders
from tests.conftest import DirectoryFixture
from tests.gateway.test_graphql import codes, gql, seeded  # noqa: F401  (seeded: a pytest fixture)

MISSING = "01JZZZZZZZZZZZZZZZZZZZZZZZ"


async def scim_group(
    client: httpx.AsyncClient, directory: DirectoryFixture, name: str, members: list[str]
) -> dict[str, Any]:
    response = await client.post(
        f"{directory.path}/Groups",
        json={"displayName": name, "members": [{"value": m} for m in members]},
        headers=directory.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


# --- Queries -------------------------------------------------------------------------------------------------------

ORGANIZATION = "query($id: ID!) { organization(id: $id) { id name domains createdAt directories { id name } } }"


async def test_organization_query_scope(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    own = await gql(client, ORGANIZATION, seeded["own"], {"id": directory.organization_id})
    assert "errors" not in own, own
    organization = own["data"]["organization"]
    assert organization["id"] == directory.organization_id
    assert organization["name"] == "Acme" and organization["domains"] == ["acme.test"]
    assert organization["directories"] == [{"id": directory.id, "name": "JumpCloud"}]
    other_id = seeded["other_directory"].organization_id
    assert codes(await gql(client, ORGANIZATION, seeded["own"], {"id": other_id})) == ["NOT_FOUND"]
    assert codes(await gql(client, ORGANIZATION, seeded["own"], {"id": f"org_{MISSING}"})) == ["NOT_FOUND"]
    for organization_id, directory_id in ((other_id, seeded["other_directory"].id), (directory.organization_id, None)):
        body = await gql(client, ORGANIZATION, seeded["admin"], {"id": organization_id})
        assert "errors" not in body, body
        assert body["data"]["organization"]["id"] == organization_id
        if directory_id:
            assert body["data"]["organization"]["directories"] == [{"id": directory_id, "name": "Other tenant"}]


async def test_organization_directories_lists_a_new_directory(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    create = 'mutation($org: ID!) { createDirectory(organizationId: $org, name: "Second") { directory { id } } }'
    made = await gql(client, create, seeded["own"], {"org": directory.organization_id})
    new_id = made["data"]["createDirectory"]["directory"]["id"]
    body = await gql(client, ORGANIZATION, seeded["own"], {"id": directory.organization_id})
    listed = body["data"]["organization"]["directories"]
    assert sorted(d["id"] for d in listed) == sorted([directory.id, new_id])
    # Through the connection as well: every organization's directories, in one request.
    orgs = await gql(client, "{ organizations { edges { node { id directories { id } } } } }", seeded["admin"])
    by_org = {
        e["node"]["id"]: [d["id"] for d in e["node"]["directories"]] for e in orgs["data"]["organizations"]["edges"]
    }
    assert sorted(by_org[directory.organization_id]) == sorted([directory.id, new_id])
    assert by_org[seeded["other_directory"].organization_id] == [seeded["other_directory"].id]


DIRECTORY_GROUP = """query($id: ID!, $first: Int, $after: String) {
  directoryGroup(id: $id) {
    id name directoryId memberCount directory { id name }
    members(first: $first, after: $after) {
      totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { id userName } }
    }
  }
}"""


async def test_directory_group_query(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    group_id = seeded["group"]["id"]
    members = sorted(u["id"] for u in seeded["users"][:3])
    first = await gql(client, DIRECTORY_GROUP, seeded["own"], {"id": group_id, "first": 2})
    assert "errors" not in first, first
    group = first["data"]["directoryGroup"]
    assert (group["id"], group["name"], group["directoryId"], group["memberCount"]) == (
        group_id,
        "Eng",
        directory.id,
        3,
    )
    assert group["directory"] == {"id": directory.id, "name": "JumpCloud"}
    page = group["members"]
    assert page["totalCount"] == 3 and ids(page) == members[:2]
    assert page["pageInfo"]["hasNextPage"] is True and page["pageInfo"]["hasPreviousPage"] is False
    after = page["pageInfo"]["endCursor"]
    second = await gql(client, DIRECTORY_GROUP, seeded["own"], {"id": group_id, "first": 2, "after": after})
    rest = second["data"]["directoryGroup"]["members"]
    assert ids(rest) == members[2:]
    assert rest["pageInfo"]["hasNextPage"] is False and rest["pageInfo"]["hasPreviousPage"] is True
    # The admin sees it; another tenant gets the same answer as for a missing id.
    admin = await gql(client, DIRECTORY_GROUP, seeded["admin"], {"id": group_id})
    assert admin["data"]["directoryGroup"]["memberCount"] == 3
    assert codes(await gql(client, DIRECTORY_GROUP, seeded["other"], {"id": group_id})) == ["NOT_FOUND"]
    missing = await gql(client, DIRECTORY_GROUP, seeded["own"], {"id": f"directory_group_{MISSING}"})
    assert codes(missing) == ["NOT_FOUND"]


NODE = """query($id: ID!) {
  node(id: $id) {
    __typename
    ... on Organization { id name }
    ... on Directory { id name }
    ... on DirectoryUser { id userName }
    ... on DirectoryGroup { id name }
    ... on Event { id event }
  }
}"""


async def test_node_by_prefixed_id(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    events = await gql(client, "{ events(first: 1) { edges { node { id event } } } }", seeded["own"])
    event = events["data"]["events"]["edges"][0]["node"]
    assert event["id"].startswith("event_")
    user = seeded["users"][0]
    cases = [
        (directory.organization_id, {"__typename": "Organization", "id": directory.organization_id, "name": "Acme"}),
        (directory.id, {"__typename": "Directory", "id": directory.id, "name": "JumpCloud"}),
        (user["id"], {"__typename": "DirectoryUser", "id": user["id"], "userName": "u0@acme.test"}),
        (seeded["group"]["id"], {"__typename": "DirectoryGroup", "id": seeded["group"]["id"], "name": "Eng"}),
        (event["id"], {"__typename": "Event", "id": event["id"], "event": event["event"]}),
    ]
    for object_id, expected in cases:
        for key in (seeded["own"], seeded["admin"]):
            body = await gql(client, NODE, key, {"id": object_id})
            assert "errors" not in body, body
            assert body["data"]["node"] == expected
        # Another tenant's id reads as nothing at all.
        hidden = await gql(client, NODE, seeded["other"], {"id": object_id})
        assert "errors" not in hidden and hidden["data"]["node"] is None, hidden
    # Well-formed ids that do not exist are null too.
    for prefix in ("org", "directory", "directory_user", "directory_group", "event"):
        body = await gql(client, NODE, seeded["own"], {"id": f"{prefix}_{MISSING}"})
        assert "errors" not in body and body["data"]["node"] is None, body
    for unknown in (f"api_key_{MISSING}", f"widget_{MISSING}", "nonsense", f"org_{MISSING}x"):
        body = await gql(client, NODE, seeded["own"], {"id": unknown})
        assert codes(body) == ["BAD_USER_INPUT"], body


# --- Filters -------------------------------------------------------------------------------------------------------


async def test_users_by_group_and_groups_by_search_and_member(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    users = seeded["users"]
    sales = await scim_group(client, directory, "Sales_EU", [users[0]["id"], users[4]["id"]])
    salesx = await scim_group(client, directory, "SalesXEU", [])
    club = await scim_group(client, directory, "100% Club", [users[4]["id"]])
    thousand = await scim_group(client, directory, "1000 Club", [])
    query = """query($id: ID!, $groupId: ID, $search: String, $memberId: ID) {
      directory(id: $id) {
        users(first: 100, groupId: $groupId) { totalCount edges { node { id } } }
        groups(first: 100, search: $search, memberId: $memberId) { totalCount edges { node { id name } } }
      }
    }"""

    async def run(**variables: Any) -> dict[str, Any]:
        body = await gql(client, query, seeded["own"], {"id": directory.id, **variables})
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]["directory"]
        return result

    by_group = (await run(groupId=seeded["group"]["id"]))["users"]
    assert by_group["totalCount"] == 3 and ids(by_group) == sorted(u["id"] for u in users[:3])
    assert ids((await run(groupId=sales["id"]))["users"]) == sorted([users[0]["id"], users[4]["id"]])
    assert (await run(groupId=thousand["id"]))["users"] == {"totalCount": 0, "edges": []}

    async def group_names(**variables: Any) -> list[str]:
        return sorted(edge["node"]["name"] for edge in (await run(**variables))["groups"]["edges"])

    assert await group_names() == sorted(["Eng", "Sales_EU", "SalesXEU", "100% Club", "1000 Club"])
    assert await group_names(search="SALES") == ["SalesXEU", "Sales_EU"]  # case-insensitive
    assert await group_names(search="eng") == ["Eng"]
    assert await group_names(search="s_e") == ["Sales_EU"]  # `_` is a literal underscore, not "any character"
    assert await group_names(search="0%") == ["100% Club"]  # `%` is a literal percent sign
    assert await group_names(search="%") == ["100% Club"]
    assert await group_names(search="nothing-like-this") == []
    assert await group_names(memberId=users[0]["id"]) == ["Eng", "Sales_EU"]
    assert await group_names(memberId=users[4]["id"]) == ["100% Club", "Sales_EU"]
    assert await group_names(memberId=users[5]["id"]) == []
    assert await group_names(memberId=users[4]["id"], search="club") == ["100% Club"]
    assert salesx["id"] and club["id"]


EVENTS = """query($org: ID, $since: DateTime, $until: DateTime, $first: Int, $last: Int, $before: String) {
  events(organizationId: $org, since: $since, until: $until, first: $first, last: $last, before: $before) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id cursor event occurredAt organizationId } }
  }
}"""


async def all_events(client: httpx.AsyncClient, key: str, **variables: Any) -> dict[str, Any]:
    body = await gql(client, EVENTS, key, {"first": 100, **variables})
    assert "errors" not in body, body
    events: dict[str, Any] = body["data"]["events"]
    return events


async def test_events_by_organization(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    other = seeded["other_directory"]
    # Some activity in the other tenant too, so an unfiltered admin query mixes organizations.
    other_headers = {"Authorization": f"Bearer {other.token}", "Content-Type": "application/scim+json"}
    response = await client.post(f"{other.path}/Users", json={"userName": "x@other.test"}, headers=other_headers)
    assert response.status_code == 201, response.text
    unfiltered = await all_events(client, seeded["own"])
    own = await all_events(client, seeded["own"], org=directory.organization_id)
    assert own["totalCount"] == unfiltered["totalCount"] > 0
    assert {e["node"]["organizationId"] for e in own["edges"]} == {directory.organization_id}
    everything = await all_events(client, seeded["admin"])
    assert {e["node"]["organizationId"] for e in everything["edges"]} == {
        directory.organization_id,
        other.organization_id,
    }
    admin_own = await all_events(client, seeded["admin"], org=directory.organization_id)
    assert ids(admin_own) == ids(own)
    admin_other = await all_events(client, seeded["admin"], org=other.organization_id)
    assert admin_other["totalCount"] >= 1
    assert {e["node"]["organizationId"] for e in admin_other["edges"]} == {other.organization_id}
    assert admin_own["totalCount"] + admin_other["totalCount"] == everything["totalCount"]
    # An organization key asking for another organization's events: NOT_FOUND, like a missing organization.
    assert codes(await gql(client, EVENTS, seeded["own"], {"org": other.organization_id})) == ["NOT_FOUND"]
    assert codes(await gql(client, EVENTS, seeded["other"], {"org": directory.organization_id})) == ["NOT_FOUND"]


async def test_events_time_range(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    everything = (await all_events(client, seeded["own"]))["edges"]
    assert len(everything) >= 8
    stamps = [(e["node"]["id"], datetime.fromisoformat(e["node"]["occurredAt"])) for e in everything]
    assert all(stamp.tzinfo is not None for _, stamp in stamps)
    low, high = stamps[2][1], stamps[-3][1]
    assert low < high

    def expected(since: datetime | None, until: datetime | None) -> list[str]:
        return [i for i, stamp in stamps if (since is None or stamp >= since) and (until is None or stamp < until)]

    for since, until in ((low, None), (None, high), (low, high)):
        variables = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
        page = await all_events(client, seeded["own"], **variables)
        want = expected(since, until)
        assert ids(page) == want and page["totalCount"] == len(want), (variables, page)
        assert 0 < len(want) < len(stamps)
    # `since` is inclusive and `until` exclusive: the same instant for both selects nothing.
    assert (await all_events(client, seeded["own"], since=low.isoformat(), until=low.isoformat()))["edges"] == []
    later = stamps[-1][1].replace(year=stamps[-1][1].year + 1)
    assert (await all_events(client, seeded["own"], since=later.isoformat()))["totalCount"] == 0


async def test_events_backward_pagination(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    everything = ids(await all_events(client, seeded["own"]))
    assert len(everything) >= 7
    body = await gql(client, EVENTS, seeded["own"], {"last": 3})
    assert "errors" not in body, body
    tail = body["data"]["events"]
    assert ids(tail) == everything[-3:]
    assert tail["pageInfo"]["hasPreviousPage"] is True and tail["totalCount"] == len(everything)
    seen = ids(tail)
    before = tail["pageInfo"]["startCursor"]
    while True:
        page = (await gql(client, EVENTS, seeded["own"], {"last": 3, "before": before}))["data"]["events"]
        assert page["pageInfo"]["hasNextPage"] is True
        seen = ids(page) + seen
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert seen == everything
    cursors = [int(e["node"]["cursor"]) for e in tail["edges"]]
    assert cursors == sorted(cursors)


# --- Mutations -----------------------------------------------------------------------------------------------------

CREATE_ORGANIZATION = """mutation($name: String!, $domains: [String!]) {
  createOrganization(name: $name, domains: $domains) { id name domains createdAt directories { id } }
}"""
UPDATE_ORGANIZATION = """mutation($id: ID!, $name: String, $domains: [String!]) {
  updateOrganization(id: $id, name: $name, domains: $domains) { id name domains }
}"""


async def test_create_organization(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:  # noqa: F811
    variables = {"name": "  Globex  ", "domains": [" Globex.COM ", "globex.com", "eu.globex.com"]}
    body = await gql(client, CREATE_ORGANIZATION, seeded["admin"], variables)
    assert "errors" not in body, body
    created = body["data"]["createOrganization"]
    assert created["id"].startswith("org_") and created["name"] == "Globex"
    assert created["domains"] == ["globex.com", "eu.globex.com"] and created["directories"] == []
    fetched = await gql(client, ORGANIZATION, seeded["admin"], {"id": created["id"]})
    assert fetched["data"]["organization"]["domains"] == ["globex.com", "eu.globex.com"]
    bare = await gql(client, CREATE_ORGANIZATION, seeded["admin"], {"name": "No domains"})
    assert bare["data"]["createOrganization"]["domains"] == []
    for domains in (["not a domain.com"], ["nodot"], [".leading.dot"], ["trailing.dot."], [""]):
        bad = await gql(client, CREATE_ORGANIZATION, seeded["admin"], {"name": "Bad", "domains": domains})
        assert codes(bad) == ["BAD_USER_INPUT"], (domains, bad)
    assert codes(await gql(client, CREATE_ORGANIZATION, seeded["admin"], {"name": "   "})) == ["BAD_USER_INPUT"]
    # Invalid input created nothing.
    orgs = await gql(client, "{ organizations(first: 100) { totalCount } }", seeded["admin"])
    assert orgs["data"]["organizations"]["totalCount"] == 4
    assert codes(await gql(client, CREATE_ORGANIZATION, seeded["own"], {"name": "X"})) == ["FORBIDDEN"]


async def test_update_organization(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    variables = {"id": directory.organization_id, "name": "Acme Corp", "domains": ["acme.test", "ACME.example"]}
    body = await gql(client, UPDATE_ORGANIZATION, seeded["own"], variables)
    assert "errors" not in body, body
    assert body["data"]["updateOrganization"] == {
        "id": directory.organization_id,
        "name": "Acme Corp",
        "domains": ["acme.test", "acme.example"],
    }
    # Only the name: the domains stay.
    renamed = await gql(client, UPDATE_ORGANIZATION, seeded["own"], {"id": directory.organization_id, "name": "A2"})
    assert renamed["data"]["updateOrganization"]["domains"] == ["acme.test", "acme.example"]
    fetched = await gql(client, ORGANIZATION, seeded["own"], {"id": directory.organization_id})
    assert fetched["data"]["organization"]["name"] == "A2"
    bad = {"id": directory.organization_id, "domains": ["nodot"]}
    assert codes(await gql(client, UPDATE_ORGANIZATION, seeded["own"], bad)) == ["BAD_USER_INPUT"]
    other_id = seeded["other_directory"].organization_id
    hidden = await gql(client, UPDATE_ORGANIZATION, seeded["own"], {"id": other_id, "name": "Hijacked"})
    assert codes(hidden) == ["NOT_FOUND"]
    missing = await gql(client, UPDATE_ORGANIZATION, seeded["admin"], {"id": f"org_{MISSING}", "name": "X"})
    assert codes(missing) == ["NOT_FOUND"]
    untouched = await gql(client, ORGANIZATION, seeded["admin"], {"id": other_id})
    assert untouched["data"]["organization"]["name"] == "Acme"
    by_admin = await gql(client, UPDATE_ORGANIZATION, seeded["admin"], {"id": other_id, "name": "Initech"})
    assert by_admin["data"]["updateOrganization"]["name"] == "Initech"


DELETE_ORGANIZATION = "mutation($id: ID!) { deleteOrganization(id: $id) { id } }"


async def test_delete_organization(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    other = seeded["other_directory"]
    other_headers = {"Authorization": f"Bearer {other.token}"}
    assert (await client.get(f"{other.path}/Users", headers=other_headers)).status_code == 200
    # Organization keys may not delete organizations, not even their own.
    for key, organization_id in ((seeded["own"], directory.organization_id), (seeded["own"], other.organization_id)):
        assert codes(await gql(client, DELETE_ORGANIZATION, key, {"id": organization_id})) == ["FORBIDDEN"]
    body = await gql(client, DELETE_ORGANIZATION, seeded["admin"], {"id": other.organization_id})
    assert "errors" not in body, body
    assert body["data"]["deleteOrganization"] == {"id": other.organization_id}
    assert (await client.get(f"{other.path}/Users", headers=other_headers)).status_code == 401  # like a wrong token
    query = "query($id: ID!) { directory(id: $id) { id } }"
    assert codes(await gql(client, query, seeded["admin"], {"id": other.id})) == ["NOT_FOUND"]
    assert codes(await gql(client, ORGANIZATION, seeded["admin"], {"id": other.organization_id})) == ["NOT_FOUND"]
    again = await gql(client, DELETE_ORGANIZATION, seeded["admin"], {"id": other.organization_id})
    assert codes(again) == ["NOT_FOUND"]
    # The deletion is recorded (one dsync.deleted for its directory) and the rest is untouched.
    events = await all_events(client, seeded["admin"], org=other.organization_id)
    assert [e["node"]["event"] for e in events["edges"]][-1:] == ["dsync.deleted"]
    remaining = await gql(client, "{ organizations { edges { node { id } } } }", seeded["admin"])
    assert ids(remaining["data"]["organizations"]) == [directory.organization_id]
    assert (await client.get(f"{directory.path}/Users", headers=directory.headers)).status_code == 200


async def test_delete_organization_revokes_its_api_keys(
    client: httpx.AsyncClient,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    other = seeded["other_directory"]
    assert "errors" not in await gql(client, "{ organizations { totalCount } }", seeded["other"])
    body = await gql(client, DELETE_ORGANIZATION, seeded["admin"], {"id": other.organization_id})
    assert "errors" not in body, body
    # "Delete an organization with its directories ... and its API keys" (ops.organizations.delete_organization).
    assert codes(await gql(client, "{ organizations { totalCount } }", seeded["other"])) == ["UNAUTHENTICATED"]


RENAME = "mutation($id: ID!, $name: String!) { renameDirectory(id: $id, name: $name) { id name updatedAt } }"


async def test_rename_directory(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    before = await gql(
        client, "query($id: ID!) { directory(id: $id) { updatedAt } }", seeded["own"], {"id": directory.id}
    )
    body = await gql(client, RENAME, seeded["own"], {"id": directory.id, "name": "  Okta EU  "})
    assert "errors" not in body, body
    renamed = body["data"]["renameDirectory"]
    assert renamed["id"] == directory.id and renamed["name"] == "Okta EU"
    assert datetime.fromisoformat(renamed["updatedAt"]) >= datetime.fromisoformat(
        before["data"]["directory"]["updatedAt"]
    )
    fetched = await gql(
        client, "query($id: ID!) { directory(id: $id) { name } }", seeded["admin"], {"id": directory.id}
    )
    assert fetched["data"]["directory"]["name"] == "Okta EU"
    hidden = await gql(client, RENAME, seeded["other"], {"id": directory.id, "name": "Hijacked"})
    assert codes(hidden) == ["NOT_FOUND"]
    by_admin = await gql(client, RENAME, seeded["admin"], {"id": directory.id, "name": "Admin named"})
    assert by_admin["data"]["renameDirectory"]["name"] == "Admin named"


async def test_api_key_mutations_scope(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    create = "mutation($o: ID) { createApiKey(organizationId: $o) { key apiKey { id organizationId revokedAt } } }"
    assert codes(await gql(client, create, seeded["own"])) == ["FORBIDDEN"]
    other_org = seeded["other_directory"].organization_id
    assert codes(await gql(client, create, seeded["own"], {"o": other_org})) == ["NOT_FOUND"]
    issued = (await gql(client, create, seeded["admin"], {"o": other_org}))["data"]["createApiKey"]
    assert issued["apiKey"]["organizationId"] == other_org and issued["apiKey"]["revokedAt"] is None
    admin_key = (await gql(client, create, seeded["admin"]))["data"]["createApiKey"]
    assert admin_key["apiKey"]["organizationId"] is None
    revoke = "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }"
    for key_id in (issued["apiKey"]["id"], admin_key["apiKey"]["id"], f"api_key_{MISSING}"):
        assert codes(await gql(client, revoke, seeded["own"], {"id": key_id})) == ["NOT_FOUND"]
    # Still working: the failed revocations changed nothing.
    orgs = await gql(client, "{ organizations { edges { node { id } } } }", issued["key"])
    assert ids(orgs["data"]["organizations"]) == [other_org]
    assert "errors" not in await gql(client, "{ organizations { totalCount } }", admin_key["key"])
    revoked = await gql(client, revoke, seeded["admin"], {"id": issued["apiKey"]["id"]})
    assert revoked["data"]["revokeApiKey"]["revokedAt"]
    assert codes(await gql(client, "{ organizations { totalCount } }", issued["key"])) == ["UNAUTHENTICATED"]


# --- Authentication on every root field ----------------------------------------------------------------------------

# Bug: renameDirectory, rotateDirectoryToken, setDirectoryDeprovisionPolicy and deleteDirectory run
# visible_directory() (a directory lookup) before reading the principal, so without a key a missing directory id
# answers NOT_FOUND while an existing one answers UNAUTHENTICATED: an unauthenticated existence oracle.


def root(name: str, document: str, *marks: pytest.MarkDecorator) -> Any:
    return pytest.param(document, id=name, marks=marks)


ROOT_FIELDS = [
    root("organizations", "{ organizations { totalCount } }"),
    root("organization", f'{{ organization(id: "org_{MISSING}") {{ id }} }}'),
    root("directory", f'{{ directory(id: "directory_{MISSING}") {{ id }} }}'),
    root("directoryUser", f'{{ directoryUser(id: "directory_user_{MISSING}") {{ id }} }}'),
    root("directoryGroup", f'{{ directoryGroup(id: "directory_group_{MISSING}") {{ id }} }}'),
    root("node", f'{{ node(id: "org_{MISSING}") {{ __typename }} }}'),
    root("node-unknown-prefix", '{ node(id: "nonsense") { __typename } }'),
    root("events", "{ events { totalCount } }"),
    root("createOrganization", 'mutation { createOrganization(name: "X", domains: ["x.test"]) { id } }'),
    root("updateOrganization", f'mutation {{ updateOrganization(id: "org_{MISSING}", name: "X") {{ id }} }}'),
    root("deleteOrganization", f'mutation {{ deleteOrganization(id: "org_{MISSING}") {{ id }} }}'),
    root(
        "createDirectory",
        f'mutation {{ createDirectory(organizationId: "org_{MISSING}", name: "X") {{ bearerToken }} }}',
    ),
    root(
        "renameDirectory",
        f'mutation {{ renameDirectory(id: "directory_{MISSING}", name: "X") {{ id }} }}',
    ),
    root(
        "rotateDirectoryToken",
        f'mutation {{ rotateDirectoryToken(id: "directory_{MISSING}") {{ bearerToken }} }}',
    ),
    root(
        "setDirectoryDeprovisionPolicy",
        f'mutation {{ setDirectoryDeprovisionPolicy(id: "directory_{MISSING}", policy: DELETE_INACTIVE) {{ id }} }}',
    ),
    root("deleteDirectory", f'mutation {{ deleteDirectory(id: "directory_{MISSING}") {{ id }} }}'),
    root("createApiKey-admin", "mutation { createApiKey { key } }"),
    root("createApiKey-org", f'mutation {{ createApiKey(organizationId: "org_{MISSING}") {{ key }} }}'),
    root("revokeApiKey", f'mutation {{ revokeApiKey(id: "api_key_{MISSING}") {{ id }} }}'),
]


def unauthenticated(body: dict[str, Any]) -> bool:
    return codes(body) == ["UNAUTHENTICATED"] and not any((body.get("data") or {}).values())


@pytest.mark.parametrize("document", ROOT_FIELDS)
async def test_every_root_field_needs_an_api_key(client: httpx.AsyncClient, document: str) -> None:
    for key in (None, "dsync_key_wrong"):
        body = await gql(client, document, key)
        assert unauthenticated(body), (key, body)


@pytest.mark.parametrize("document", [pytest.param(p.values[0], id=p.id) for p in ROOT_FIELDS])
async def test_every_root_field_needs_an_api_key_for_existing_objects(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
    document: str,
) -> None:
    real = (
        document.replace(f"org_{MISSING}", directory.organization_id)
        .replace(f"directory_group_{MISSING}", seeded["group"]["id"])
        .replace(f"directory_user_{MISSING}", seeded["users"][0]["id"])
        .replace(f"directory_{MISSING}", directory.id)
    )
    for key in (None, "dsync_key_wrong"):
        body = await gql(client, real, key)
        assert unauthenticated(body), (key, body)
    # Nothing changed without a key.
    still = await gql(client, ORGANIZATION, seeded["admin"], {"id": directory.organization_id})
    assert still["data"]["organization"]["name"] == "Acme"
    assert [d["name"] for d in still["data"]["organization"]["directories"]] == ["JumpCloud"]
    assert (await client.get(f"{directory.path}/Users", headers=directory.headers)).status_code == 200
    orgs = await gql(client, "{ organizations { totalCount } }", seeded["admin"])
    assert orgs["data"]["organizations"]["totalCount"] == 2


# --- Bad input found by fuzzing (tests/robustness/test_fuzz_graphql.py) ---------------------------------------------


def forged_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode().rstrip("=")


@pytest.mark.parametrize("key", ["²", "٣", str(2**63), "99999999999999999999", "\x00"])
async def test_forged_cursors_are_bad_input(
    client: httpx.AsyncClient,
    seeded: dict[str, Any],  # noqa: F811
    key: str,
) -> None:
    """Were answered with "invalid literal for int()" or the SQL error and statement."""
    documents = ["query($c: String) { events(after: $c) { totalCount } }"]
    if key == "\x00":
        documents.append("query($c: String) { organizations(before: $c) { totalCount } }")
    for document in documents:
        assert codes(await gql(client, document, seeded["admin"], {"c": forged_cursor(key)})) == ["BAD_USER_INPUT"]


async def test_nul_characters_are_bad_input(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    """PostgreSQL can neither store nor compare U+0000: it answered with the SQL error text (SQLite stored it)."""
    admin = seeded["admin"]
    for document, variables in (
        ('{ directory(id: "x\\u0000") { id } }', None),
        ("query($id: ID!) { directoryUser(id: $id) { id } }", {"id": "directory_user_\x00"}),
        (
            "query($id: ID!, $s: String) { directory(id: $id) { users(search: $s) { totalCount } } }",
            {"id": directory.id, "s": "a\x00"},
        ),
        ('mutation { createOrganization(name: "a\\u0000") { id } }', None),
    ):
        assert codes(await gql(client, document, admin, variables)) == ["BAD_USER_INPUT"], document
    organizations = await gql(client, "{ organizations { totalCount } }", admin)
    assert organizations["data"]["organizations"]["totalCount"] == 2


async def test_events_time_range_bounds(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],  # noqa: F811
) -> None:
    """Instants with no UTC equivalent were SQL errors on PostgreSQL; on SQLite an offset was ignored."""
    for value in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        for name in ("since", "until"):
            assert codes(await gql(client, EVENTS, seeded["own"], {name: value})) == ["BAD_USER_INPUT"]
    everything = (await all_events(client, seeded["own"]))["edges"]
    middle = datetime.fromisoformat(everything[len(everything) // 2]["node"]["occurredAt"])
    in_utc = await all_events(client, seeded["own"], since=middle.isoformat())
    elsewhere = await all_events(
        client, seeded["own"], since=middle.astimezone(timezone(timedelta(hours=5))).isoformat()
    )
    assert ids(elsewhere) == ids(in_utc) and in_utc["totalCount"] > 0


async def test_malformed_requests(
    client: httpx.AsyncClient,
    seeded: dict[str, Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = seeded["admin"]
    # A subscription sent as a plain HTTP request ran as a query and failed ("Cannot return null").
    assert codes(await gql(client, "subscription { directoryEvents { cursor } }", admin)) == ["BAD_USER_INPUT"]
    # Bytes in no Unicode encoding were a 500.
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
    assert (await client.post("/graphql", content=b"\x80{}", headers=headers)).status_code == 400
    # A spread of an undefined fragment made the depth limit fail with KeyError, answered as the message "'F'".
    body = await gql(client, "{ organizations { totalCount ...F } }", admin)
    assert [error["message"] for error in body["errors"]] == ["Unknown fragment 'F'."]

    # Any other exception is logged, and answered without its text (which was SQL, with its parameters).
    async def broken(self: Loaders, keys: list[str]) -> list[Any]:
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(Loaders, "_organizations", broken)
    body = await gql(client, "query($id: ID!) { organization(id: $id) { id } }", admin, {"id": "org_x"})
    assert [error["message"] for error in body["errors"]] == ["Internal server error"]
