"""Bad input gets the right SCIM error, and leaves the database exactly as it was."""

from __future__ import annotations

import gc
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from gateway.ops import directories
from gateway.store.database import Database
from gateway.store.models import DirectoryGroup, DirectoryUser, Event, GroupMembership
from scim.protocol.errors import ScimError
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


async def snapshot(database: Database) -> tuple[int, ...]:
    async with database.read() as session:
        return tuple(
            [
                await session.scalar(select(func.count()).select_from(model)) or 0
                for model in (DirectoryUser, DirectoryGroup, GroupMembership, Event)
            ]
        )


def assert_error(response: httpx.Response, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["schemas"] == [ERROR] and body["status"] == str(status) and body["detail"]
    assert body.get("scimType") == scim_type
    assert response.headers["content-type"].startswith("application/scim+json")


@pytest.fixture
async def seeded(client: httpx.AsyncClient, directory: DirectoryFixture) -> dict[str, Any]:
    user = await client.post(
        f"{directory.path}/Users", headers=directory.headers, json={"userName": "ada@acme.test", "externalId": "u-1"}
    )
    group = await client.post(
        f"{directory.path}/Groups",
        headers=directory.headers,
        json={"displayName": "Eng", "externalId": "g-1", "members": [{"value": user.json()["id"]}]},
    )
    # Joining the group bumped the user's version: keep the current representation.
    current = await client.get(f"{directory.path}/Users/{user.json()['id']}", headers=directory.headers)
    return {"user": current.json(), "group": group.json()}


BAD_BODIES = [
    ("POST", "/Users", b"{not json", 400, "invalidSyntax"),
    ("POST", "/Users", b"[1, 2]", 400, "invalidSyntax"),
    ("POST", "/Users", b'{"name": {"givenName": "x"}}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": ""}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": "x@acme.test", "active": "maybe"}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": "x@acme.test", "emails": "x@acme.test"}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": "x@acme.test", "name": 5}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": ["a"]}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": "ADA@acme.test"}', 409, "uniqueness"),
    ("POST", "/Groups", b'{"externalId": "x"}', 400, "invalidValue"),
    # Strict where no identity provider sends the odd form (README "SCIM conformance"); externalId is not unique
    # (tests/scim/test_conformance.py).
    ("POST", "/Users", b'{"schemas": ["' + GROUP.encode() + b'"], "userName": "g@acme.test"}', 400, "invalidValue"),
    ("POST", "/Groups", b'{"schemas": ["' + USER.encode() + b'"], "displayName": "U"}', 400, "invalidValue"),
    ("POST", "/Users", b'{"schemas": ["' + PATCH.encode() + b'"], "userName": "p@acme.test"}', 400, "invalidValue"),
    ("POST", "/Users", b'{"schemas": "' + USER.encode() + b'", "userName": "s@acme.test"}', 400, "invalidSyntax"),
    ("POST", "/Users", b'{"userName": 12345}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": "n@acme.test", "displayName": 7}', 400, "invalidValue"),
    ("POST", "/Groups", b'{"displayName": 42}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": "e@acme.test", "emails": {"value": "e@acme.test"}}', 400, "invalidValue"),
    ("POST", "/Users", b'{"userName": "t@acme.test", "phoneNumbers": {"value": "+1 555"}}', 400, "invalidValue"),
    ("POST", "/Groups", b'{"displayName": "One", "members": {"value": "x"}}', 400, "invalidValue"),
    ("PUT", "/Users/{user}", b'{"userName": "ada@acme.test", "emails": {"value": "a@acme.test"}}', 400, "invalidValue"),
    ("PUT", "/Groups/{group}", b'{"schemas": ["' + USER.encode() + b'"], "displayName": "Eng"}', 400, "invalidValue"),
    ("PUT", "/Groups/{group}", b'{"displayName": "Eng", "members": {"value": "x"}}', 400, "invalidValue"),
    (
        "PATCH",
        "/Users/{user}",
        b'{"Operations": [{"op": "replace", "path": "userName", "value": 9}]}',
        400,
        "invalidValue",
    ),
    ("POST", "/Groups", b'{"displayName": "Bad", "members": [{"value": 7}]}', 400, "invalidValue"),
    ("PATCH", "/Users/{user}", b'{"Operations": []}', 400, "invalidSyntax"),
    ("PATCH", "/Users/{user}", b'{"Operations": [{"op": "move", "path": "title", "value": 1}]}', 400, "invalidSyntax"),
    (
        "PATCH",
        "/Users/{user}",
        b'{"Operations": [{"op": "replace", "path": "emails[type eq", "value": 1}]}',
        400,
        "invalidPath",
    ),
    (
        "PATCH",
        "/Users/{user}",
        b'{"Operations": [{"op": "replace", "path": "nosuch", "value": 1}]}',
        400,
        "invalidPath",
    ),
    ("PATCH", "/Users/{user}", b'{"Operations": [{"op": "remove"}]}', 400, "noTarget"),
    ("PATCH", "/Users/{user}", b'{"Operations": [{"op": "remove", "path": "userName"}]}', 400, "invalidValue"),
    ("PATCH", "/Users/{user}", b'{"Operations": [{"op": "replace", "path": "id", "value": "x"}]}', 400, "mutability"),
    (
        "PATCH",
        "/Users/{user}",
        b'{"Operations": [{"op": "replace", "path": "title", "value": "ok"},'
        b'{"op": "replace", "path": "active", "value": "nope"}]}',
        400,
        "invalidValue",
    ),
    ("PUT", "/Users/{user}", b'{"displayName": "no userName"}', 400, "invalidValue"),
    (
        "PATCH",
        "/Groups/{group}",
        b'{"Operations": [{"op": "add", "path": "members", "value": [{"nope": 1}]}]}',
        400,
        "invalidValue",
    ),
    (
        "PATCH",
        "/Groups/{group}",
        b'{"Operations": [{"op": "replace", "path": "displayName", "value": "New"},'
        b'{"op": "remove", "path": "displayName"}]}',
        400,
        "invalidValue",
    ),
    # Found by fuzzing: PostgreSQL text and jsonb cannot hold U+0000, so these were 500s there (and stored on
    # SQLite); refused alike on both now.
    ("POST", "/Users", b'{"userName": "nul\\u0000@acme.test"}', 400, "invalidValue"),
    ("POST", "/Groups", b'{"displayName": "Eng2", "members": [{"value": "x\\u0000"}]}', 400, "invalidValue"),
    ("PUT", "/Groups/{group}", b'{"displayName": "Eng", "urn:x:y": {"a\\u0000": 1}}', 400, "invalidValue"),
    (
        "PATCH",
        "/Users/{user}",
        b'{"Operations": [{"op": "replace", "path": "title", "value": "a\\u0000"}]}',
        400,
        "invalidValue",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "scim_type"), BAD_BODIES)
async def test_bad_bodies_change_nothing(
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    seeded: dict[str, Any],
    app: Any,
    method: str,
    path: str,
    body: bytes,
    status: int,
    scim_type: str,
) -> None:
    before = await snapshot(app.state.database)
    url = directory.path + path.format(user=seeded["user"]["id"], group=seeded["group"]["id"])
    response = await client.request(method, url, content=body, headers=directory.headers)
    assert_error(response, status, scim_type)
    assert await snapshot(app.state.database) == before
    # The resources are untouched too.
    user = (await client.get(f"{directory.path}/Users/{seeded['user']['id']}", headers=directory.headers)).json()
    assert user["meta"]["version"] == seeded["user"]["meta"]["version"]


@pytest.mark.parametrize(
    "bad_filter",
    [
        "userName eq",
        'userName xx "a"',
        '(userName eq "a"',
        'userName eq "a")',
        'nosuch eq "a"',
        'emails[type eq "work"',
        'active co "t"',
        'meta.lastModified gt "yesterday"',
        'userName eq "a" and',
        "x" * 5000,
        # Found by fuzzing (500s before): NUL, escaped or raw, which PostgreSQL cannot compare; dates that have no
        # UTC equivalent.
        'userName eq "a\\u0000"',
        "userName eq a\x00b",
        'title co "\\u0000"',
        'meta.created gt "0001-01-01T00:00:00+14:00"',
        'meta.lastModified le "9999-12-31T23:59:59-14:00"',
    ],
)
async def test_bad_filters(client: httpx.AsyncClient, directory: DirectoryFixture, bad_filter: str) -> None:
    response = await client.get(f"{directory.path}/Users", params={"filter": bad_filter}, headers=directory.headers)
    assert_error(response, 400, "invalidFilter")


async def test_oversize_body_is_413(client: httpx.AsyncClient, directory: DirectoryFixture, app: Any) -> None:
    before = await snapshot(app.state.database)
    body = b'{"userName": "big@acme.test", "displayName": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert_error(await client.post(f"{directory.path}/Users", content=body, headers=directory.headers), 413)
    assert await snapshot(app.state.database) == before


async def test_nul_in_ids_is_not_found(client: httpx.AsyncClient, directory: DirectoryFixture) -> None:
    """Found by fuzzing: an id with NUL in the URL was a 500 on PostgreSQL."""
    assert_error(await client.get(f"{directory.path}/Users/a%00b", headers=directory.headers), 404)
    assert_error(await client.delete(f"{directory.path}/Groups/%00", headers=directory.headers), 404)
    assert_error(await client.get(f"/scim/v2/{directory.id}%00/Users", headers=directory.headers), 404)


async def test_start_index_beyond_any_offset(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]
) -> None:
    """Found by fuzzing: a startIndex past what SQL's OFFSET takes was a 500; it is an empty page like any other."""
    for start in (str(2**63), str(10**30)):
        response = await client.get(f"{directory.path}/Users", params={"startIndex": start}, headers=directory.headers)
        assert response.status_code == 200, response.text
        assert response.json()["totalResults"] == 1 and response.json()["Resources"] == []
    search = await client.post(
        f"{directory.path}/Groups/.search", json={"startIndex": 10**30, "count": 5}, headers=directory.headers
    )
    assert search.status_code == 200 and search.json()["Resources"] == [], search.text


