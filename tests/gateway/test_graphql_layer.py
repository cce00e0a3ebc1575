"""The GraphQL layer's shared pieces: the page arguments every connection declares once, and Event.user / Event.group
read through the typed payloads (an event about neither answers null)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import strawberry

from gateway.graphql.pagination import PageRequest, connection_field
from tests.conftest import DirectoryFixture
from tests.gateway.test_graphql import api_key, gql


def test_a_connection_field_without_a_page_parameter_is_refused() -> None:
    with pytest.raises(TypeError, match="page: PageRequest"):

        @strawberry.type
        class Broken:
            @connection_field()
            async def items(self, first: int | None = None) -> int:
                return 0

        strawberry.Schema(query=Broken)


async def test_the_page_arguments_stand_where_the_page_parameter_is() -> None:
    @strawberry.type
    class Query:
        @connection_field()
        async def items(self, head: str | None = None, *, page: PageRequest, tail: int | None = None) -> str:
            return repr((head, page, tail))

    schema = strawberry.Schema(query=Query)
    arguments = "head: String = null, first: Int = null, after: String = null, last: Int = null, before: String = null"
    assert f"items({arguments}, tail: Int = null): String!" in str(schema)
    result = await schema.execute('{ items(head: "h", first: 2, after: "c", tail: 3) }')
    assert result.errors is None, result.errors
    assert result.data == {"items": repr(("h", PageRequest(first=2, after="c"), 3))}


async def test_event_user_and_group_by_event_kind(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    user = await client.post(f"{directory.path}/Users", json={"userName": "a@acme.test"}, headers=directory.headers)
    group = await client.post(
        f"{directory.path}/Groups",
        json={"displayName": "Eng", "members": [{"value": user.json()["id"]}]},
        headers=directory.headers,
    )
    assert group.status_code == 201, group.text
    query = """query($dir: ID) { events(directoryId: $dir, first: 100) { edges { node {
      event user { id userName state } group { id name } } } } }"""
    key = await api_key(app, directory.organization_id)
    body = await gql(client, query, key, {"dir": directory.id})
    seen = {edge["node"]["event"]: edge["node"] for edge in body["data"]["events"]["edges"]}
    user_out = {"id": user.json()["id"], "userName": "a@acme.test", "state": "ACTIVE"}
    group_out = {"id": group.json()["id"], "name": "Eng"}
    assert seen["dsync.user.created"]["user"] == user_out and seen["dsync.user.created"]["group"] is None
    assert seen["dsync.group.created"]["group"] == group_out and seen["dsync.group.created"]["user"] is None
    assert seen["dsync.group.user_added"]["user"] == user_out and seen["dsync.group.user_added"]["group"] == group_out
    # A deleted directory's log stays readable; dsync.deleted is about neither a user nor a group.
    deleted = await gql(client, "mutation($id: ID!) { deleteDirectory(id: $id) { id } }", key, {"id": directory.id})
    assert deleted["data"] == {"deleteDirectory": {"id": directory.id}}, deleted
    body = await gql(client, query, key, {"dir": directory.id})
    last = body["data"]["events"]["edges"][-1]["node"]
    assert last == {"event": "dsync.deleted", "user": None, "group": None}
