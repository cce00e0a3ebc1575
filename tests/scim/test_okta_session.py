"""Replays a realistic Okta SCIM 2.0 session over HTTP and asserts the exact rows and event sequence.

The request shapes follow Okta's published SCIM 2.0 behaviour: a ``GET /Users?startIndex=1&count=2`` connection test,
a ``userName eq`` lookup before every create, ``POST /Users`` carrying ``password``, ``active: true``, a primary email,
``locale`` and ``groups: []``, full-object ``PUT`` for profile updates, path-less ``PATCH`` replaces for activation
changes and password sync, and Push Groups (``POST /Groups`` with ``members: []``, ``PATCH /Groups/{id}`` sending a
path-less ``replace`` of ``id`` and ``displayName`` along with the member operations, ``DELETE /Groups/{id}`` when a
group is unpushed). Okta never deletes users: unassignment is ``active: false``.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlmodel import col

from gateway.store.database import Database
from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, GroupMembership
from tests.conftest import DirectoryFixture, make_directory
from tests.conftest import recorded_events as events
from tests.scim.odd_forms import assert_odd_forms_refused

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def okta_user(first: str, last: str, *, okta_id: str, login: str | None = None) -> dict[str, Any]:
    """The body Okta POSTs when a user is assigned to the app (and PUTs, with ``id``, on profile pushes)."""
    email = login or f"{first.lower()}.{last.lower()}@acme.test"
    return {
        "schemas": [USER],
        "userName": email,
        "name": {"givenName": first, "familyName": last},
        "emails": [{"primary": True, "value": email, "type": "work"}],
        "displayName": f"{first} {last}",
        "locale": "en-US",
        "externalId": okta_id,
        "groups": [],
        "password": "tI3hj5Ck",
        "active": True,
    }


def okta_put(user_id: str, first: str, last: str, *, okta_id: str, login: str) -> dict[str, Any]:
    """A profile push from an integration that updates with PUT: the whole object, ``id`` included, no password."""
    body = okta_user(first, last, okta_id=okta_id, login=login)
    del body["password"]
    return {**body, "id": user_id}


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def group_ref(group_id: str, name: str) -> dict[str, Any]:
    """Okta re-asserts the group's id and name in every Push Groups PATCH."""
    return {"op": "replace", "value": {"id": group_id, "displayName": name}}


