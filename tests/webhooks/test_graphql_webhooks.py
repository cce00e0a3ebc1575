"""Webhook endpoints over GraphQL: organization keys manage their organization's endpoints (never another's, never
a private address), admin keys any, with the secret shown once and the attempts visible."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import DirectoryFixture, make_directory
from tests.gateway.test_graphql import api_key, codes, gql

CREATE = """
mutation($url: String!, $org: ID, $events: [String!]) {
  createWebhookEndpoint(url: $url, organizationId: $org, events: $events) {
    secret webhookEndpoint { id organizationId url events enabled state attempts { statusCode } }
  }
}"""
LIST = "{ webhookEndpoints { id url } }"


async def test_webhook_endpoints_through_graphql(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    admin = await api_key(app, None)
    own = await api_key(app, directory.organization_id)
    other_directory = await make_directory(app.state.database, name="Other")
    other = await api_key(app, other_directory.organization_id)

    created = await gql(
        client,
        CREATE,
        own,
        {"url": "https://hooks.acme.test/", "org": directory.organization_id, "events": ["dsync.user.created"]},
    )
    result = created["data"]["createWebhookEndpoint"]
    endpoint = result["webhookEndpoint"]
    assert result["secret"].startswith("whsec_")
    assert endpoint["events"] == ["dsync.user.created"] and endpoint["state"] == "active" and endpoint["attempts"] == []

    assert codes(await gql(client, CREATE, own, {"url": "http://127.0.0.1:9/", "org": directory.organization_id})) == [
        "BAD_USER_INPUT"
    ]
    assert codes(
        await gql(
            client, CREATE, own, {"url": "https://x.test/", "events": ["dsync.nope"], "org": directory.organization_id}
        )
    ) == ["BAD_USER_INPUT"]
    assert codes(await gql(client, CREATE, own, {"url": "https://x.test/"})) == ["FORBIDDEN"]  # all organizations
    assert codes(await gql(client, CREATE, other, {"url": "https://x.test/", "org": directory.organization_id})) == [
        "NOT_FOUND"
    ]
    admin_created = await gql(client, CREATE, admin, {"url": "http://127.0.0.1:9/"})
    assert admin_created["data"]["createWebhookEndpoint"]["webhookEndpoint"]["organizationId"] is None

    assert [e["id"] for e in (await gql(client, LIST, own))["data"]["webhookEndpoints"]] == [endpoint["id"]]
    assert (await gql(client, LIST, other))["data"]["webhookEndpoints"] == []
    assert len((await gql(client, LIST, admin))["data"]["webhookEndpoints"]) == 2

    update = "mutation($id: ID!) { updateWebhookEndpoint(id: $id, enabled: false, events: []) { enabled events } }"
    assert codes(await gql(client, update, other, {"id": endpoint["id"]})) == ["NOT_FOUND"]
    updated = (await gql(client, update, own, {"id": endpoint["id"]}))["data"]["updateWebhookEndpoint"]
    assert updated == {"enabled": False, "events": []}
    resume = "mutation($id: ID!) { resumeWebhookEndpoint(id: $id) { state } }"
    assert (await gql(client, resume, own, {"id": endpoint["id"]}))["data"]["resumeWebhookEndpoint"][
        "state"
    ] == "active"
    redeliver = "mutation($id: ID!, $e: ID!) { redeliverWebhookEndpoint(id: $id, fromEventId: $e) { state } }"
    assert codes(await gql(client, redeliver, own, {"id": endpoint["id"], "e": "event_missing"})) == ["NOT_FOUND"]
    delete = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { id } }"
    assert codes(await gql(client, delete, other, {"id": endpoint["id"]})) == ["NOT_FOUND"]
    assert (await gql(client, delete, own, {"id": endpoint["id"]}))["data"]["deleteWebhookEndpoint"]["id"] == endpoint[
        "id"
    ]
    assert (await gql(client, LIST, own))["data"]["webhookEndpoints"] == []