async def test_other_errors(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    headers = directory.headers
    text_headers = {**headers, "Content-Type": "text/plain"}
    assert_error(await client.post(f"{directory.path}/Users", content=b"{}", headers=text_headers), 415)
    assert_error(await client.get(f"{directory.path}/Users/directory_user_nope", headers=headers), 404)
    assert_error(await client.request("POST", f"{directory.path}/Users/{seeded['user']['id']}", headers=headers), 405)
    assert_error(await client.get(f"{directory.path}/Nothing", headers=headers), 404)
    assert_error(
        await client.get(f"{directory.path}/Users", params={"count": "ten"}, headers=headers), 400, "invalidValue"
    )
    stale = {**headers, "If-Match": 'W/"999"'}
    patch = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}
    assert_error(await client.patch(f"{directory.path}/Users/{seeded['user']['id']}", json=patch, headers=stale), 412)


async def test_authentication(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any], app: Any
) -> None:
    database: Database = app.state.database
    other = await make_directory(database, name="Other")
    users = f"{directory.path}/Users"
    assert_error(await client.get(users), 401)
    assert_error(await client.get(users, headers={"Authorization": "Basic abc"}), 401)
    assert_error(await client.get(users, headers={"Authorization": "Bearer wrong"}), 401)
    # Another directory's valid token does not open this directory.
    assert_error(await client.get(users, headers=other.headers), 401)
    # This directory's ids are invisible through another directory's URL and token.
    cross = f"{other.path}/Users/{seeded['user']['id']}"
    assert_error(await client.get(cross, headers=other.headers), 404)
    assert_error(await client.delete(cross, headers=other.headers), 404)
    assert_error(await client.get(f"{other.path}/Groups/{seeded['group']['id']}", headers=other.headers), 404)
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": seeded["user"]["id"]}]}],
    }
    other_group = (
        await client.post(f"{other.path}/Groups", json={"displayName": "Theirs"}, headers=other.headers)
    ).json()
    # A member value from another directory is ignored, never stored.
    assert (
        await client.patch(f"{other.path}/Groups/{other_group['id']}", json=patch, headers=other.headers)
    ).status_code == 204
    async with database.read() as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(GroupMembership).where(GroupMembership.group_id == other_group["id"])
            )
            == 0
        )

    # Rotation: the old token fails at once, the new one works.
    rotated = await database.transaction(
        lambda session: directories.rotate_directory_token(session, directory_id=directory.id, public_url=PUBLIC_URL)
    )
    assert_error(await client.get(users, headers=directory.headers), 401)
    fresh = {"Authorization": f"Bearer {rotated.bearer_token}"}
    assert (await client.get(users, headers=fresh)).status_code == 200

    # Deletion: only dsync.deleted, everything of the directory gone; its URL answers like any wrong token (401).
    await database.transaction(lambda session: directories.delete_directory(session, directory_id=directory.id))
    assert_error(await client.get(users, headers=fresh), 401)
    async with database.read() as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(DirectoryUser).where(col(DirectoryUser.directory_id) == directory.id)
            )
            == 0
        )
        assert (
            await session.scalar(
                select(func.count()).select_from(DirectoryGroup).where(col(DirectoryGroup.directory_id) == directory.id)
            )
            == 0
        )
        last = await session.scalar(select(Event).order_by(col(Event.cursor).desc()).limit(1))
        assert last is not None and last.event == "dsync.deleted" and last.data["state"] == "deleting"
    # The other directory is untouched.
    assert (await client.get(f"{other.path}/Groups/{other_group['id']}", headers=other.headers)).status_code == 200


