"""The WorkOS REST API over the ASGI app, on SQLite and PostgreSQL: objects, filters, keyset pagination both ways,
the events cursor, organization scope and WorkOS's error shapes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.ops import api_keys
from tests.conftest import DirectoryFixture, make_directory

API = "/workos"


async def api_key(app: Any, organization_id: str | None) -> str:
    issued = await app.state.database.transaction(lambda s: api_keys.create_api_key(s, organization_id=organization_id))
    return str(issued.key)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def scim_user(client: httpx.AsyncClient, directory: DirectoryFixture, i: int, **extra: Any) -> dict[str, Any]:
    body = {
        "userName": f"user{i}@acme.test",
        "externalId": f"ext-{i}",
        "name": {"givenName": f"Given{i}", "familyName": "Doe"},
        "emails": [{"value": f"User{i}@Acme.test", "type": "work", "primary": True}],
        **extra,
    }
    response = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
async def seeded(client: httpx.AsyncClient, directory: DirectoryFixture, app: Any) -> dict[str, Any]:
    users = [await scim_user(client, directory, i) for i in range(3)]
    no_external_id = await client.post(
        f"{directory.path}/Users", json={"userName": "plain@acme.test"}, headers=directory.headers
    )
    users.append(no_external_id.json())
    engineering = await client.post(
        f"{directory.path}/Groups",
        json={"displayName": "Engineering", "externalId": "eng", "members": [{"value": u["id"]} for u in users[:2]]},
        headers=directory.headers,
    )
    sales = await client.post(
        f"{directory.path}/Groups",
        json={"displayName": "Sales", "members": [{"value": users[0]["id"]}]},
        headers=directory.headers,
    )
    other = await make_directory(app.state.database, name="Other tenant", type="okta")
    return {
        "users": users,
        "engineering": engineering.json(),
        "sales": sales.json(),
        "admin": await api_key(app, None),
        "own": await api_key(app, directory.organization_id),
        "other": await api_key(app, other.organization_id),
        "other_directory": other,
    }


async def get(client: httpx.AsyncClient, path: str, key: str, **params: Any) -> httpx.Response:
    return await client.get(f"{API}{path}", params=params, headers=auth(key))


async def test_directories(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    listed = (await get(client, "/directories", seeded["admin"])).json()
    assert listed["object"] == "list"
    assert [d["id"] for d in listed["data"]] == [seeded["other_directory"].id, directory.id]  # newest first
    assert listed["list_metadata"] == {"before": None, "after": None}
    own = (await get(client, "/directories", seeded["own"])).json()["data"]
    assert own == [
        {
            "object": "directory",
            "id": directory.id,
            "organization_id": directory.organization_id,
            "external_key": "",
            "type": "jump cloud scim v2.0",  # WorkOS's spelling
            "state": "linked",
            "name": "JumpCloud",
            "domain": None,
            "created_at": own[0]["created_at"],
            "updated_at": own[0]["updated_at"],
        }
    ]
    assert own[0]["created_at"].endswith("Z")
    fetched = await get(client, f"/directories/{directory.id}", seeded["own"])
    assert fetched.json() == own[0]
    filtered = await get(client, "/directories", seeded["admin"], organization_id=directory.organization_id)
    assert [d["id"] for d in filtered.json()["data"]] == [directory.id]
    searched = await get(client, "/directories", seeded["admin"], search="other")
    assert [d["id"] for d in searched.json()["data"]] == [seeded["other_directory"].id]
    by_domain = await get(client, "/directories", seeded["admin"], domain="ACME.test")
    assert {d["id"] for d in by_domain.json()["data"]} == {directory.id, seeded["other_directory"].id}
    # Another organization's directory answers exactly like a missing one.
    hidden = await get(client, f"/directories/{directory.id}", seeded["other"])
    missing = await get(client, "/directories/directory_missing", seeded["other"])
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == {
        "message": f"Directory not found: '{directory.id}'.",
        "code": "entity_not_found",
        "entity_id": directory.id,
    }


async def test_users_and_groups(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    users, key = seeded["users"], seeded["own"]
    listed = (await get(client, "/directory_users", key, directory=directory.id, order="asc")).json()
    assert [u["id"] for u in listed["data"]] == [u["id"] for u in users]
    first = listed["data"][0]
    assert first["object"] == "directory_user"
    assert first["organization_id"] == directory.organization_id
    assert first["idp_id"] == "ext-0" and first["username"] == "user0@acme.test"
    assert first["email"] == "User0@Acme.test" and first["first_name"] == "Given0" and first["state"] == "active"
    assert {g["name"] for g in first["groups"]} == {"Engineering", "Sales"}
    assert all(g["object"] == "directory_group" for g in first["groups"])
    assert listed["data"][3]["idp_id"] == ""  # sent without externalId: WorkOS's empty string
    assert listed["data"][3]["groups"] == []
    assert (await get(client, f"/directory_users/{first['id']}", key)).json() == first

    members = (await get(client, "/directory_users", key, group=seeded["engineering"]["id"])).json()["data"]
    assert {u["id"] for u in members} == {users[0]["id"], users[1]["id"]}
    by_idp = (await get(client, "/directory_users", key, directory=directory.id, idp_id="ext-2")).json()["data"]
    assert [u["id"] for u in by_idp] == [users[2]["id"]]
    by_email = (await get(client, "/directory_users", key, directory=directory.id, email="user1@ACME.TEST")).json()
    assert [u["id"] for u in by_email["data"]] == [users[1]["id"]]

    groups = (await get(client, "/directory_groups", key, directory=directory.id)).json()["data"]
    assert [g["name"] for g in groups] == ["Sales", "Engineering"]  # newest first
    engineering = next(g for g in groups if g["name"] == "Engineering")
    assert engineering["idp_id"] == "eng" and engineering["directory_id"] == directory.id
    assert engineering["organization_id"] == directory.organization_id
    assert set(engineering) == {
        "object",
        "id",
        "idp_id",
        "directory_id",
        "organization_id",
        "name",
        "raw_attributes",
        "created_at",
        "updated_at",
    }
    assert (await get(client, f"/directory_groups/{engineering['id']}", key)).json() == engineering
    of_user = (await get(client, "/directory_groups", key, user=users[1]["id"])).json()["data"]
    assert [g["name"] for g in of_user] == ["Engineering"]

    # Another tenant sees none of it, exactly as if it did not exist.
    other = seeded["other"]
    for path in (f"/directory_users/{users[0]['id']}", f"/directory_groups/{engineering['id']}"):
        assert (await get(client, path, other)).json()["code"] == "entity_not_found"
    assert (await get(client, "/directory_users", other, directory=directory.id)).status_code == 404
    assert (await get(client, "/directory_groups", other, user=users[0]["id"])).status_code == 404


async def collect(client: httpx.AsyncClient, key: str, directory_id: str, order: str, limit: int) -> list[list[str]]:
    """Every page following ``after``, as lists of ids."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"directory": directory_id, "order": order, "limit": limit}
        if after:
            params["after"] = after
        body = (await get(client, "/directory_users", key, **params)).json()
        pages.append([u["id"] for u in body["data"]])
        assert body["list_metadata"]["before"] == (None if len(pages) == 1 else pages[-1][0])
        after = body["list_metadata"]["after"]
        if after is None:
            return pages
        assert after == pages[-1][-1]


