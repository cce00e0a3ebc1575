"""GraphQL for the operator's first day: ``viewer``, ``apiKeys`` with last use, revocation that never echoes a
secret, codes on parse and validation errors, JSON answers for transport refusals, the organizations example."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import DirectoryFixture, make_directory
from tests.gateway.test_graphql import api_key, codes, gql


async def test_viewer_tells_admin_from_organization_key(
    client: httpx.AsyncClient, app: Any, directory: DirectoryFixture
) -> None:
    admin, own = await api_key(app, None), await api_key(app, directory.organization_id)
    query = "{ viewer { apiKeyId isAdmin organization { id name } } }"
    assert (await gql(client, query, admin))["data"]["viewer"]["isAdmin"] is True
    viewer = (await gql(client, query, own))["data"]["viewer"]
    assert viewer["isAdmin"] is False and viewer["organization"]["id"] == directory.organization_id
    assert viewer["apiKeyId"].startswith("api_key_")
    assert codes(await gql(client, query, None)) == ["UNAUTHENTICATED"]


async def test_api_keys_lists_scope_and_last_use_never_secrets(
    client: httpx.AsyncClient, app: Any, directory: DirectoryFixture
) -> None:
    admin, own = await api_key(app, None), await api_key(app, directory.organization_id)
    other = await make_directory(app.state.database, name="Other")
    await api_key(app, other.organization_id)
    query = "{ apiKeys(includeRevoked: true) { id scope organizationId createdAt lastUsedAt revokedAt } }"
    body = await gql(client, query, admin)
    keys = body["data"]["apiKeys"]
    assert len(keys) == 3 and {k["scope"] for k in keys} == {"admin", directory.organization_id, other.organization_id}
    assert admin not in str(body) and own not in str(body)
    used = [k for k in keys if k["scope"] == "admin"][0]
    assert used["lastUsedAt"] is not None  # this very request used it
    scoped = (await gql(client, query, own))["data"]["apiKeys"]
    assert [k["scope"] for k in scoped] == [directory.organization_id]


async def test_revoke_with_the_key_itself_does_not_echo_it(client: httpx.AsyncClient, app: Any) -> None:
    admin = await api_key(app, None)
    victim = await api_key(app, None)
    body = await gql(client, "mutation($id: ID!) { revokeApiKey(id: $id) { id } }", admin, {"id": victim})
    assert codes(body) == ["BAD_USER_INPUT"] and victim not in str(body)
    keys = (await gql(client, "{ apiKeys { id } }", admin))["data"]["apiKeys"]
    victim_id = [
        k["id"]
        for k in keys
        if k["id"] != (await gql(client, "{ viewer { apiKeyId } }", admin))["data"]["viewer"]["apiKeyId"]
    ][0]
    revoked = await gql(
        client, "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }", admin, {"id": victim_id}
    )
    assert revoked["data"]["revokeApiKey"]["revokedAt"] is not None
    assert codes(await gql(client, "{ viewer { isAdmin } }", victim)) == ["UNAUTHENTICATED"]


async def test_parse_and_validation_errors_carry_codes(client: httpx.AsyncClient, app: Any) -> None:
    admin = await api_key(app, None)
    assert set(codes(await gql(client, "{ organizations { id name } }", admin))) == {"GRAPHQL_VALIDATION_FAILED"}
    assert codes(await gql(client, "{ viewer { ", admin)) == ["GRAPHQL_PARSE_FAILED"]
    # The README's example: organizations is a connection.
    body = await gql(client, "{ organizations(first: 10) { edges { node { id name directories { id } } } } }", admin)
    assert "errors" not in body


async def test_transport_refusals_are_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql")
    assert response.status_code == 400 and response.headers["content-type"].startswith("application/json")
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST" and "POST /graphql" in error["message"]
    broken = await client.post("/graphql", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
