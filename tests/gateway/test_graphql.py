"""The GraphQL API over HTTP: auth and tenant scope, queries, keyset pagination, mutations, statement counts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import event

from gateway.ops import api_keys
from tests.conftest import DirectoryFixture, make_directory

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def gql(
    client: httpx.AsyncClient, query: str, key: str | None, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


async def api_key(app: Any, organization_id: str | None) -> str:
    issued: api_keys.IssuedApiKey = await app.state.database.transaction(
        lambda session: api_keys.create_api_key(session, organization_id=organization_id)
    )
    return issued.key


@pytest.fixture
async def seeded(client: httpx.AsyncClient, directory: DirectoryFixture, app: Any) -> dict[str, Any]:
    users = []
    for i in range(7):
        body: dict[str, Any] = {"userName": f"u{i}@acme.test", "name": {"givenName": f"G{i}", "familyName": "Doe"}}
        if i == 6:
            body["active"] = False
        users.append((await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)).json())
    group = (
        await client.post(
            f"{directory.path}/Groups",
            json={"displayName": "Eng", "members": [{"value": u["id"]} for u in users[:3]]},
            headers=directory.headers,
        )
    ).json()
    other = await make_directory(app.state.database, name="Other tenant")
    return {
        "users": users,
        "group": group,
        "admin": await api_key(app, None),
        "own": await api_key(app, directory.organization_id),
        "other": await api_key(app, other.organization_id),
        "other_directory": other,
    }


DIRECTORY = """
query($id: ID!, $first: Int, $after: String, $last: Int, $before: String, $state: UserState, $search: String) {
  directory(id: $id) {
    id name type state endpoint userCount activeUserCount inactiveUserCount groupCount
    organization { id name }
    users(first: $first, after: $after, last: $last, before: $before, state: $state, search: $search) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id userName state groups { id name memberCount } directory { id } } }
    }
  }
}
"""


async def test_auth_and_tenant_scope(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]
) -> None:
    variables = {"id": directory.id}
    assert codes(await gql(client, DIRECTORY, None, variables)) == ["UNAUTHENTICATED"]
    assert codes(await gql(client, DIRECTORY, "dsync_key_wrong", variables)) == ["UNAUTHENTICATED"]
    for key in (seeded["admin"], seeded["own"]):
        body = await gql(client, DIRECTORY, key, variables)
        assert "errors" not in body, body
        assert body["data"]["directory"]["userCount"] == 7
    # Another tenant's id answers exactly like a missing one.
    other = await gql(client, DIRECTORY, seeded["other"], variables)
    missing = await gql(client, DIRECTORY, seeded["other"], {"id": "directory_01JZZZZZZZZZZZZZZZZZZZZZZZ"})
    assert codes(other) == codes(missing) == ["NOT_FOUND"]
    assert other["errors"][0]["message"].replace(directory.id, "X") == missing["errors"][0]["message"].replace(
        "directory_01JZZZZZZZZZZZZZZZZZZZZZZZ", "X"
    )
    user_id = seeded["users"][0]["id"]
    query = "query($id: ID!) { directoryUser(id: $id) { id } }"
    assert codes(await gql(client, query, seeded["other"], {"id": user_id})) == ["NOT_FOUND"]
    orgs = await gql(client, "{ organizations(first: 10) { totalCount edges { node { id } } } }", seeded["other"])
    assert orgs["data"]["organizations"]["totalCount"] == 1


async def test_directory_page_counts_and_filters(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]
) -> None:
    body = await gql(client, DIRECTORY, seeded["own"], {"id": directory.id, "first": 100})
    d = body["data"]["directory"]
    assert (d["userCount"], d["activeUserCount"], d["inactiveUserCount"], d["groupCount"]) == (7, 6, 1, 1)
    assert d["endpoint"] == directory.endpoint and d["state"] == "LINKED" and d["type"] == "JUMPCLOUD"
    first_user = d["users"]["edges"][0]["node"]
    assert first_user["groups"] == [{"id": seeded["group"]["id"], "name": "Eng", "memberCount": 3}]
    assert first_user["directory"]["id"] == directory.id
    inactive = await gql(client, DIRECTORY, seeded["own"], {"id": directory.id, "state": "INACTIVE"})
    assert [e["node"]["id"] for e in inactive["data"]["directory"]["users"]["edges"]] == [seeded["users"][6]["id"]]
    search = await gql(client, DIRECTORY, seeded["own"], {"id": directory.id, "search": "U3@"})
    assert [e["node"]["userName"] for e in search["data"]["directory"]["users"]["edges"]] == ["u3@acme.test"]


async def test_keyset_pagination_forward_and_backward(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]
) -> None:
    ids = sorted(u["id"] for u in seeded["users"])
    seen: list[str] = []
    after = None
    while True:
        page = (await gql(client, DIRECTORY, seeded["own"], {"id": directory.id, "first": 3, "after": after}))["data"][
            "directory"
        ]["users"]
        seen += [e["node"]["id"] for e in page["edges"]]
        assert page["totalCount"] == 7
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids
    # Exact page: 7 items with first 7 has no next page; the empty page after the end.
    exact = (await gql(client, DIRECTORY, seeded["own"], {"id": directory.id, "first": 7}))["data"]["directory"]
    assert exact["users"]["pageInfo"]["hasNextPage"] is False
    end = exact["users"]["pageInfo"]["endCursor"]
    empty = (await gql(client, DIRECTORY, seeded["own"], {"id": directory.id, "first": 3, "after": end}))["data"]
    assert empty["directory"]["users"]["edges"] == [] and empty["directory"]["users"]["pageInfo"]["endCursor"] is None
    # Backward: the last 2 before the end cursor.
    back = (await gql(client, DIRECTORY, seeded["own"], {"id": directory.id, "last": 2, "before": end}))["data"]
    assert [e["node"]["id"] for e in back["directory"]["users"]["edges"]] == ids[4:6]
    assert back["directory"]["users"]["pageInfo"]["hasPreviousPage"] is True
    for bad in ({"first": 101}, {"first": -1}, {"first": 2, "last": 2}, {"after": "not-a-cursor"}):
        body = await gql(client, DIRECTORY, seeded["own"], {"id": directory.id, **bad})
        assert codes(body) == ["BAD_USER_INPUT"], body


async def test_events_query(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    query = """query($dir: ID, $names: [String!], $after: String) {
      events(directoryId: $dir, events: $names, first: 5, after: $after) {
        totalCount pageInfo { endCursor hasNextPage } edges { node { event cursor user { id } group { id } } }
      }
    }"""
    added = await gql(client, query, seeded["own"], {"dir": directory.id, "names": ["dsync.group.user_added"]})
    page = added["data"]["events"]
    assert page["totalCount"] == 3
    assert all(e["node"]["user"] and e["node"]["group"]["id"] == seeded["group"]["id"] for e in page["edges"])
    everything = await gql(client, query, seeded["own"], {"dir": directory.id})
    rest = await gql(
        client,
        query,
        seeded["own"],
        {"dir": directory.id, "after": everything["data"]["events"]["pageInfo"]["endCursor"]},
    )
    cursors = [
        int(e["node"]["cursor"]) for e in everything["data"]["events"]["edges"] + rest["data"]["events"]["edges"]
    ]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    scoped = await gql(client, query, seeded["other"], {"dir": directory.id})
    assert codes(scoped) == ["NOT_FOUND"]


async def test_mutations(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    create = """mutation($org: ID!) { createDirectory(organizationId: $org, name: "Okta", type: OKTA) {
      bearerToken endpoint directory { id name type deprovisionPolicy } } }"""
    made = await gql(client, create, seeded["own"], {"org": directory.organization_id})
    created = made["data"]["createDirectory"]
    assert created["directory"]["type"] == "OKTA" and len(created["bearerToken"]) > 40
    new_id = created["directory"]["id"]
    # The new token works on SCIM; rotation kills it at once.
    scim = f"/scim/v2/{new_id}/Users"
    assert (await client.get(scim, headers={"Authorization": f"Bearer {created['bearerToken']}"})).status_code == 200
    rotate = "mutation($id: ID!) { rotateDirectoryToken(id: $id) { bearerToken } }"
    rotated = (await gql(client, rotate, seeded["own"], {"id": new_id}))["data"]["rotateDirectoryToken"]
    assert (await client.get(scim, headers={"Authorization": f"Bearer {created['bearerToken']}"})).status_code == 401
    assert (await client.get(scim, headers={"Authorization": f"Bearer {rotated['bearerToken']}"})).status_code == 200
    rename = 'mutation($id: ID!) { renameDirectory(id: $id, name: "  ") { name } }'
    assert codes(await gql(client, rename, seeded["own"], {"id": new_id})) == ["BAD_USER_INPUT"]
    policy = (
        "mutation($id: ID!) { setDirectoryDeprovisionPolicy(id: $id, policy: DELETE_INACTIVE) { deprovisionPolicy } }"
    )
    assert (await gql(client, policy, seeded["own"], {"id": new_id}))["data"]["setDirectoryDeprovisionPolicy"] == {
        "deprovisionPolicy": "DELETE_INACTIVE"
    }
    # Other tenants and org keys hit the walls.
    assert codes(await gql(client, policy, seeded["other"], {"id": new_id})) == ["NOT_FOUND"]
    assert codes(await gql(client, 'mutation { createOrganization(name: "X") { id } }', seeded["own"])) == ["FORBIDDEN"]
    delete = "mutation($id: ID!) { deleteDirectory(id: $id) { id } }"
    assert (await gql(client, delete, seeded["own"], {"id": new_id}))["data"]["deleteDirectory"] == {"id": new_id}
    # A deleted directory's SCIM URL answers like a wrong token.
    assert (await client.get(scim, headers={"Authorization": f"Bearer {rotated['bearerToken']}"})).status_code == 401
    # API keys: create, use, revoke.
    key = (
        await gql(
            client,
            "mutation($o: ID) { createApiKey(organizationId: $o) { key apiKey { id } } }",
            seeded["own"],
            {"o": directory.organization_id},
        )
    )["data"]["createApiKey"]
    assert "errors" not in await gql(client, "{ organizations { totalCount } }", key["key"])
    revoke = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }"
    assert (await gql(client, revoke, seeded["own"], {"id": key["apiKey"]["id"]}))["data"]["revokeApiKey"]["revokedAt"]
    assert codes(await gql(client, "{ organizations { totalCount } }", key["key"])) == ["UNAUTHENTICATED"]


async def test_a_page_of_100_users_with_groups_is_a_constant_number_of_statements(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any], app: Any
) -> None:
    for i in range(100):
        await client.post(f"{directory.path}/Users", json={"userName": f"bulk{i}@acme.test"}, headers=directory.headers)
    await app.state.request_log.stop()  # its flush of these requests (every second) is not part of this page
    database = app.state.database
    engine = database.sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The event pump and the webhook worker read on their own schedule: not part of this page.
        background = "FROM events" in statement or "webhook_" in statement
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")) and not background:
            statements.append(statement)

    query = """query($id: ID!) { directory(id: $id) { id name users(first: 100) {
      edges { node { id userName groups { id name } directory { id name } } } } } }"""
    event.listen(engine, "before_cursor_execute", count)
    try:
        body = await gql(client, query, seeded["own"], {"id": directory.id})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(body["data"]["directory"]["users"]["edges"]) == 100
    assert len(statements) <= 5, statements


async def test_groups_read_with_the_page_are_the_loaders_groups(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]
) -> None:
    """A page of users asking for their groups reads them with the page (directly, in an inline fragment, in a named
    fragment, under a group's members): each user's groups are the ones ``directoryUser(id)`` loads one by one."""
    extra = await client.post(
        f"{directory.path}/Groups",
        json={"displayName": "Ops", "members": [{"value": u["id"]} for u in seeded["users"][1:5]]},
        headers=directory.headers,
    )
    assert extra.status_code == 201, extra.text
    key, variables = seeded["own"], {"id": directory.id, "group": seeded["group"]["id"]}
    one_by_one = {}
    for user in seeded["users"]:
        body = await gql(
            client, "query($u: ID!) { directoryUser(id: $u) { groups { id name } } }", key, {"u": user["id"]}
        )
        one_by_one[user["id"]] = body["data"]["directoryUser"]["groups"]
    assert sorted(len(groups) for groups in one_by_one.values()) == [0, 0, 1, 1, 1, 2, 2]
    shapes = [
        "users(first: 10) { edges { node { id groups { id name } } } }",
        "users(first: 10) { edges { node { id ... on DirectoryUser { groups { id name } } } } }",
        "users(first: 10) { edges { ...E } }",
    ]
    fragment = "fragment E on DirectoryUserEdge { node { id groups { id name } } }"
    for shape in shapes:
        query = f"query($id: ID!) {{ directory(id: $id) {{ {shape} }} }}" + (f" {fragment}" if "...E" in shape else "")
        body = await gql(client, query, key, {"id": directory.id})
        assert "errors" not in body, body
        edges = body["data"]["directory"]["users"]["edges"]
        assert {edge["node"]["id"]: edge["node"]["groups"] for edge in edges} == one_by_one, shape
    members = await gql(
        client,
        "query($group: ID!) { directoryGroup(id: $group) { members { edges { node { id groups { id name } } } } } }",
        key,
        {"group": variables["group"]},
    )
    edges = members["data"]["directoryGroup"]["members"]["edges"]
    assert len(edges) == 3 and all(edge["node"]["groups"] == one_by_one[edge["node"]["id"]] for edge in edges)


async def test_first_members_of_many_groups_are_one_statement_and_the_same_page(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any], app: Any
) -> None:
    """``members(first: n)`` under every group of a page reads all the groups' first members at once; each page (its
    nodes, cursors, pageInfo, totalCount) is the one the filtered statement pages through (``state: ACTIVE`` takes
    that path; the members here are all active)."""
    users = seeded["users"][:6]
    for size in (1, 4, 5):
        group = {"displayName": f"Size {size}", "members": [{"value": u["id"]} for u in users[:size]]}
        assert (await client.post(f"{directory.path}/Groups", json=group, headers=directory.headers)).status_code == 201
    await app.state.request_log.stop()
    page = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { id } }"
    query = f"""query($id: ID!) {{ directory(id: $id) {{ groups(first: 10) {{ edges {{ node {{ name
      two: members(first: 2) {{ {page} }} all: members {{ {page} }}
      twoActive: members(first: 2, state: ACTIVE) {{ {page} }} allActive: members(state: ACTIVE) {{ {page} }}
    }} }} }} }} }}"""
    body = await gql(client, query, seeded["own"], {"id": directory.id})
    assert "errors" not in body, body
    groups = [edge["node"] for edge in body["data"]["directory"]["groups"]["edges"]]
    assert sorted(group["all"]["totalCount"] for group in groups) == [1, 3, 4, 5]
    for group in groups:
        assert group["two"] == group["twoActive"] and group["all"] == group["allActive"], group["name"]
    database = app.state.database
    engine = database.sync_engine if database.is_sqlite else database.engine.sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM events" not in statement:
            statements.append(statement)

    members = f"members(first: 3) {{ {page} }}"
    short = f"query($id: ID!) {{ directory(id: $id) {{ groups {{ edges {{ node {{ {members} }} }} }} }} }}"
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert "errors" not in await gql(client, short, seeded["own"], {"id": directory.id})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) <= 5, statements  # key, directory, groups page, first members, member counts


async def test_limits(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:
    deep = (
        "{ organizations { edges { node { directories { organization { directories { organization { directories {"
        " organization { directories { organization { id } } } } } } } } } } } }"
    )
    assert "errors" in await gql(client, deep, seeded["admin"])
    aliases = "{ " + " ".join(f"a{i}: organizations {{ totalCount }}" for i in range(40)) + " }"
    assert "errors" in await gql(client, aliases, seeded["admin"])


async def test_with_a_gql_client(app: Any, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    from gql import Client, GraphQLRequest
    from gql.transport import httpx as gql_transport
    from gql.transport.exceptions import TransportQueryError
    from gql.transport.httpx import HTTPXAsyncTransport

    # gql prefers httpx2 when it is installed (the workos SDK brings it): the ASGI transport of the module it uses.
    gql_httpx: Any = vars(gql_transport)["httpx"]

    def transport(key: str) -> HTTPXAsyncTransport:
        return HTTPXAsyncTransport(
            url="http://testserver/graphql",
            headers={"Authorization": f"Bearer {key}"},
            transport=gql_httpx.ASGITransport(app=app),
        )

    query = GraphQLRequest(
        "query($id: ID!) { directory(id: $id) { id userCount "
        "groups(first: 5) { edges { node { name memberCount } } } } }",
        variable_values={"id": directory.id},
    )
    async with Client(transport=transport(seeded["own"])) as session:
        result = await session.execute(query)
    assert result["directory"]["userCount"] == 7
    assert result["directory"]["groups"]["edges"] == [{"node": {"name": "Eng", "memberCount": 3}}]
    async with Client(transport=transport(seeded["other"])) as session:
        with pytest.raises(TransportQueryError) as caught:
            await session.execute(query)
    assert caught.value.errors and caught.value.errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_bootstrap_admin_key(settings: Any) -> None:
    from dataclasses import replace

    from gateway.app import create_app

    application = create_app(replace(settings, admin_key="dsync_key_bootstrap_for_tests_0123456789abcdef"))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            body = await gql(http, "{ organizations { totalCount } }", "dsync_key_bootstrap_for_tests_0123456789abcdef")
    assert "errors" not in body and body["data"]["organizations"]["totalCount"] >= 0


async def test_timeout_answers_a_graphql_error(settings: Any, seeded: dict[str, Any]) -> None:
    from dataclasses import replace

    from gateway.app import create_app

    application = create_app(replace(settings, graphql_timeout_seconds=0.000001))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            body = await gql(http, "{ organizations { totalCount } }", seeded["admin"])
    assert codes(body) == ["TIMEOUT"]


async def test_get_queries_and_token_limit(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {seeded['admin']}"}
    response = await client.get("/graphql", params={"query": "{ organizations { totalCount } }"}, headers=headers)
    assert response.status_code == 200 and response.json()["data"]["organizations"]["totalCount"] == 2
    mutation = await client.get(
        "/graphql", params={"query": 'mutation { createOrganization(name: "X") { id } }'}, headers=headers
    )
    assert mutation.status_code >= 400  # mutations are POST-only
    fields = " ".join("totalCount" for _ in range(1200))
    body = await gql(client, f"{{ organizations {{ {fields} }} }}", seeded["admin"])
    assert "errors" in body and body.get("data") is None
