"""Read plans (gateway.graphql.plans) answer exactly what graphql-core answers: the same JSON, errors included, for
documents a plan covers (aliases, fragments, variables, __typename, every field it reads, every argument) and for
requests it hands back (no key, another tenant's directory, bad page arguments, a bad cursor). Each document runs
twice, with and without plans; the covered ones are checked to have a plan, and cost a constant number of
statements whatever the page size."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse
from sqlalchemy import event

from gateway.graphql import execution
from gateway.graphql.plans import plan_for
from gateway.graphql.schema import schema
from tests.conftest import DirectoryFixture, make_directory
from tests.gateway.test_graphql import api_key

USER_FIELDS = (
    "id directoryId idpId userName email emails firstName lastName displayName jobTitle state role roles "
    "customAttributes rawAttributes createdAt updatedAt __typename"
)
GROUP_FIELDS = "id directoryId idpId name rawAttributes createdAt updatedAt __typename"
DIRECTORY_FIELDS = (
    "id organizationId name type state deprovisionPolicy createdAt updatedAt endpoint userCount activeUserCount "
    "inactiveUserCount groupCount __typename"
)
PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor __typename }"


async def post(client: httpx.AsyncClient, key: str | None, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def has_plan(query: str) -> bool:
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return plan_for(schema._schema, operation, fragments) is not None


@pytest.fixture
async def directory_data(client: httpx.AsyncClient, directory: DirectoryFixture, app: Any) -> dict[str, Any]:
    """Users with and without optional attributes (null names, emails, job titles), inactive ones, custom and
    enterprise attributes, groups of several sizes, a role mapping; another tenant with a directory of its own."""
    users = []
    for i in range(12):
        body: dict[str, Any] = {"userName": f"user{i:02d}@acme.test", "externalId": f"ext-{i}"}
        if i % 3:
            body["name"] = {"givenName": f"Given{i}", "familyName": "Doe" if i % 2 else "Roe"}
            body["emails"] = [{"value": f"user{i}@acme.test", "primary": True, "type": "work"}]
        if i % 4 == 0:
            body["title"] = "Engineer"
            body["displayName"] = f"User {i}"
            body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = {"department": "R&D"}
        if i % 5 == 4:
            body["active"] = False
        response = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
        assert response.status_code == 201, response.text
        users.append(response.json())
    groups = []
    for name, members in (("Eng", users[:5]), ("Ops", users[3:9]), ("Empty", []), ("Sales", users[::2])):
        body = {"displayName": name, "members": [{"value": user["id"]} for user in members]}
        response = await client.post(f"{directory.path}/Groups", json=body, headers=directory.headers)
        assert response.status_code == 201, response.text
        groups.append(response.json())
    admin = await api_key(app, None)
    roles = f"""mutation {{ createRole(organizationId: "{directory.organization_id}", slug: "eng", name: "Eng") {{ id }}
      mapGroupToRole(directoryId: "{directory.id}", groupId: "{groups[0]["id"]}", role: "eng") {{ priority }} }}"""
    assert "errors" not in await post(client, admin, roles, {})
    other = await make_directory(app.state.database, name="Other tenant")
    return {
        "directory": directory,
        "users": users,
        "groups": groups,
        "admin": admin,
        "own": await api_key(app, directory.organization_id),
        "other": await api_key(app, other.organization_id),
        "other_directory": other.id,
    }


def documents(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(query, variables, whether it has a plan): the pages the dashboard asks and every shape around them."""
    d = data["directory"].id
    users, groups = data["users"], data["groups"]
    one = {"id": d}
    page = f"edges {{ cursor node {{ {USER_FIELDS} groups {{ {GROUP_FIELDS} }} }} }} {PAGE_INFO} totalCount"
    return [
        (f"query($id: ID!) {{ directory(id: $id) {{ {DIRECTORY_FIELDS} users {{ {page} }} }} }}", one, True),
        (
            "query Dashboard($id: ID!, $first: Int!) { directory(id: $id) { id name userCount activeUserCount "
            "inactiveUserCount groupCount users(first: $first) { edges { cursor node { id userName email firstName "
            "lastName displayName state groups { id name } } } pageInfo { endCursor hasNextPage } } } }",
            {"id": d, "first": 5},
            True,
        ),
        # Paging both ways, an empty page, the default size, a size from a variable's default.
        (
            f"query($id: ID!, $a: String) {{ directory(id: $id) {{ users(first: 3, after: $a) {{ {page} }} }} }}",
            one,
            True,
        ),
        (
            f"query($id: ID!) {{ directory(id: $id) {{ users(last: 4) {{ {page} }} "
            "groups(last: 2) { totalCount } } }",
            one,
            True,
        ),
        (f"query($id: ID!, $n: Int = 2) {{ directory(id: $id) {{ users(first: $n) {{ {page} }} }} }}", one, True),
        (f"query($id: ID!) {{ directory(id: $id) {{ users(first: 0) {{ {page} }} }} }}", one, True),
        (
            f'query($id: ID!) {{ directory(id: $id) {{ users(search: "nobody-at-all") {{ {page} }} }} }}',
            one,
            True,
        ),
        # Every filter.
        (
            f"query($id: ID!, $s: UserState) {{ directory(id: $id) {{ users(state: $s) {{ {page} }} }} }}",
            {"id": d, "s": "INACTIVE"},
            True,
        ),
        (f'query($id: ID!) {{ directory(id: $id) {{ users(search: "DOE") {{ {page} }} }} }}', one, True),
        (
            f"query($id: ID!, $g: ID) {{ directory(id: $id) {{ users(groupId: $g, first: 2) {{ {page} }} }} }}",
            {"id": d, "g": groups[1]["id"]},
            True,
        ),
        (f'query($id: ID!) {{ directory(id: $id) {{ users(role: "eng") {{ {page} }} }} }}', one, True),
        # Groups pages.
        (
            f"query($id: ID!, $m: ID) {{ directory(id: $id) {{ groups(memberId: $m) {{ edges {{ cursor node {{ "
            f"{GROUP_FIELDS} }} }} {PAGE_INFO} totalCount __typename }} }} }}",
            {"id": d, "m": users[4]["id"]},
            True,
        ),
        (
            f'query($id: ID!) {{ directory(id: $id) {{ groups(search: "s", first: 1) {{ edges {{ node {{ name }} }} '
            f"{PAGE_INFO} }} }} }}",
            one,
            True,
        ),
        # Aliases, repeated and merged fields, __typename everywhere.
        (
            "query($id: ID!) { __typename a: directory(id: $id) { n: name __typename c: userCount } "
            "b: directory(id: $id) { groupCount "
            "first: users(first: 2) { e: edges { c: cursor u: node { i: id groups { g: name } } } } "
            "last: users(last: 2) { edges { node { id } } } users(first: 3) { edges { node { id } } } "
            "users(first: 3) { edges { node { userName groups { id } } __typename } pageInfo { endCursor } } } }",
            one,
            True,
        ),
        # Fragments: named, inline, on an interface, nested, spread twice.
        (
            "query($id: ID!) { directory(id: $id) { ...D ... on Directory { userCount } ... { groupCount } } } "
            "fragment D on Directory { name users(first: 4) { ...C } } "
            "fragment C on DirectoryUserConnection { edges { node { ...U ... on Node { id } ...U } } totalCount } "
            "fragment U on DirectoryUser { userName groups { ... on DirectoryGroup { name } } }",
            one,
            True,
        ),
        # Documents with no plan: answered by graphql-core either way.
        (
            "query($id: ID!) { directory(id: $id) { organization { name } "
            "users(first: 2) { edges { node { id } } } } }",
            one,
            False,
        ),
        ("query($id: ID!) { directory(id: $id) { groups { edges { node { memberCount } } } } }", one, False),
        (
            "query($id: ID!, $x: Boolean!) { directory(id: $id) { name @include(if: $x) } }",
            {"id": d, "x": False},
            False,
        ),
        ("{ viewer { isAdmin } }", {}, False),
        # Requests a plan hands back to graphql-core: its errors, exactly.
        ('{ directory(id: "directory_01J0000000000000000000000") { name } }', {}, True),
        (f"query($id: ID!) {{ directory(id: $id) {{ users(first: 101) {{ {page} }} }} }}", one, True),
        (f"query($id: ID!) {{ directory(id: $id) {{ users(first: 1, last: 1) {{ {page} }} }} }}", one, True),
        (f'query($id: ID!) {{ directory(id: $id) {{ name users(after: "zzz") {{ {page} }} }} }}', one, True),
        (
            f"query($id: ID!) {{ a: directory(id: $id) {{ name }} b: directory(id: $id) {{ users(first: -1) {{ {page} "
            "} } }",
            one,
            True,
        ),
    ]