async def lookup(client: httpx.AsyncClient, directory: DirectoryFixture, user_name: str) -> dict[str, Any]:
    """Okta's pre-create (and re-assignment) lookup."""
    response = await client.get(
        f"{directory.path}/Users",
        params={"filter": f'userName eq "{user_name}"', "startIndex": "1", "count": "100"},
        headers=directory.headers,
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_okta_session(client: httpx.AsyncClient, app: Any) -> None:
    database: Database = app.state.database
    directory = await make_directory(database, type="okta", name="Okta")
    base, headers = directory.path, directory.headers

    # Saving the provisioning settings: Okta's connection test lists users two at a time.
    response = await client.get(f"{base}/Users", params={"startIndex": "1", "count": "2"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/scim+json")
    listing = response.json()
    assert listing["totalResults"] == 0 and listing["Resources"] == [] and listing["startIndex"] == 1
    async with database.read() as session:
        stored = await session.get(Directory, directory.id)
        assert stored is not None and stored.state == "linked" and stored.type == "okta scim v2.0"

    # Three assignments: each is a userName lookup that finds nothing, then a create.
    created: dict[str, dict[str, Any]] = {}
    for first, last, okta_id in (
        ("Ada", "Lovelace", "00u1ada"),
        ("Grace", "Hopper", "00u2grace"),
        ("Alan", "Turing", "00u3alan"),
    ):
        body = okta_user(first, last, okta_id=okta_id)
        found = await lookup(client, directory, body["userName"])
        assert found["totalResults"] == 0 and found["Resources"] == []
        response = await client.post(f"{base}/Users", json=body, headers=headers)
        assert response.status_code == 201
        created[first] = response.json()
    ada, grace, alan = created["Ada"], created["Grace"], created["Alan"]
    assert ada["id"].startswith("directory_user_") and ada["groups"] == []
    assert ada["active"] is True and ada["externalId"] == "00u1ada" and ada["locale"] == "en-US"
    assert ada["emails"] == [{"primary": True, "value": "ada.lovelace@acme.test", "type": "work"}]
    assert "password" not in ada  # write-only: never echoed

    # Okta records the id from a later lookup and reads the user by id; the password is never returned.
    found = await lookup(client, directory, "ada.lovelace@acme.test")
    assert [r["id"] for r in found["Resources"]] == [ada["id"]] and found["totalResults"] == 1
    assert all("password" not in r for r in found["Resources"])
    fetched = await client.get(f"{base}/Users/{ada['id']}", headers=headers)
    assert fetched.status_code == 200 and "password" not in fetched.json()

    # A profile push (PUT of the whole object); the same PUT again changes nothing and writes no event.
    ada_put = okta_put(ada["id"], "Ada", "King", okta_id="00u1ada", login="ada.lovelace@acme.test")
    response = await client.put(f"{base}/Users/{ada['id']}", json=ada_put, headers=headers)
    assert response.status_code == 200
    assert response.json()["name"] == {"givenName": "Ada", "familyName": "King"} and "password" not in response.json()
    response = await client.put(f"{base}/Users/{ada['id']}", json=ada_put, headers=headers)
    assert response.status_code == 200 and response.json()["displayName"] == "Ada King"

    # Password sync: a path-less replace of the password. Never stored, so nothing changed: no event.
    response = await client.patch(
        f"{base}/Users/{ada['id']}",
        json=patch({"op": "replace", "value": {"password": "n3wPassw0rd"}}),
        headers=headers,
    )
    assert response.status_code == 200 and "password" not in response.json()

    # Push Groups: the group is created empty, then memberships arrive in PATCHes that re-assert id and name.
    response = await client.post(
        f"{base}/Groups", json={"schemas": [GROUP], "displayName": "Engineering", "members": []}, headers=headers
    )
    assert response.status_code == 201
    group = response.json()
    assert group["displayName"] == "Engineering" and group["members"] == []
    assert response.headers["location"] == f"{directory.endpoint}/Groups/{group['id']}"
    gid = group["id"]
    # Odd forms no IdP sends are refused amid the session; its own tolerances keep working after them.
    await assert_odd_forms_refused(client, database, base=base, headers=headers, user=ada["id"], group=gid)

    push = patch(
        group_ref(gid, "Engineering"),
        {
            "op": "add",
            "path": "members",
            "value": [
                {"value": ada["id"], "display": "ada.lovelace@acme.test"},
                {"value": grace["id"], "display": "grace.hopper@acme.test"},
            ],
        },
    )
    assert (await client.patch(f"{base}/Groups/{gid}", json=push, headers=headers)).status_code == 204
    # Okta re-pushes a member it already pushed: no change, no event.
    re_add = patch(
        group_ref(gid, "Engineering"),
        {"op": "add", "path": "members", "value": [{"value": ada["id"], "display": "ada.lovelace@acme.test"}]},
    )
    assert (await client.patch(f"{base}/Groups/{gid}", json=re_add, headers=headers)).status_code == 204
    # One membership out (filter path), one in, in the same request.
    swap = patch(
        group_ref(gid, "Engineering"),
        {"op": "remove", "path": f'members[value eq "{grace["id"]}"]'},
        {"op": "add", "path": "members", "value": [{"value": alan["id"], "display": "alan.turing@acme.test"}]},
    )
    assert (await client.patch(f"{base}/Groups/{gid}", json=swap, headers=headers)).status_code == 204

    # Rename (Group Push "Rename groups"): a path-less replace alone; the same rename again writes nothing.
    # A group PATCH answers 204; asking for attributes gets the projected group (RFC 7644 §3.5.2 allows either).
    renamed = await client.patch(
        f"{base}/Groups/{gid}?attributes=displayName,members",
        json=patch(group_ref(gid, "Engineers")),
        headers=headers,
    )
    assert renamed.status_code == 200
    assert renamed.json()["displayName"] == "Engineers"
    assert [(m["value"], m["display"]) for m in renamed.json()["members"]] == sorted(
        [(ada["id"], "ada.lovelace@acme.test"), (alan["id"], "alan.turing@acme.test")]
    )
    again = await client.patch(f"{base}/Groups/{gid}", json=patch(group_ref(gid, "Engineers")), headers=headers)
    assert again.status_code == 204 and again.content == b""
    assert (await client.get(f"{base}/Groups/{gid}", headers=headers)).json()["displayName"] == "Engineers"

    # Unassignment deactivates (Okta never DELETEs users); a repeated deactivation writes nothing.
    deactivate = patch({"op": "replace", "value": {"active": False}})
    for _ in range(2):
        response = await client.patch(f"{base}/Users/{grace['id']}", json=deactivate, headers=headers)
        assert response.status_code == 200 and response.json()["active"] is False
    response = await client.patch(f"{base}/Users/{alan['id']}", json=deactivate, headers=headers)
    assert response.status_code == 200 and response.json()["active"] is False

    # Re-assignment: the lookup finds the deactivated user, and Okta reactivates that same resource.
    found = await lookup(client, directory, "alan.turing@acme.test")
    assert [(r["id"], r["active"]) for r in found["Resources"]] == [(alan["id"], False)]
    response = await client.patch(
        f"{base}/Users/{alan['id']}", json=patch({"op": "replace", "value": {"active": True}}), headers=headers
    )
    assert response.status_code == 200
    assert response.json()["id"] == alan["id"] and response.json()["active"] is True

    # Rows before the group is unpushed.
    async with database.read() as session:
        users = {u.id: u for u in await session.scalars(select(DirectoryUser))}
        assert set(users) == {ada["id"], grace["id"], alan["id"]}
        assert {u.id: u.state for u in users.values()} == {
            ada["id"]: "active",
            grace["id"]: "inactive",
            alan["id"]: "active",
        }
        stored_ada = users[ada["id"]]
        assert (stored_ada.first_name, stored_ada.last_name, stored_ada.display_name) == ("Ada", "King", "Ada King")
        assert (stored_ada.idp_id, stored_ada.email, stored_ada.user_name) == (
            "00u1ada",
            "ada.lovelace@acme.test",
            "ada.lovelace@acme.test",
        )
        for user in users.values():
            assert "password" not in user.raw_attributes and "groups" not in user.raw_attributes
        assert stored_ada.raw_attributes == {
            "schemas": [USER],
            "userName": "ada.lovelace@acme.test",
            "name": {"givenName": "Ada", "familyName": "King"},
            "emails": [{"primary": True, "value": "ada.lovelace@acme.test", "type": "work"}],
            "displayName": "Ada King",
            "locale": "en-US",
            "externalId": "00u1ada",
            "active": True,
        }
        [stored_group] = list(await session.scalars(select(DirectoryGroup)))
        assert (stored_group.id, stored_group.name, stored_group.idp_id, stored_group.external_id) == (
            gid,
            "Engineers",
            "Engineers",
            None,
        )
        edges = await session.execute(select(col(GroupMembership.group_id), col(GroupMembership.user_id)))
        assert sorted(tuple(e) for e in edges) == sorted([(gid, ada["id"]), (gid, alan["id"])])

    # Unpushing the group ("unlink and delete") deletes it on the app, memberships with it.
    assert (await client.delete(f"{base}/Groups/{gid}", headers=headers)).status_code == 204
    assert (await client.get(f"{base}/Groups/{gid}", headers=headers)).status_code == 404
    async with database.read() as session:
        assert list(await session.scalars(select(DirectoryGroup))) == []
        assert list(await session.scalars(select(GroupMembership))) == []
        assert len(list(await session.scalars(select(DirectoryUser)))) == 3
    alan_view = (await client.get(f"{base}/Users/{alan['id']}", headers=headers)).json()
    assert alan_view["groups"] == [] and alan_view["active"] is True

    # The exact event sequence.
    log = await events(database, directory.id)
    assert [name for name, _ in log] == [
        "dsync.activated",
        "dsync.user.created",
        "dsync.user.created",
        "dsync.user.created",
        "dsync.user.updated",  # Ada's PUT
        "dsync.group.created",
        "dsync.group.user_added",  # Ada
        "dsync.group.user_added",  # Grace
        "dsync.group.user_removed",  # Grace
        "dsync.group.user_added",  # Alan
        "dsync.group.updated",  # renamed
        "dsync.user.updated",  # Grace deactivated
        "dsync.user.updated",  # Alan deactivated
        "dsync.user.updated",  # Alan reactivated
        "dsync.group.deleted",
    ]
    data = [payload for _, payload in log]
    assert data[0]["type"] == "okta scim v2.0" and data[0]["state"] == "linked"
    for payload in data[1:4]:
        assert payload["object"] == "directory_user" and payload["state"] == "active"
        assert "password" not in payload["raw_attributes"]
    assert [data[i]["id"] for i in (1, 2, 3)] == [ada["id"], grace["id"], alan["id"]]
    assert data[1]["idp_id"] == "00u1ada" and data[1]["email"] == "ada.lovelace@acme.test"
    assert data[4]["id"] == ada["id"] and data[4]["last_name"] == "King"
    assert data[4]["previous_attributes"]["last_name"] == "Lovelace"
    assert data[4]["previous_attributes"]["display_name"] == "Ada Lovelace"
    assert data[4]["previous_attributes"]["raw_attributes"] == {
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "displayName": "Ada Lovelace",
    }
    assert data[5]["id"] == gid and data[5]["name"] == "Engineering"
    assert [(d["user"]["id"], d["group"]["id"]) for d in data[6:10]] == [
        (ada["id"], gid),
        (grace["id"], gid),
        (grace["id"], gid),
        (alan["id"], gid),
    ]
    assert all(d["directory_id"] == directory.id for d in data[6:10])
    assert data[10]["name"] == "Engineers"
    # Okta sends no externalId for pushed groups, so the group's idp_id is its name and follows the rename.
    assert data[10]["previous_attributes"] == {
        "name": "Engineering",
        "idp_id": "Engineering",
        "raw_attributes": {"displayName": "Engineering"},
    }
    assert (data[11]["id"], data[11]["state"]) == (grace["id"], "inactive")
    assert data[11]["previous_attributes"]["state"] == "active"
    assert data[11]["previous_attributes"]["raw_attributes"] == {"active": True}
    assert (data[12]["id"], data[12]["state"], data[12]["previous_attributes"]["state"]) == (
        alan["id"],
        "inactive",
        "active",
    )
    assert (data[13]["id"], data[13]["state"], data[13]["previous_attributes"]["state"]) == (
        alan["id"],
        "active",
        "inactive",
    )
    assert data[14]["id"] == gid and data[14]["name"] == "Engineers"
    for payload in data[1:6] + data[10:]:
        assert payload["organization_id"] == directory.organization_id
    for payload in data[6:10]:
        assert payload["user"]["organization_id"] == payload["group"]["organization_id"] == directory.organization_id
