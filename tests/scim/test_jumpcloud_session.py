"""Replays a realistic JumpCloud SCIM 2.0 session over HTTP and asserts the exact rows and event sequence."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlmodel import col

from gateway.store.database import Database
from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, GroupMembership
from tests.conftest import DirectoryFixture
from tests.conftest import recorded_events as events
from tests.scim.odd_forms import assert_odd_forms_refused

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def jumpcloud_user(first: str, last: str, *, external_id: str, department: str | None = None) -> dict[str, Any]:
    """The shape JumpCloud POSTs: enterprise URN declared (sometimes without the object), tel: phones, addresses."""
    email = f"{first.lower()}.{last.lower()}@acme.test"
    body: dict[str, Any] = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": external_id,
        "userName": email,
        "name": {"givenName": first, "familyName": last, "formatted": f"{first} {last}"},
        "displayName": f"{first} {last}",
        "title": "Engineer",
        "active": True,
        "emails": [{"value": email, "type": "work", "primary": True}],
        "phoneNumbers": [{"value": "tel:+1-555-0100", "type": "work"}],
        "addresses": [{"type": "work", "streetAddress": "1 Main St", "locality": "Boulder", "country": "US"}],
    }
    if department:
        body[ENTERPRISE] = {"department": department, "employeeNumber": "42"}
    return body


async def test_jumpcloud_session(client: httpx.AsyncClient, directory: DirectoryFixture, app: Any) -> None:
    database: Database = app.state.database
    base, headers = directory.path, directory.headers

    # Test Connection: lookups, then a test user and group created and deleted.
    response = await client.get(f"{base}/Users", params={"filter": 'userName eq "jc-test@acme.test"'}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/scim+json")
    assert response.json()["totalResults"] == 0
    test_user = (
        await client.post(f"{base}/Users", json=jumpcloud_user("Jc", "Test", external_id="jc-t"), headers=headers)
    ).json()
    test_group = (
        await client.post(
            f"{base}/Groups",
            json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "JC Test Group"},
            headers=headers,
        )
    ).json()
    assert (await client.delete(f"{base}/Users/{test_user['id']}", headers=headers)).status_code == 204
    assert (await client.delete(f"{base}/Groups/{test_group['id']}", headers=headers)).status_code == 204

    async with database.read() as session:
        linked = await session.get(Directory, directory.id)
        assert linked is not None and linked.state == "linked"

    # Users arrive.
    created = await client.post(
        f"{base}/Users", json=jumpcloud_user("Ada", "Lovelace", external_id="jc-1", department="R&D"), headers=headers
    )
    assert created.status_code == 201
    ada = created.json()
    assert created.headers["location"] == ada["meta"]["location"] == f"{directory.endpoint}/Users/{ada['id']}"
    assert created.headers["etag"] == ada["meta"]["version"]
    assert ada["id"].startswith("directory_user_") and ada["groups"] == []
    assert ada[ENTERPRISE]["department"] == "R&D"
    grace = (
        await client.post(f"{base}/Users", json=jumpcloud_user("Grace", "Hopper", external_id="jc-2"), headers=headers)
    ).json()
    alan = (
        await client.post(f"{base}/Users", json=jumpcloud_user("Alan", "Turing", external_id="jc-3"), headers=headers)
    ).json()

    # Lookup by filter, case-insensitively on userName.
    found = (
        await client.get(f"{base}/Users", params={"filter": 'userName eq "ADA.LOVELACE@acme.test"'}, headers=headers)
    ).json()
    assert [r["id"] for r in found["Resources"]] == [ada["id"]]

    # A group, members added one at a time, then in a batch (with a re-add, which is a no-op).
    group = (
        await client.post(
            f"{base}/Groups",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Engineering",
                "externalId": "jc-g-1",
            },
            headers=headers,
        )
    ).json()
    # Odd forms no IdP sends are refused amid the session; its own tolerances keep working after them.
    await assert_odd_forms_refused(client, database, base=base, headers=headers, user=ada["id"], group=group["id"])
    add_one = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": ada["id"]}]}]}
    assert (await client.patch(f"{base}/Groups/{group['id']}", json=add_one, headers=headers)).status_code == 204
    add_batch = {
        "schemas": [PATCH],
        "Operations": [
            {
                "op": "add",
                "path": "members",
                "value": [
                    {"value": ada["id"]},
                    {"value": grace["id"]},
                    {"value": alan["id"]},
                    {"value": "directory_user_unknown"},
                ],
            }
        ],
    }
    assert (await client.patch(f"{base}/Groups/{group['id']}", json=add_batch, headers=headers)).status_code == 204

    # PUT replace of a user with empty arrays and deactivation; a PUT that changes nothing writes no event.
    ada_put = jumpcloud_user("Ada", "King", external_id="jc-1", department="R&D")
    ada_put["phoneNumbers"] = []
    response = await client.put(f"{base}/Users/{ada['id']}", json=ada_put, headers=headers)
    assert response.status_code == 200 and "phoneNumbers" not in response.json()
    assert (await client.put(f"{base}/Users/{ada['id']}", json=ada_put, headers=headers)).status_code == 200

    # Rename the group with a path-less replace; one replace op per path on a user; deactivation.
    rename = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "value": {"id": group["id"], "displayName": "Engineers"}}],
    }
    renamed = await client.patch(f"{base}/Groups/{group['id']}", json=rename, headers=headers)
    assert renamed.status_code == 204  # a group PATCH answers no body unless attributes are asked for
    assert (await client.get(f"{base}/Groups/{group['id']}", headers=headers)).json()["displayName"] == "Engineers"
    title = {
        "schemas": [PATCH],
        "Operations": [
            {"op": "replace", "path": "title", "value": "Staff Engineer"},
            {"op": "replace", "path": "name.familyName", "value": "Hopper-Smith"},
        ],
    }
    assert (await client.patch(f"{base}/Users/{grace['id']}", json=title, headers=headers)).status_code == 200
    deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    response = await client.patch(f"{base}/Users/{alan['id']}", json=deactivate, headers=headers)
    assert response.status_code == 200 and response.json()["active"] is False

    # Member removes: by filter and by value list; then a delete.
    remove = {"schemas": [PATCH], "Operations": [{"op": "remove", "path": f'members[value eq "{grace["id"]}"]'}]}
    assert (await client.patch(f"{base}/Groups/{group['id']}", json=remove, headers=headers)).status_code == 204
    remove_list = {
        "schemas": [PATCH],
        "Operations": [{"op": "remove", "path": "members", "value": [{"value": alan["id"]}, {"value": grace["id"]}]}],
    }
    assert (await client.patch(f"{base}/Groups/{group['id']}", json=remove_list, headers=headers)).status_code == 204
    assert (await client.delete(f"{base}/Users/{grace['id']}", headers=headers)).status_code == 204

    # Rows.
    async with database.read() as session:
        users = {u.id: u for u in await session.scalars(select(DirectoryUser))}
        assert set(users) == {ada["id"], alan["id"]}
        assert users[ada["id"]].last_name == "King" and users[ada["id"]].email == "ada.king@acme.test"
        assert users[ada["id"]].custom_attributes == {"department": "R&D", "employee_number": "42"}
        assert users[alan["id"]].state == "inactive"
        [stored_group] = list(await session.scalars(select(DirectoryGroup)))
        assert (stored_group.name, stored_group.idp_id) == ("Engineers", "jc-g-1")
        edges = list(await session.execute(select(col(GroupMembership.group_id), col(GroupMembership.user_id))))
        assert [tuple(e) for e in edges] == [(group["id"], ada["id"])]

    group_view = (await client.get(f"{base}/Groups/{group['id']}", headers=headers)).json()
    assert [m["value"] for m in group_view["members"]] == [ada["id"]]
    ada_view = (await client.get(f"{base}/Users/{ada['id']}", headers=headers)).json()
    assert ada_view["groups"] == [
        {
            "value": group["id"],
            "display": "Engineers",
            "$ref": f"{directory.endpoint}/Groups/{group['id']}",
            "type": "direct",
        }
    ]

    # The exact event sequence.
    log = await events(database, directory.id)
    assert [name for name, _ in log] == [
        "dsync.activated",
        "dsync.user.created",
        "dsync.group.created",
        "dsync.user.deleted",
        "dsync.group.deleted",
        "dsync.user.created",
        "dsync.user.created",
        "dsync.user.created",
        "dsync.group.created",
        "dsync.group.user_added",
        "dsync.group.user_added",
        "dsync.group.user_added",
        "dsync.user.updated",
        "dsync.group.updated",
        "dsync.user.updated",
        "dsync.user.updated",
        "dsync.group.user_removed",
        "dsync.group.user_removed",
        "dsync.user.deleted",
    ]
    by_name = [(name, data) for name, data in log]
    ada_update = by_name[12][1]
    assert ada_update["object"] == "directory_user" and ada_update["id"] == ada["id"]
    assert ada_update["previous_attributes"]["last_name"] == "Lovelace"
    assert ada_update["organization_id"] == directory.organization_id
    assert by_name[13][1]["previous_attributes"] == {
        "name": "Engineering",
        "raw_attributes": {"displayName": "Engineering"},
    }
    added = by_name[9][1]
    assert added["user"]["id"] == ada["id"] and added["group"]["id"] == group["id"]
    assert added["directory_id"] == directory.id
    assert by_name[15][1]["state"] == "inactive" and by_name[15][1]["previous_attributes"]["state"] == "active"