async def test_plans_answer_what_graphql_core_answers(
    client: httpx.AsyncClient, directory_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cursor from the middle of the directory, for the pages after it.
    first = await post(
        client,
        directory_data["admin"],
        "query($id: ID!) { directory(id: $id) { users(first: 5) { edges { cursor } } } }",
        {"id": directory_data["directory"].id},
    )
    middle = first["data"]["directory"]["users"]["edges"][4]["cursor"]
    cases = documents(directory_data)
    keys = [directory_data["admin"], directory_data["own"], directory_data["other"], None]
    answers: list[dict[str, Any]] = []
    for query, variables, covered in cases:
        assert has_plan(query) is covered, query
        for key in keys:
            answers.append(await post(client, key, query, {**variables, "a": middle} if "$a" in query else variables))
    planned_errors = sum(1 for body in answers if "errors" in body)
    assert 0 < planned_errors < len(answers)  # both kinds of answers are compared
    monkeypatch.setattr(execution, "plan_for", lambda *args: None)
    at = 0
    for query, variables, _covered in cases:
        for key in keys:
            expected = await post(client, key, query, {**variables, "a": middle} if "$a" in query else variables)
            assert answers[at] == expected, (query, key)
            at += 1


async def test_a_named_operation_of_several_has_its_own_plan(
    client: httpx.AsyncClient, directory_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    query = (
        "query Names($id: ID!) { directory(id: $id) { users { edges { node { userName } } } } } "
        "query Counts($id: ID!) { directory(id: $id) { userCount groupCount } }"
    )
    headers = {"Authorization": f"Bearer {directory_data['own']}"}
    body = {"query": query, "variables": {"id": directory_data["directory"].id}, "operationName": "Counts"}
    planned = (await client.post("/graphql", json=body, headers=headers)).json()
    assert planned == {"data": {"directory": {"userCount": 12, "groupCount": 4}}}
    monkeypatch.setattr(execution, "plan_for", lambda *args: None)
    assert (await client.post("/graphql", json=body, headers=headers)).json() == planned


@pytest.mark.parametrize("size", [5, 100])
async def test_a_planned_dashboard_page_is_a_constant_number_of_statements(
    client: httpx.AsyncClient, directory_data: dict[str, Any], app: Any, size: int
) -> None:
    directory = directory_data["directory"]
    for i in range(100):
        body = {"userName": f"bulk{i}@acme.test"}
        assert (await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)).status_code == 201
    await app.state.request_log.stop()
    database = app.state.database
    engine = database.sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        background = "FROM events" in statement or "webhook_" in statement  # the pump and the webhook worker
        if statement.lstrip().upper().startswith("SELECT") and not background:
            statements.append(statement)

    query = (
        "query($id: ID!, $first: Int!) { directory(id: $id) { name userCount activeUserCount inactiveUserCount "
        "groupCount users(first: $first) { totalCount edges { node { id userName groups { id name } } } } } }"
    )
    assert has_plan(query)
    event.listen(engine, "before_cursor_execute", count)
    try:
        answer = await post(client, directory_data["own"], query, {"id": directory.id, "first": size})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(answer["data"]["directory"]["users"]["edges"]) == size
    # The directory, its four counts, the page, its users' groups, the total (the API key is read by a prebuilt
    # statement straight on the connection, gateway.store.prepared, which the engine's events do not see).
    assert len(statements) == 5, statements
