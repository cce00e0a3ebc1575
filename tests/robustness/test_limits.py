"""Every request-size limit at its boundary: the largest request it allows passes, one step more is refused with a
clear error (SCIM error schema / GraphQL error) and changes nothing. Other limits are tested where they live:
the SCIM rate limit in tests/scim/test_rate_limit.py; subscriptions per connection, the connection-init timeout and
keepalive in tests/gateway/test_websocket_protocol.py; a slow subscriber in bench/subscriptions.py and
tests/gateway/test_subscriptions.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.graphql.schema import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from gateway.ops import api_keys
from tests.conftest import DirectoryFixture

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _user_body(size: int) -> bytes:
    head, tail = b'{"userName": "big@acme.test", "displayName": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_scim_bodies_up_to_the_limit_pass_and_one_byte_more_is_413(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    limit = app.state.settings.scim_max_body_bytes
    over = await client.post(f"{directory.path}/Users", content=_user_body(limit + 1), headers=directory.headers)
    assert over.status_code == 413
    assert over.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    listed = await client.get(f"{directory.path}/Users", headers=directory.headers)
    assert listed.json()["totalResults"] == 0
    at = await client.post(f"{directory.path}/Users", content=_user_body(limit), headers=directory.headers)
    assert at.status_code == 201, at.text
    assert len(at.json()["displayName"]) > limit - 100


@pytest.fixture
async def admin_key(app: Any) -> str:
    issued = await app.state.database.transaction(lambda s: api_keys.create_api_key(s, organization_id=None))
    return str(issued.key)


async def _errors(client: httpx.AsyncClient, key: str, query: str) -> list[str]:
    response = await client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code < 500
    return [error["message"] for error in response.json().get("errors", [])]


def _nested(depth: int) -> str:
    """A valid query whose deepest field sits at ``depth`` (organizations → edges → node → directories ↔
    organization …): Strawberry counts the selection sets below the operation."""
    path = ["organizations", "edges", "node"]
    while len(path) < depth:
        path.append("directories" if path[-1] in ("node", "organization") else "organization")
    query = "id" if path[-1] in ("node", "organization") else "totalCount" if path[-1] == "organizations" else "id"
    for field in reversed(path):
        query = f"{field} {{ {query} }}"
    return "{ " + query + " }"


async def test_graphql_depth_limit(client: httpx.AsyncClient, admin_key: str) -> None:
    assert not [m for m in await _errors(client, admin_key, _nested(MAX_DEPTH)) if "depth" in m]
    assert any("depth" in m for m in await _errors(client, admin_key, _nested(MAX_DEPTH + 1)))


async def test_graphql_alias_limit(client: httpx.AsyncClient, admin_key: str) -> None:
    def aliases(n: int) -> str:
        return "{ " + " ".join(f"a{i}: organizations {{ totalCount }}" for i in range(n)) + " }"

    assert await _errors(client, admin_key, aliases(MAX_ALIASES)) == []
    assert any("alias" in m.lower() for m in await _errors(client, admin_key, aliases(MAX_ALIASES + 1)))


async def test_graphql_token_limit(client: httpx.AsyncClient, admin_key: str) -> None:
    def tokens(n: int) -> str:  # 12 tokens around the list's values; a list keeps validation cheap
        names = ", ".join(['"dsync.user.created"'] * (n - 12))
        return f"{{ events(events: [{names}]) {{ totalCount }} }}"

    assert await _errors(client, admin_key, tokens(MAX_TOKENS)) == []
    assert any("tokens" in m for m in await _errors(client, admin_key, tokens(MAX_TOKENS + 1)))


async def test_wide_documents_within_the_token_limit_are_refused_not_crashed(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    # A thousand sibling fields: graphql-core stops validating (its work cap) with a clear error, no 5xx.
    errors = await _errors(client, admin_key, "{ organizations { " + " ".join(["totalCount"] * 1000) + " } }")
    assert errors == ["Validation aborted."]


# -- bounded SCIM work ---------------------------------------------------------------------------------------------

PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _emails(count: int, domain: str = "acme.test") -> list[dict[str, str]]:
    return [{"value": f"e{i}@{domain}", "type": "work"} for i in range(count)]


async def test_patch_operations_and_multi_valued_lengths_at_their_limits(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    settings = app.state.settings
    path, headers = directory.path, directory.headers
    values, operations = settings.scim_max_multi_values, settings.scim_max_patch_operations
    over = await client.post(
        f"{path}/Users", json={"userName": "a@acme.test", "emails": _emails(values + 1)}, headers=headers
    )
    assert over.status_code == 400 and over.json()["scimType"] == "invalidValue"
    created = await client.post(
        f"{path}/Users", json={"userName": "a@acme.test", "emails": _emails(values)}, headers=headers
    )
    assert created.status_code == 201, created.text
    url = f"{path}/Users/{created.json()['id']}"

    async def patch(ops: list[dict[str, Any]]) -> httpx.Response:
        return await client.patch(url, json={"schemas": [PATCH_URN], "Operations": ops}, headers=headers)

    removes = [{"op": "remove", "path": f'emails[value eq "e{i}@acme.test"]'} for i in range(operations + 1)]
    too_many = await patch(removes)
    assert too_many.status_code == 400 and too_many.json()["scimType"] == "tooMany"
    growing = await patch([{"op": "add", "path": "emails", "value": [{"value": "one.more@acme.test"}]}])
    assert growing.status_code == 400 and growing.json()["scimType"] == "invalidValue"
    assert len((await client.get(url, headers=headers)).json()["emails"]) == values  # nothing written
    done = await patch(removes[:operations])
    assert done.status_code == 200, done.text
    assert len(done.json().get("emails", [])) == max(0, values - operations)


def _deep(depth: int) -> bytes:
    """A user whose body nests ``depth`` objects (the body itself is the first)."""
    nested = b'{"a": ' * (depth - 1) + b'"x"' + b"}" * (depth - 1)
    return b'{"userName": "deep@acme.test", "urn:example:deep": ' + nested + b"}"


async def test_json_nesting_at_the_limit_passes_and_deeper_is_400(
    client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    from scim.api.http import MAX_JSON_DEPTH

    for depth in (MAX_JSON_DEPTH + 1, 300, 2000):
        deep = await client.post(f"{directory.path}/Users", content=_deep(depth), headers=directory.headers)
        assert deep.status_code == 400, (depth, deep.text)
    listed = await client.get(f"{directory.path}/Users", headers=directory.headers)
    assert listed.json()["totalResults"] == 0
    at = await client.post(f"{directory.path}/Users", content=_deep(MAX_JSON_DEPTH), headers=directory.headers)
    assert at.status_code == 201, at.text
