"""Listing, pagination, projection, media types, ETags and group member replacement over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, text
from sqlmodel import col

from gateway.store.models import Event, GroupMembership
from tests.conftest import DirectoryFixture

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def make_users(client: httpx.AsyncClient, directory: DirectoryFixture, n: int) -> list[dict[str, Any]]:
    created = []
    for i in range(n):
        body = {
            "userName": f"user{i:02d}@acme.test",
            "name": {"givenName": f"U{i}", "familyName": "Test"},
            "emails": [{"value": f"user{i:02d}@acme.test", "type": "work", "primary": True}],
            ENTERPRISE: {"department": "Sales" if i % 2 else "R&D"},
        }
        response = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
        assert response.status_code == 201, response.text
        created.append(response.json())
    return created


async def test_pagination_is_stable_and_complete(client: httpx.AsyncClient, directory: DirectoryFixture) -> None:
    users = await make_users(client, directory, 7)
    seen: list[str] = []
    for start in (1, 4, 7):
        page = (
            await client.get(
                f"{directory.path}/Users", params={"startIndex": start, "count": 3}, headers=directory.headers
            )
        ).json()
        assert page["totalResults"] == 7 and page["startIndex"] == start
        assert page["itemsPerPage"] == len(page["Resources"]) == min(3, 8 - start)
        seen += [r["id"] for r in page["Resources"]]
    assert seen == sorted(u["id"] for u in users)
    only_total = (await client.get(f"{directory.path}/Users", params={"count": 0}, headers=directory.headers)).json()
    assert only_total["totalResults"] == 7 and only_total["Resources"] == [] and only_total["itemsPerPage"] == 0
    odd = (
        await client.get(
            f"{directory.path}/Users", params={"startIndex": -5, "count": 100000}, headers=directory.headers
        )
    ).json()
    assert odd["startIndex"] == 1 and odd["itemsPerPage"] == 7
    filtered = (
        await client.get(
            f"{directory.path}/Users",
            params={"filter": f'{ENTERPRISE}:department eq "sales" and emails[type eq "work"]'},
            headers=directory.headers,
        )
    ).json()
    assert filtered["totalResults"] == 3


async def test_attribute_projection(client: httpx.AsyncClient, directory: DirectoryFixture) -> None:
    [user] = await make_users(client, directory, 1)
    url = f"{directory.path}/Users/{user['id']}"
    only = (await client.get(url, params={"attributes": "userName,name.givenName"}, headers=directory.headers)).json()
    assert only == {
        "schemas": user["schemas"],
        "id": user["id"],
        "userName": "user00@acme.test",
        "name": {"givenName": "U0"},
    }
    without = (
        await client.get(url, params={"excludedAttributes": f"groups,emails,{ENTERPRISE}"}, headers=directory.headers)
    ).json()
    assert "groups" not in without and "emails" not in without and ENTERPRISE not in without
    assert without["userName"] == "user00@acme.test" and without["id"] == user["id"]
    listed = (
        await client.get(f"{directory.path}/Users", params={"attributes": "userName"}, headers=directory.headers)
    ).json()
    assert set(listed["Resources"][0]) == {"schemas", "id", "userName"}


async def test_media_types_and_etags(client: httpx.AsyncClient, directory: DirectoryFixture) -> None:
    types = ("application/json", "application/scim+json; charset=utf-8", "application/json;charset=UTF-8")
    for i, content_type in enumerate(types):
        headers = {**directory.headers, "Content-Type": content_type}
        response = await client.post(
            f"{directory.path}/Users", content=f'{{"userName": "media{i}@x.test"}}', headers=headers
        )
        assert response.status_code == 201, (content_type, response.text)
    user = response.json()
    url = f"{directory.path}/Users/{user['id']}"
    cached = await client.get(url, headers={**directory.headers, "If-None-Match": user["meta"]["version"]})
    assert cached.status_code == 304
    patch = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]}
    ok = await client.patch(url, json=patch, headers={**directory.headers, "If-Match": user["meta"]["version"]})
    assert ok.status_code == 200 and ok.headers["etag"] != user["meta"]["version"]


async def test_group_put_applies_member_difference(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    a, b, c = await make_users(client, directory, 3)
    group = (
        await client.post(
            f"{directory.path}/Groups",
            json={"displayName": "G", "members": [{"value": a["id"]}, {"value": b["id"]}]},
            headers=directory.headers,
        )
    ).json()
    url = f"{directory.path}/Groups/{group['id']}"
    async with app.state.database.read() as session:
        before = await session.scalar(select(col(Event.cursor)).order_by(col(Event.cursor).desc()).limit(1))
    # PUT without members keeps them (not asserted); a PUT with members applies only the difference.
    kept = await client.put(url, json={"displayName": "G"}, headers=directory.headers)
    assert {m["value"] for m in kept.json()["members"]} == {a["id"], b["id"]}
    replaced = await client.put(
        url, json={"displayName": "G", "members": [{"value": b["id"]}, {"value": c["id"]}]}, headers=directory.headers
    )
    assert {m["value"] for m in replaced.json()["members"]} == {b["id"], c["id"]}
    emptied = await client.patch(
        url,
        json={"schemas": [PATCH], "Operations": [{"op": "replace", "path": "members", "value": []}]},
        headers=directory.headers,
    )
    assert emptied.status_code == 204
    async with app.state.database.read() as session:
        names = list(
            await session.execute(
                select(col(Event.event), col(Event.data)).where(col(Event.cursor) > before).order_by(col(Event.cursor))
            )
        )
        assert [(n, d["user"]["id"]) for n, d in names] == [
            ("dsync.group.user_removed", a["id"]),
            ("dsync.group.user_added", c["id"]),
            ("dsync.group.user_removed", b["id"]),
            ("dsync.group.user_removed", c["id"]),
        ]
        assert await session.scalar(select(col(GroupMembership.user_id)).limit(1)) is None


async def test_sqlite_runs_in_wal_with_foreign_keys(app: Any) -> None:
    database = app.state.database
    if not database.is_sqlite:
        return
    async with database.read() as session:
        assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await session.execute(text("PRAGMA busy_timeout"))).scalar() == 10_000


async def test_member_display_is_kept_as_the_client_set_it(
    client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    a, b = await make_users(client, directory, 2)
    group = (
        await client.post(
            f"{directory.path}/Groups",
            json={
                "displayName": "D",
                "members": [{"value": a["id"], "display": "Ada (IdP label)"}, {"value": b["id"]}],
            },
            headers=directory.headers,
        )
    ).json()
    shown = {m["value"]: m["display"] for m in group["members"]}
    assert shown == {a["id"]: "Ada (IdP label)", b["id"]: "user01@acme.test"}