async def test_search_endpoints(client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]) -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName sw "ADA"',
        "attributes": ["userName"],
        "count": 5,
    }
    found = await client.post(f"{directory.path}/Users/.search", json=body, headers=directory.headers)
    assert found.status_code == 200, found.text
    assert [r for r in found.json()["Resources"]] == [
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": seeded["user"]["id"],
            "userName": "ada@acme.test",
        }
    ]
    groups = await client.post(
        f"{directory.path}/Groups/.search", json={"filter": 'displayName eq "eng"'}, headers=directory.headers
    )
    assert groups.json()["totalResults"] == 1
    assert_error(
        await client.post(f"{directory.path}/Users/.search", json={"count": "many"}, headers=directory.headers),
        400,
        "invalidValue",
    )
    assert_error(
        await client.post(f"{directory.path}/Users/.search", json={"filter": "bad"}, headers=directory.headers),
        400,
        "invalidFilter",
    )
    assert_error(await client.post(f"{directory.path}/.search", json={}, headers=directory.headers), 501)
    assert_error(await client.post(f"{directory.path}/Users/.search", json={}), 401)
    not_allowed = await client.put(f"{directory.path}/Users", json={}, headers=directory.headers)
    assert_error(not_allowed, 405)
    assert "POST" in not_allowed.headers["allow"]


