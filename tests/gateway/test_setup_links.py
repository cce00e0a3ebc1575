"""Setup links over HTTP on both stores: create (GraphQL), open without an API key, reveal once (a new token, the
old one stops working, nothing else changes), expired and used links refused clearly, the token stored hashed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import col

from gateway.ops import setup_links
from gateway.store.models import SetupLink, utcnow
from tests.conftest import DirectoryFixture, make_directory
from tests.gateway.test_graphql import api_key, codes, gql

CREATE = "mutation($id: ID!, $hours: Float) { createSetupLink(directoryId: $id, hours: $hours) { id url expiresAt } }"


async def _link(client: httpx.AsyncClient, app: Any, directory: DirectoryFixture) -> tuple[str, str]:
    key = await api_key(app, directory.organization_id)
    created = (await gql(client, CREATE, key, {"id": directory.id, "hours": 24}))["data"]["createSetupLink"]
    assert created["url"].startswith("http://testserver/setup/#dsync_setup_")
    return created["id"], created["url"].split("#", 1)[1]


async def test_reveal_once(client: httpx.AsyncClient, app: Any, directory: DirectoryFixture) -> None:
    _id, token = await _link(client, app, directory)
    opened = await client.post("/setup/api/open", json={"token": token})
    assert opened.status_code == 200 and opened.headers["cache-control"] == "no-store"
    view = opened.json()
    assert view["directory"]["endpoint"] == directory.endpoint and view["directory"]["state"] == "unlinked"
    assert view["revealed"] is False and "token" not in str(view["directory"])

    revealed = (await client.post("/setup/api/reveal", json={"token": token})).json()
    new_token = revealed["bearer_token"]
    assert new_token.startswith("dsync_scim_") and new_token != directory.token
    old = await client.get(f"{directory.path}/Users", headers=directory.headers)
    assert old.status_code == 401  # the reveal rotated the directory's token
    again = await client.post("/setup/api/reveal", json={"token": token})
    assert again.status_code == 410 and again.json()["error"] == "used"

    # The link still shows the live status to its holder: the first SCIM request links the directory.
    headers = {**directory.headers, "Authorization": f"Bearer {new_token}"}
    assert (await client.get(f"{directory.path}/Users", headers=headers)).status_code == 200
    status = (await client.post("/setup/api/open", json={"token": token})).json()
    assert status["directory"]["state"] == "linked" and status["revealed"] is True

    def stored(session: Any) -> list[SetupLink]:
        return setup_links.list_setup_links(session, directory_id=directory.id)

    rows = await app.state.database.query(stored)
    assert len(rows) == 1 and token not in rows[0].token_hash and rows[0].revealed_at is not None


async def test_refusals(client: httpx.AsyncClient, app: Any, directory: DirectoryFixture) -> None:
    link_id, token = await _link(client, app, directory)

    def expire(session: Any) -> None:
        past = utcnow() - timedelta(days=1)
        session.execute(update(SetupLink).where(col(SetupLink.id) == link_id).values(expires_at=past))

    await app.state.database.transaction(expire)
    expired = await client.post("/setup/api/open", json={"token": token})
    assert expired.status_code == 410 and expired.json()["error"] == "expired"
    assert (await client.post("/setup/api/reveal", json={"token": token})).status_code == 410
    assert (await client.get(f"{directory.path}/Users", headers=directory.headers)).status_code == 200  # unchanged

    for body in ({"token": "dsync_setup_nope"}, {"token": 5}, {}, None):
        unknown = await client.post("/setup/api/open", json=body)
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown"
    assert (await client.post("/setup/api/open", content=b"not json")).status_code == 404

    # An organization key cannot make links for another tenant's directory; hours are bounded.
    other = await make_directory(app.state.database, name="Other")
    outsider = await api_key(app, other.organization_id)
    assert codes(await gql(client, CREATE, outsider, {"id": directory.id, "hours": 1})) == ["NOT_FOUND"]
    own = await api_key(app, directory.organization_id)
    assert codes(await gql(client, CREATE, own, {"id": directory.id, "hours": 10_000})) == ["BAD_USER_INPUT"]


LIST = "query($id: ID!) { setupLinks(directoryId: $id) { id directoryId status createdAt expiresAt revealedAt } }"
REVOKE = "mutation($id: ID!) { revokeSetupLink(id: $id) { id status } }"


async def test_list_and_revoke(client: httpx.AsyncClient, app: Any, directory: DirectoryFixture) -> None:
    used_id, used_token = await _link(client, app, directory)
    assert (await client.post("/setup/api/reveal", json={"token": used_token})).status_code == 200
    link_id, token = await _link(client, app, directory)
    key = await api_key(app, directory.organization_id)
    listed = (await gql(client, LIST, key, {"id": directory.id}))["data"]["setupLinks"]
    assert [(row["id"], row["status"]) for row in listed] == [(link_id, "ACTIVE"), (used_id, "USED")]
    assert listed[1]["revealedAt"] and listed[0]["revealedAt"] is None and "url" not in listed[0]

    # Another tenant sees neither the list nor the link.
    other = await make_directory(app.state.database, name="Other")
    outsider = await api_key(app, other.organization_id)
    assert codes(await gql(client, LIST, outsider, {"id": directory.id})) == ["NOT_FOUND"]
    assert codes(await gql(client, REVOKE, outsider, {"id": link_id})) == ["NOT_FOUND"]

    revoked = (await gql(client, REVOKE, key, {"id": link_id}))["data"]["revokeSetupLink"]
    assert revoked == {"id": link_id, "status": "ACTIVE"}
    gone = await client.post("/setup/api/open", json={"token": token})
    assert gone.status_code == 404 and gone.json()["error"] == "unknown"
    assert [row["id"] for row in (await gql(client, LIST, key, {"id": directory.id}))["data"]["setupLinks"]] == [
        used_id
    ]
    assert codes(await gql(client, REVOKE, key, {"id": link_id})) == ["NOT_FOUND"]


async def test_setup_page_is_served_with_the_dashboard_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/setup/")
    assert page.status_code == 200 and "js/setup.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