async def test_pagination_both_ways(client: httpx.AsyncClient, directory: DirectoryFixture, app: Any) -> None:
    key = await api_key(app, directory.organization_id)
    ids = [(await scim_user(client, directory, i))["id"] for i in range(25)]
    for order, expected in (("desc", ids[::-1]), ("asc", ids)):
        pages = await collect(client, key, directory.id, order, 10)
        assert [len(p) for p in pages] == [10, 10, 5]
        assert sum(pages, []) == expected
        # Back from the last page with `before`: the same pages in reverse.
        before: str | None = pages[-1][0]
        back: list[list[str]] = []
        while before:
            params = {"directory": directory.id, "order": order, "limit": 10, "before": before}
            body = (await get(client, "/directory_users", key, **params)).json()
            back.append([u["id"] for u in body["data"]])
            assert body["list_metadata"]["after"] == back[-1][-1]
            before = body["list_metadata"]["before"]
        assert back == pages[-2::-1]
    # `normal`: newest first, but `after` means newer and `before` older.
    body = (await get(client, "/directory_users", key, directory=directory.id, order="normal", limit=10)).json()
    assert [u["id"] for u in body["data"]] == ids[::-1][:10]
    assert body["list_metadata"] == {"before": ids[15], "after": None}
    older = (await get(client, "/directory_users", key, directory=directory.id, order="normal", before=ids[15])).json()
    assert [u["id"] for u in older["data"]] == ids[::-1][10:20]
    assert older["list_metadata"] == {"before": ids[5], "after": ids[14]}


