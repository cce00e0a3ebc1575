"""SCIM conformance where Microsoft's reference test collection found gaps: externalId is not unique (RFC 7643
§3.1), endpoint names in any case and a trailing slash, ``attributes`` with a value filter (RFC 7644 §3.10 path
syntax), and a group PATCH's 204 or projected 200 (RFC 7644 §3.5.2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from gateway.store.database import Database
from gateway.store.models import DirectoryGroup
from tests.conftest import DirectoryFixture, make_directory

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def reference_user(user_name: str, external_id: str) -> dict[str, Any]:
    """A user shaped like those Microsoft's reference collection posts: work and home emails, one externalId."""
    return {
        "schemas": [USER],
        "userName": user_name,
        "externalId": external_id,
        "active": True,
        "name": {"givenName": "Test", "familyName": user_name.partition("@")[0]},
        "emails": [
            {"primary": True, "type": "work", "value": user_name},
            {"type": "home", "value": f"home.{user_name}"},
        ],
    }


async def test_microsoft_reference_collection(client: httpx.AsyncClient, directory: DirectoryFixture) -> None:
    base, headers = directory.path, directory.headers
    # Several different users share one externalId, posted to the lowercase collection: every create succeeds.
    ids = []
    for n in range(3):
        created = await client.post(
            f"{base}/users", json=reference_user(f"user{n}@acme.test", "shared-external-id"), headers=headers
        )
        assert created.status_code == 201, created.text
        assert created.headers["location"] == f"{directory.endpoint}/Users/{created.json()['id']}"
        ids.append(created.json()["id"])
    # userName stays unique, case-insensitively, whatever the path's case.
    clash = await client.post(f"{base}/USERS", json=reference_user("USER0@acme.test", "other"), headers=headers)
    assert clash.status_code == 409 and clash.json()["scimType"] == "uniqueness"
    assert "userName" in clash.json()["detail"]

    # A filter on externalId returns every match; so does the collection with a trailing slash.
    for path in ("/Users", "/Users/", "/users/"):
        found = await client.get(
            f"{base}{path}", params={"filter": 'externalId eq "shared-external-id"'}, headers=headers
        )
        assert found.status_code == 200, (path, found.text)
        assert found.json()["schemas"] == [LIST] and found.json()["totalResults"] == 3
        assert sorted(r["id"] for r in found.json()["Resources"]) == sorted(ids)
    found = await client.get(f"{base}/Users/?filter=userName%20eq%20%22user1@acme.test%22", headers=headers)
    assert [r["id"] for r in found.json()["Resources"]] == [ids[1]]

    # attributes with a value filter: only the matching emails, and the always-returned id and schemas.
    work = await client.get(f"{base}/users/{ids[0]}", params={"attributes": 'emails[type eq "work"]'}, headers=headers)
    assert work.status_code == 200
    assert work.json() == {
        "schemas": [USER],
        "id": ids[0],
        "emails": [{"primary": True, "type": "work", "value": "user0@acme.test"}],
    }
    listed = await client.get(
        f"{base}/Users",
        params={"filter": 'userName eq "user2@acme.test"', "attributes": 'emails[type eq "work"].value,userName'},
        headers=headers,
    )
    [resource] = listed.json()["Resources"]
    assert resource["emails"] == [{"value": "user2@acme.test"}] and resource["userName"] == "user2@acme.test"
    assert "name" not in resource

    # Items, PATCH and DELETE through other spellings of the path.
    item = await client.get(f"{base}/Users/{ids[2]}/", headers=headers)
    assert item.status_code == 200 and item.json()["id"] == ids[2]
    deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    patched = await client.patch(f"{base}/users/{ids[2]}", json=deactivate, headers=headers)
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert (await client.delete(f"{base}/users/{ids[2]}/", headers=headers)).status_code == 204
    assert (await client.get(f"{base}/users/{ids[2]}", headers=headers)).status_code == 404

    # Discovery endpoints in lowercase.
    config = await client.get(f"{base}/serviceproviderconfig", headers=headers)
    assert config.status_code == 200 and config.json()["patch"]["supported"] is True
    types = await client.get(f"{base}/resourcetypes/", headers=headers)
    assert types.status_code == 200 and {r["name"] for r in types.json()["Resources"]} >= {"User", "Group"}
    assert (await client.get(f"{base}/schemas", headers=headers)).status_code == 200
    groups = await client.get(f"{base}/groups", headers=headers)
    assert groups.status_code == 200 and groups.json()["totalResults"] == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/users", 405),
        ("DELETE", "/groups/", 405),
        ("POST", "/serviceproviderconfig", 405),
        ("GET", "/nosuch", 404),
        ("GET", "/users/a/b", 404),
    ],
)
async def test_other_spellings_keep_their_errors(
    client: httpx.AsyncClient, directory: DirectoryFixture, method: str, path: str, status: int
) -> None:
    response = await client.request(method, f"{directory.path}{path}", headers=directory.headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    if status == 405:
        assert response.headers["allow"]


async def test_paths_are_authenticated_whatever_their_spelling(
    client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    response = await client.get(f"{directory.path}/users/", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


async def test_groups_share_an_external_id(client: httpx.AsyncClient, app: Any) -> None:
    """externalId is not unique for groups either (RFC 7643 §3.1): both are stored, a filter finds both. Okta's
    groups keep their identity by name."""
    database: Database = app.state.database
    for kind in ("generic", "okta"):
        directory = await make_directory(database, type=kind, name=kind)
        base, headers = directory.path, directory.headers
        created = [
            await client.post(
                f"{base}/Groups", json={"schemas": [GROUP], "displayName": name, "externalId": "g-1"}, headers=headers
            )
            for name in ("Engineering", "Sales")
        ]
        assert [r.status_code for r in created] == [201, 201]
        found = await client.get(f"{base}/Groups", params={"filter": 'externalId eq "g-1"'}, headers=headers)
        assert found.json()["totalResults"] == 2
        async with database.read() as session:
            rows = await session.scalars(
                select(DirectoryGroup)
                .where(col(DirectoryGroup.directory_id) == directory.id)
                .order_by(col(DirectoryGroup.name))
            )
            idp_ids = [row.idp_id for row in rows]
        assert idp_ids == (["Engineering", "Sales"] if kind == "okta" else ["g-1", "g-1"])


async def test_group_patch_answers_204_unless_attributes_are_asked_for(
    client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    base, headers = directory.path, directory.headers
    user = (await client.post(f"{base}/Users", json=reference_user("ada@acme.test", "u-1"), headers=headers)).json()
    group = (
        await client.post(f"{base}/Groups", json={"schemas": [GROUP], "displayName": "Eng"}, headers=headers)
    ).json()
    url = f"{base}/Groups/{group['id']}"

    rename = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Engineering"}]}
    response = await client.patch(url, json=rename, headers=headers)
    assert response.status_code == 204 and response.content == b""
    current = await client.get(url, headers=headers)
    assert current.json()["displayName"] == "Engineering" and response.headers["etag"] == current.headers["etag"]

    add = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}]}
    response = await client.patch(f"{url}?attributes=displayName,members", json=add, headers=headers)
    assert response.status_code == 200
    assert response.json()["displayName"] == "Engineering" and [m["value"] for m in response.json()["members"]] == [
        user["id"]
    ]
    assert "meta" not in response.json()
    response = await client.patch(f"{url}?excludedAttributes=members", json=rename, headers=headers)
    assert response.status_code == 200 and "members" not in response.json() and "meta" in response.json()
    # A member's value filter in attributes reads the members (it names some of them).
    response = await client.get(url, params={"attributes": f'members[value eq "{user["id"]}"]'}, headers=headers)
    assert [m["value"] for m in response.json()["members"]] == [user["id"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"attributes": 'emails[type eq "home"]'}, [{"type": "home", "value": "home.ada@acme.test"}]),
        ({"attributes": 'emails[type eq "none"]'}, None),
        ({"attributes": 'emails[value co ","]'}, None),
        ({"attributes": "urn:ietf:params:scim:schemas:core:2.0:User:emails[primary eq true].type"}, [{"type": "work"}]),
        (
            {"excludedAttributes": 'emails[type eq "home"]'},
            [{"primary": True, "type": "work", "value": "ada@acme.test"}],
        ),
    ],
)
async def test_value_filtered_projection(
    client: httpx.AsyncClient, directory: DirectoryFixture, params: dict[str, str], expected: Any
) -> None:
    base, headers = directory.path, directory.headers
    user = (await client.post(f"{base}/Users", json=reference_user("ada@acme.test", "u-1"), headers=headers)).json()
    response = await client.get(f"{base}/Users/{user['id']}", params=params, headers=headers)
    assert response.status_code == 200
    assert response.json().get("emails") == expected


async def test_malformed_value_filter_in_attributes(client: httpx.AsyncClient, directory: DirectoryFixture) -> None:
    response = await client.get(
        f"{directory.path}/Users", params={"attributes": 'emails[type eq "work"'}, headers=directory.headers
    )
    assert response.status_code == 400 and response.json()["scimType"] == "invalidPath"
