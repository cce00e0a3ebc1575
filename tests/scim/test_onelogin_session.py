"""Replays a realistic OneLogin SCIM 2.0 session ("SCIM Provisioner with SAML (SCIM v2 Enterprise)") over HTTP and
asserts the exact rows and event sequence.

OneLogin renders every user request from the app's SCIM JSON template, so each body is the whole template: both
schema URNs, ``userName`` from the ``scimusername`` parameter, ``name``, a work email, the enterprise extension, and
literal placeholders such as ``"id": null`` and ``meta``; unset parameters render as empty strings, and a quoted
``{$user.active}`` renders ``active`` as the string ``"true"``/``"false"``. The calls follow OneLogin's developer
guide: a ``userName`` lookup on the initial connection and before each create, ``POST /Users``, ``GET /Users/{id}``,
``PUT /Users/{id}`` for updates (suspension included), ``GET /Groups`` to refresh entitlements, ``POST /Groups`` for
groups set by rules, ``PATCH /Groups/{id}`` adding or removing members, and ``DELETE /Users/{id}`` when a user is
deleted or loses the app and the app's deprovisioning action is "Delete".
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
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def onelogin_user(
    first: str, last: str, *, title: str = "", department: str = "", manager: str = "", active: str = "true"
) -> dict[str, Any]:
    """The SCIM v2 Enterprise template as OneLogin renders it (unset parameters become empty strings)."""
    email = f"{first.lower()}.{last.lower()}@acme.test"
    return {
        ENTERPRISE: {"department": department, "manager": {"value": manager}},
        "active": active,
        "emails": [{"value": email, "type": "work", "primary": True}],
        "meta": {"resourceType": "User"},
        "name": {"familyName": last, "givenName": first, "formatted": f"{first} {last}"},
        "title": title,
        "userName": email,
        "id": None,
        "schemas": [USER, ENTERPRISE],
    }


def members(op: str, user_id: str) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": op, "path": "members", "value": [{"value": user_id}]}]}


async def lookup(client: httpx.AsyncClient, directory: DirectoryFixture, user_name: str) -> dict[str, Any]:
    response = await client.get(
        f"{directory.path}/Users", params={"filter": f'userName eq "{user_name}"'}, headers=directory.headers
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_onelogin_session(client: httpx.AsyncClient, app: Any) -> None:
    database: Database = app.state.database
    directory = await make_directory(database, type="onelogin", name="OneLogin")
    base, headers = directory.path, directory.headers

    # Enabling the API connection: a lookup of a userName OneLogin knows does not exist.
    found = await lookup(client, directory, "onelogin-connection-check@acme.test")
    assert found["totalResults"] == 0 and found["Resources"] == []
    async with database.read() as session:
        stored = await session.get(Directory, directory.id)
        assert stored is not None and stored.state == "linked" and stored.type == "onelogin scim v2.0"

    # Provisioning: lookup, then create. Grace has no title and Alan no department: empty strings, i.e. no value.
    bodies = {
        "Ada": onelogin_user("Ada", "Lovelace", title="Engineer", department="R&D"),
        "Grace": onelogin_user("Grace", "Hopper", department="R&D"),
        "Alan": onelogin_user("Alan", "Turing", title="Researcher"),
    }
    created: dict[str, dict[str, Any]] = {}
    for first, body in bodies.items():
        assert (await lookup(client, directory, body["userName"]))["totalResults"] == 0
        response = await client.post(f"{base}/Users", json=body, headers=headers)
        assert response.status_code == 201
        created[first] = response.json()
    ada, grace, alan = created["Ada"], created["Grace"], created["Alan"]
    assert ada["id"].startswith("directory_user_") and ada["active"] is True and ada["groups"] == []
    assert ada[ENTERPRISE] == {"department": "R&D"}  # the empty manager is no manager
    assert (
        ada["meta"]["resourceType"] == "User" and ada["meta"]["location"] == f"{directory.endpoint}/Users/{ada['id']}"
    )
    assert "title" not in grace and grace["active"] is True
    assert ENTERPRISE not in alan and alan["schemas"] == [USER]

    # Get User by ID.
    fetched = await client.get(f"{base}/Users/{ada['id']}", headers=headers)
    assert fetched.status_code == 200 and fetched.json()["userName"] == "ada.lovelace@acme.test"

    # Refresh entitlements lists the app's groups; a rule then sets a group that does not exist yet: created.
    listing = (await client.get(f"{base}/Groups", headers=headers)).json()
    assert listing["totalResults"] == 0
    response = await client.post(
        f"{base}/Groups", json={"schemas": [GROUP], "displayName": "Engineering"}, headers=headers
    )
    assert response.status_code == 201
    gid = response.json()["id"]
    # Odd forms no IdP sends are refused amid the session; its own tolerances keep working after them.
    await assert_odd_forms_refused(client, database, base=base, headers=headers, user=ada["id"], group=gid)
    listing = (await client.get(f"{base}/Groups", headers=headers)).json()
    assert [(g["id"], g["displayName"]) for g in listing["Resources"]] == [(gid, "Engineering")]

    # Members are added one user at a time; a user's next sync re-adds a membership it already has: no event.
    for user in (ada, grace, alan):
        assert (
            await client.patch(f"{base}/Groups/{gid}", json=members("add", user["id"]), headers=headers)
        ).status_code == 204
    assert (
        await client.patch(f"{base}/Groups/{gid}", json=members("add", ada["id"]), headers=headers)
    ).status_code == 204

    # Update User: the whole template again. The same PUT twice writes one event.
    ada_update = onelogin_user("Ada", "Lovelace", title="Staff Engineer", department="Research")
    for _ in range(2):
        response = await client.put(f"{base}/Users/{ada['id']}", json=ada_update, headers=headers)
        assert response.status_code == 200
        assert response.json()["title"] == "Staff Engineer" and response.json()[ENTERPRISE] == {
            "department": "Research"
        }

    # A rule stops matching Grace: she leaves the group (remove with the member in the value).
    assert (
        await client.patch(f"{base}/Groups/{gid}", json=members("remove", grace["id"]), headers=headers)
    ).status_code == 204

    # Suspension in OneLogin: a PUT with active "false" (a repeat writes nothing); unsuspension reactivates the same id.
    suspended = onelogin_user("Alan", "Turing", title="Researcher", active="false")
    for _ in range(2):
        response = await client.put(f"{base}/Users/{alan['id']}", json=suspended, headers=headers)
        assert response.status_code == 200 and response.json()["active"] is False
    found = await lookup(client, directory, "alan.turing@acme.test")
    assert [(r["id"], r["active"]) for r in found["Resources"]] == [(alan["id"], False)]
    response = await client.put(f"{base}/Users/{alan['id']}", json=bodies["Alan"], headers=headers)
    assert response.status_code == 200 and response.json()["active"] is True and response.json()["id"] == alan["id"]

    async with database.read() as session:
        states = {u.id: u.state for u in await session.scalars(select(DirectoryUser))}
        assert states == {ada["id"]: "active", grace["id"]: "active", alan["id"]: "active"}
        edges = await session.execute(select(col(GroupMembership.group_id), col(GroupMembership.user_id)))
        assert sorted(tuple(e) for e in edges) == sorted([(gid, ada["id"]), (gid, alan["id"])])

    # Deprovisioning with the "Delete" action: Grace (in no group), then Ada (still a member).
    for user in (grace, ada):
        assert (await client.delete(f"{base}/Users/{user['id']}", headers=headers)).status_code == 204
        assert (await client.get(f"{base}/Users/{user['id']}", headers=headers)).status_code == 404
    assert (await lookup(client, directory, "ada.lovelace@acme.test"))["totalResults"] == 0

    # Rows.
    async with database.read() as session:
        [stored_alan] = list(await session.scalars(select(DirectoryUser)))
        assert (stored_alan.id, stored_alan.state, stored_alan.job_title) == (alan["id"], "active", "Researcher")
        assert (stored_alan.first_name, stored_alan.last_name, stored_alan.email) == (
            "Alan",
            "Turing",
            "alan.turing@acme.test",
        )
        assert stored_alan.idp_id is None and stored_alan.custom_attributes == {}
        assert stored_alan.raw_attributes == {
            "schemas": [USER],
            "active": True,
            "emails": [{"value": "alan.turing@acme.test", "type": "work", "primary": True}],
            "name": {"familyName": "Turing", "givenName": "Alan", "formatted": "Alan Turing"},
            "title": "Researcher",
            "userName": "alan.turing@acme.test",
        }
        [stored_group] = list(await session.scalars(select(DirectoryGroup)))
        assert (stored_group.id, stored_group.name, stored_group.idp_id) == (gid, "Engineering", "Engineering")
        edges = await session.execute(select(col(GroupMembership.group_id), col(GroupMembership.user_id)))
        assert [tuple(e) for e in edges] == [(gid, alan["id"])]
    group_view = (await client.get(f"{base}/Groups/{gid}", headers=headers)).json()
    assert [(m["value"], m["display"]) for m in group_view["members"]] == [(alan["id"], "Alan Turing")]

    # The exact event sequence.
    log = await events(database, directory.id)
    assert [name for name, _ in log] == [
        "dsync.activated",
        "dsync.user.created",
        "dsync.user.created",
        "dsync.user.created",
        "dsync.group.created",
        "dsync.group.user_added",  # Ada
        "dsync.group.user_added",  # Grace
        "dsync.group.user_added",  # Alan
        "dsync.user.updated",  # Ada's PUT
        "dsync.group.user_removed",  # Grace
        "dsync.user.updated",  # Alan suspended
        "dsync.user.updated",  # Alan unsuspended
        "dsync.user.deleted",  # Grace
        "dsync.user.deleted",  # Ada
    ]
    data = [payload for _, payload in log]
    assert data[0]["type"] == "onelogin scim v2.0" and data[0]["state"] == "linked"
    assert [data[i]["id"] for i in (1, 2, 3)] == [ada["id"], grace["id"], alan["id"]]
    assert data[1]["custom_attributes"] == {"department": "R&D"} and data[1]["job_title"] == "Engineer"
    assert data[2]["job_title"] is None and data[3]["custom_attributes"] == {}
    assert all(data[i]["state"] == "active" for i in (1, 2, 3))
    assert [(d["user"]["id"], d["group"]["id"]) for d in data[5:8]] == [
        (ada["id"], gid),
        (grace["id"], gid),
        (alan["id"], gid),
    ]
    assert data[8]["id"] == ada["id"] and data[8]["job_title"] == "Staff Engineer"
    assert data[8]["custom_attributes"] == {"department": "Research"}
    previous = data[8]["previous_attributes"]
    assert previous["job_title"] == "Engineer" and previous["custom_attributes"] == {"department": "R&D"}
    assert previous["raw_attributes"] == {"title": "Engineer", ENTERPRISE: {"department": "R&D"}}
    assert (data[9]["user"]["id"], data[9]["group"]["id"]) == (grace["id"], gid)
    assert (data[10]["id"], data[10]["state"], data[10]["previous_attributes"]["state"]) == (
        alan["id"],
        "inactive",
        "active",
    )
    assert data[10]["raw_attributes"]["active"] is False
    assert (data[11]["id"], data[11]["state"], data[11]["previous_attributes"]["state"]) == (
        alan["id"],
        "active",
        "inactive",
    )
    assert [data[12]["id"], data[13]["id"]] == [grace["id"], ada["id"]]
    assert data[13]["job_title"] == "Staff Engineer"  # the deleted user as last known
    for payload in data[1:5] + data[8:9] + data[10:]:
        assert payload["organization_id"] == directory.organization_id