async def test_events(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    key = seeded["own"]
    body = (await get(client, "/events", key, limit=100)).json()
    names = [e["event"] for e in body["data"]]
    assert names[0] == "dsync.activated" and names.count("dsync.user.created") == 4
    assert "dsync.group.user_added" in names and body["list_metadata"]["after"] is None
    activated = body["data"][0]
    assert activated["object"] == "event" and activated["id"].startswith("event_")
    assert activated["data"]["type"] == "jump cloud scim v2.0"
    assert activated["data"]["external_key"] == "" and activated["data"]["domains"] == []
    plain = next(
        e for e in body["data"] if e["event"] == "dsync.user.created" and e["data"]["username"] == "plain@acme.test"
    )
    assert plain["data"]["idp_id"] == ""

    # After a cursor: the rest of the log, in order, page by page.
    first = (await get(client, "/events", key, limit=3)).json()
    assert first["list_metadata"]["after"] == first["data"][-1]["id"]
    rest = (await get(client, "/events", key, limit=100, after=first["list_metadata"]["after"])).json()
    assert [e["id"] for e in first["data"] + rest["data"]] == [e["id"] for e in body["data"]]

    created = (await get(client, "/events", key, events="dsync.user.created,dsync.group.created", limit=100)).json()
    assert {e["event"] for e in created["data"]} == {"dsync.user.created", "dsync.group.created"}
    assert len(created["data"]) == 6
    repeated = await client.get(
        f"{API}/events?events=dsync.group.created&events=dsync.user.created&limit=100", headers=auth(key)
    )
    assert repeated.json()["data"] == created["data"]
    newest = (await get(client, "/events", key, order="desc", limit=1)).json()["data"]
    assert newest[0]["id"] == body["data"][-1]["id"]
    stamp = body["data"][2]["created_at"]
    since = (await get(client, "/events", key, range_start=stamp, limit=100)).json()["data"]
    assert since and all(e["created_at"] >= stamp for e in since)
    until = (await get(client, "/events", key, range_end="2000-01-01T00:00:00.000Z")).json()["data"]
    assert until == []
    # Scope: another organization's events are not listed, and naming its organization is "not found".
    assert (await get(client, "/events", seeded["other"], limit=100)).json()["data"] == []
    foreign = await get(client, "/events", seeded["other"], organization_id=directory.organization_id)
    assert foreign.status_code == 404 and foreign.json()["code"] == "entity_not_found"
    admin = await get(client, "/events", seeded["admin"], organization_id=directory.organization_id, limit=100)
    assert admin.json()["data"] == body["data"]
    # An event cursor outside the caller's view is refused like an unknown one.
    wrong = await get(client, "/events", seeded["other"], after=body["data"][0]["id"])
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "after"


async def test_errors(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    unauthenticated = await client.get(f"{API}/directories")
    assert unauthenticated.status_code == 401 and unauthenticated.json()["message"]
    assert (await get(client, "/directories", "dsync_key_wrong")).status_code == 401
    key = seeded["own"]
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"before": "a", "after": "b"}, "before"),
        ({"search": "a\x00b"}, "search"),
    ):
        response = await get(client, "/directories", key, **params)
        assert response.status_code == 422, params
        body = response.json()
        assert body["code"] == "invalid_request_parameters" and body["errors"][0]["field"] == field
    assert (await get(client, "/directory_users", key)).json()["errors"][0]["field"] == "directory"
    assert (await get(client, "/directory_groups", key)).status_code == 422
    assert (await get(client, "/events", key, range_start="yesterday")).json()["errors"][0]["field"] == "range_start"
    nowhere = await get(client, "/connections", key)
    assert nowhere.status_code == 404 and nowhere.json()["code"] == "not_found"
    wrong_method = await client.post(f"{API}/directories", headers=auth(key))
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"
    assert wrong_method.json()["code"] == "method_not_allowed"
    for path in ("/directories/", "/directory_users/", "/directory_groups/"):
        assert (await get(client, f"{path}x%00y", key)).json()["code"] == "entity_not_found"


async def test_delete_directory(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    hidden = await client.delete(f"{API}/directories/{directory.id}", headers=auth(seeded["other"]))
    assert hidden.status_code == 404
    deleted = await client.delete(f"{API}/directories/{directory.id}", headers=auth(seeded["own"]))
    assert deleted.status_code == 202
    assert (await get(client, f"/directories/{directory.id}", seeded["own"])).status_code == 404
    assert (await client.delete(f"{API}/directories/{directory.id}", headers=auth(seeded["own"]))).status_code == 404
    assert (await get(client, f"/directory_users/{seeded['users'][0]['id']}", seeded["own"])).status_code == 404
    events = (await get(client, "/events", seeded["own"], events="dsync.deleted")).json()["data"]
    assert [e["data"]["id"] for e in events] == [directory.id]
    assert events[0]["data"]["state"] == "deleting" and events[0]["data"]["type"] == "jump cloud scim v2.0"


async def test_root_paths_serve_the_same_api(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:
    """The Node SDK takes a host and port but no path: the resources answer at the root as well."""
    key = seeded["admin"]
    prefixed = await client.get(f"{API}/directories", headers=auth(key))
    root = await client.get("/directories", headers=auth(key))
    assert root.status_code == 200 and root.json() == prefixed.json()