async def test_an_unknown_directory_answers_exactly_like_a_wrong_token(
    client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    """Without its token nobody learns whether a directory id exists (issue 7: no existence leak)."""
    wrong = {"Authorization": "Bearer dsync_scim_wrong"}
    existing = await client.get(f"{directory.path}/Users", headers=wrong)
    unknown = await client.get("/scim/v2/directory_01ZZZZZZZZZZZZZZZZZZZZZZZZ/Users", headers=wrong)
    with_real_token = await client.get("/scim/v2/directory_01ZZZZZZZZZZZZZZZZZZZZZZZZ/Users", headers=directory.headers)
    assert existing.status_code == unknown.status_code == with_real_token.status_code == 401
    assert existing.json() == unknown.json() == with_real_token.json()
    assert existing.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


async def test_refused_requests_leave_no_reference_cycles(
    client: httpx.AsyncClient, directory: DirectoryFixture, seeded: dict[str, Any]
) -> None:
    """A refusal's traceback holds the request (and the error itself): kept, every refused request became work for
    the cyclic collector, whose collections then paused every request of every tenant."""
    user_path = f"{directory.path}/Users/{seeded['user']['id']}"
    too_many = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "title", "value": "x"}] * 101}
    wrong = {**directory.headers, "Authorization": "Bearer dsync_scim_wrong"}
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(5):
            assert_error(await client.patch(user_path, headers=directory.headers, json=too_many), 400, "tooMany")
            assert_error(await client.post(f"{directory.path}/Users", headers=wrong, json={"userName": "x"}), 401)
            assert_error(await client.get(f"{directory.path}/Users/nobody", headers=directory.headers), 404)
        gc.collect()
        kept = [thing for thing in gc.garbage if isinstance(thing, ScimError)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert kept == []
