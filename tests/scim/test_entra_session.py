"""Replays realistic Microsoft Entra ID (Azure AD) provisioning sessions over HTTP and asserts the exact rows and
event sequence.

Entra speaks two dialects to a non-gallery SCIM app:

* the default one: PATCH ``op`` capitalised ("Add"/"Replace"/"Remove"), booleans sent as the strings "True"/"False",
  one operation per attribute with a path (``emails[type eq "work"].value``, ``name.familyName``, enterprise URN
  paths), and member removals as ``{"op": "Remove", "path": "members", "value": [{"value": id}]}``;
* the RFC-compliant one enabled by the ``aadOptscim062020`` tenant-URL flag: lowercase ops, real booleans, several
  attributes replaced by one path-less ``replace`` whose keys are dotted or URN-qualified paths, and member removals
  as ``members[value eq "id"]``.

In both, Test Connection looks up a random GUID, users are looked up by ``userName`` / ``externalId`` before being
created, the manager is linked by a PATCH once both users exist (as a bare id), groups are looked up by
``displayName`` with ``excludedAttributes=members``, created empty and filled by PATCH, and a user is soft-deleted
with ``active`` false before the hard DELETE.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlmodel import col

from gateway.store.database import Database
from gateway.store.models import DirectoryGroup, DirectoryUser, GroupMembership
from tests.conftest import DirectoryFixture, make_directory
from tests.conftest import recorded_events as events
from tests.scim.odd_forms import assert_odd_forms_refused

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
# Entra declares this Microsoft schema next to the core one when it creates a group.
ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def entra_user(
    first: str,
    last: str,
    *,
    external_id: str,
    title: str,
    department: str,
    employee_number: str,
    phones: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The body Entra POSTs: both schemas declared, ``meta.resourceType`` and an empty ``roles`` included."""
    email = f"{first.lower()}.{last.lower()}@acme.test"
    body: dict[str, Any] = {
        "schemas": [CORE, ENTERPRISE],
        "externalId": external_id,
        "userName": email,
        "active": True,
        "displayName": f"{first} {last}",
        "title": title,
        "emails": [{"primary": True, "type": "work", "value": email}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": f"{first} {last}", "familyName": last, "givenName": first},
        "addresses": [{"type": "work", "country": "US", "locality": "Redmond", "primary": False}],
        "roles": [],
        ENTERPRISE: {"department": department, "employeeNumber": employee_number},
    }
    if phones:
        body["phoneNumbers"] = phones
    return body


def entra_group(display_name: str, *, object_id: str) -> dict[str, Any]:
    """The body Entra POSTs for a group: no members (they follow by PATCH), the Entra object id as externalId."""
    return {
        "schemas": [GROUP, ADSCIM_GROUP],
        "externalId": object_id,
        "displayName": display_name,
        "meta": {"resourceType": "Group"},
    }


async def event_count(database: Database, directory_id: str) -> int:
    return len(await events(database, directory_id))


async def lookup(client: httpx.AsyncClient, directory: DirectoryFixture, resource: str, **params: str) -> Any:
    response = await client.get(f"{directory.path}/{resource}", params=params, headers=directory.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [LIST]
    return body


async def entra_directory(app: Any) -> DirectoryFixture:
    return await make_directory(app.state.database, type="azure", name="Microsoft Entra ID")


# -- the default (non-compliant) dialect ----------------------------------------------------------------------


async def test_entra_default_session(client: httpx.AsyncClient, app: Any) -> None:
    database: Database = app.state.database
    directory = await entra_directory(app)
    base, headers = directory.path, directory.headers

    # Test Connection: a random GUID as userName (expects 200 and an empty ListResponse), and a group lookup.
    probe = await lookup(client, directory, "Users", filter=f'userName eq "{uuid.uuid4()}"')
    assert probe["totalResults"] == 0 and probe["Resources"] == []
    probe = await lookup(
        client, directory, "Groups", excludedAttributes="members", filter=f'displayName eq "{uuid.uuid4()}"'
    )
    assert probe["totalResults"] == 0

    # Initial cycle: each user is looked up by its matching attribute, then created.
    assert (await lookup(client, directory, "Users", filter='userName eq "nestor.wilke@acme.test"'))[
        "totalResults"
    ] == 0
    nestor_body = entra_user(
        "Nestor",
        "Wilke",
        external_id="NestorW",
        title="Director",
        department="Operations",
        employee_number="1001",
    )
    created = await client.post(f"{base}/Users", json=nestor_body, headers=headers)
    assert created.status_code == 201, created.text
    nestor = created.json()
    assert nestor["active"] is True and nestor["groups"] == [] and "roles" not in nestor

    assert (await lookup(client, directory, "Users", filter='userName eq "adele.vance@acme.test"'))["totalResults"] == 0
    adele_body = entra_user(
        "Adele",
        "Vance",
        external_id="AdeleV",
        title="Retail Manager",
        department="Retail",
        employee_number="1002",
        phones=[{"type": "work", "value": "+1 425 555 0109"}, {"type": "mobile", "value": "+1 425 555 0110"}],
    )
    created = await client.post(f"{base}/Users", json=adele_body, headers=headers)
    assert created.status_code == 201, created.text
    adele = created.json()
    assert created.headers["location"] == f"{directory.endpoint}/Users/{adele['id']}"
    assert adele[ENTERPRISE] == {"department": "Retail", "employeeNumber": "1002"}
    adele_url = f"{base}/Users/{adele['id']}"

    # Create-then-update: once both exist, Entra links the manager with a second request, as a bare id.
    link_manager = patch({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": nestor["id"]})
    response = await client.patch(adele_url, json=link_manager, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()[ENTERPRISE]["manager"] == {"value": nestor["id"]}

    # Entra reads the user by id before an incremental update, then sends one operation per changed attribute.
    assert (await client.get(adele_url, headers=headers)).status_code == 200
    update = patch(
        {"op": "Replace", "path": "displayName", "value": "Adele Vance-Smith"},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "adele.smith@acme.test"},
        {"op": "Replace", "path": "name.familyName", "value": "Vance-Smith"},
        {"op": "Replace", "path": "title", "value": "Sales Manager"},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Sales"},
        {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 425 555 0199"},
        {"op": "Add", "path": 'phoneNumbers[type eq "fax"].value', "value": "+1 425 555 0100"},
    )
    response = await client.patch(adele_url, json=update, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["displayName"] == "Adele Vance-Smith" and body["title"] == "Sales Manager"
    assert body["name"] == {"formatted": "Adele Vance", "familyName": "Vance-Smith", "givenName": "Adele"}
    assert body["emails"] == [{"primary": True, "type": "work", "value": "adele.smith@acme.test"}]
    assert body["phoneNumbers"] == [
        {"type": "work", "value": "+1 425 555 0109"},
        {"type": "mobile", "value": "+1 425 555 0199"},
        {"type": "fax", "value": "+1 425 555 0100"},
    ]
    assert body[ENTERPRISE] == {"department": "Sales", "employeeNumber": "1002", "manager": {"value": nestor["id"]}}

    # Re-sent values write nothing: the same update again, the manager again (Entra re-asserts it on later
    # cycles), and an "Add" of a single-valued attribute that already holds that value.
    before = await event_count(database, directory.id)
    for same in (update, link_manager, patch({"op": "Add", "path": "externalId", "value": "AdeleV"})):
        response = await client.patch(adele_url, json=same, headers=headers)
        assert response.status_code == 200, response.text
    assert await event_count(database, directory.id) == before

    # Entra's other default matching attribute: externalId (the work-email query is tested on its own below).
    by_external_id = await lookup(client, directory, "Users", filter='externalId eq "AdeleV"')
    assert [r["id"] for r in by_external_id["Resources"]] == [adele["id"]]

    # Groups: looked up by displayName without members, created empty, then filled by PATCH.
    sales_object_id = str(uuid.uuid4())
    assert (
        await lookup(client, directory, "Groups", excludedAttributes="members", filter='displayName eq "Sales Team"')
    )["totalResults"] == 0
    created = await client.post(
        f"{base}/Groups", json=entra_group("Sales Team", object_id=sales_object_id), headers=headers
    )
    assert created.status_code == 201, created.text
    group = created.json()
    assert group["members"] == [] and group["externalId"] == sales_object_id
    group_url = f"{base}/Groups/{group['id']}"
    # Odd forms no IdP sends are refused amid the session; its own tolerances keep working after them.
    await assert_odd_forms_refused(client, database, base=base, headers=headers, user=nestor["id"], group=group["id"])
    add_members = patch(
        {
            "op": "Add",
            "path": "members",
            "value": [{"$ref": None, "value": adele["id"]}, {"$ref": None, "value": nestor["id"]}],
        }
    )
    assert (await client.patch(group_url, json=add_members, headers=headers)).status_code == 204
    before = await event_count(database, directory.id)
    re_add = patch({"op": "Add", "path": "members", "value": [{"$ref": None, "value": adele["id"]}]})
    assert (await client.patch(group_url, json=re_add, headers=headers)).status_code == 204
    assert await event_count(database, directory.id) == before

    fetched = await client.get(group_url, params={"excludedAttributes": "members"}, headers=headers)
    assert fetched.status_code == 200 and "members" not in fetched.json()
    found = await lookup(
        client, directory, "Groups", excludedAttributes="members", filter='displayName eq "Sales Team"'
    )
    assert [r["id"] for r in found["Resources"]] == [group["id"]] and "members" not in found["Resources"][0]

    # Rename; then the group's externalId re-asserted with "Add" (no change, no event).
    rename = patch({"op": "Replace", "path": "displayName", "value": "Sales & Marketing"})
    response = await client.patch(f"{group_url}?excludedAttributes=members", json=rename, headers=headers)
    assert response.status_code == 200 and response.json()["displayName"] == "Sales & Marketing"
    assert "members" not in response.json()
    before = await event_count(database, directory.id)
    reassert = patch({"op": "Add", "path": "externalId", "value": sales_object_id})
    assert (await client.patch(group_url, json=reassert, headers=headers)).status_code == 204
    assert await event_count(database, directory.id) == before

    # Member removal, default shape: path "members" with the member in "value"; a repeat is a no-op.
    remove = patch({"op": "Remove", "path": "members", "value": [{"value": nestor["id"]}]})
    assert (await client.patch(group_url, json=remove, headers=headers)).status_code == 204
    before = await event_count(database, directory.id)
    assert (await client.patch(group_url, json=remove, headers=headers)).status_code == 204
    assert await event_count(database, directory.id) == before

    async with database.read() as session:
        stored = await session.get(DirectoryUser, adele["id"])
        assert stored is not None
        assert (stored.first_name, stored.last_name, stored.display_name, stored.job_title) == (
            "Adele",
            "Vance-Smith",
            "Adele Vance-Smith",
            "Sales Manager",
        )
        assert (stored.user_name, stored.email, stored.idp_id, stored.state) == (
            "adele.vance@acme.test",
            "adele.smith@acme.test",
            "AdeleV",
            "active",
        )
        assert stored.emails == [{"value": "adele.smith@acme.test", "type": "work", "primary": True}]
        assert stored.custom_attributes == {
            "department": "Sales",
            "employee_number": "1002",
            "manager_id": nestor["id"],
        }
        edges = list(await session.execute(select(col(GroupMembership.group_id), col(GroupMembership.user_id))))
        assert [tuple(e) for e in edges] == [(group["id"], adele["id"])]

    # Soft delete with the string "False" (a repeat is a no-op); still readable; restored with "True".
    disable = patch({"op": "Replace", "path": "active", "value": "False"})
    response = await client.patch(adele_url, json=disable, headers=headers)
    assert response.status_code == 200 and response.json()["active"] is False
    before = await event_count(database, directory.id)
    assert (await client.patch(adele_url, json=disable, headers=headers)).status_code == 200
    assert await event_count(database, directory.id) == before
    soft_deleted = await client.get(adele_url, headers=headers)
    assert soft_deleted.status_code == 200 and soft_deleted.json()["active"] is False
    enable = patch({"op": "Replace", "path": "active", "value": "True"})
    response = await client.patch(adele_url, json=enable, headers=headers)
    assert response.status_code == 200 and response.json()["active"] is True

    # Unassigned again, then hard-deleted.
    assert (await client.patch(adele_url, json=disable, headers=headers)).status_code == 200
    assert (await client.delete(adele_url, headers=headers)).status_code == 204
    assert (await client.get(adele_url, headers=headers)).status_code == 404

    # Rows.
    async with database.read() as session:
        users = {u.id: u for u in await session.scalars(select(DirectoryUser))}
        assert set(users) == {nestor["id"]}
        assert users[nestor["id"]].custom_attributes == {"department": "Operations", "employee_number": "1001"}
        assert users[nestor["id"]].state == "active"
        [stored_group] = list(await session.scalars(select(DirectoryGroup)))
        assert (stored_group.name, stored_group.idp_id, stored_group.external_id) == (
            "Sales & Marketing",
            sales_object_id,
            sales_object_id,
        )
        assert list(await session.scalars(select(col(GroupMembership.user_id)))) == []

    # The exact event sequence.
    log = await events(database, directory.id)
    assert [name for name, _ in log] == [
        "dsync.activated",
        "dsync.user.created",  # Nestor
        "dsync.user.created",  # Adele
        "dsync.user.updated",  # manager linked
        "dsync.user.updated",  # attributes
        "dsync.group.created",
        "dsync.group.user_added",  # Adele
        "dsync.group.user_added",  # Nestor
        "dsync.group.updated",  # renamed
        "dsync.group.user_removed",  # Nestor
        "dsync.user.updated",  # disabled
        "dsync.user.updated",  # enabled
        "dsync.user.updated",  # disabled
        "dsync.user.deleted",
    ]
    data = [d for _, d in log]
    assert data[1]["id"] == nestor["id"] and data[2]["id"] == adele["id"]
    assert data[3]["custom_attributes"]["manager_id"] == nestor["id"]
    assert data[3]["previous_attributes"]["custom_attributes"] == {"manager_id": None}
    previous = dict(data[4]["previous_attributes"])
    raw_previous = previous.pop("raw_attributes")
    assert previous == {
        "email": "adele.vance@acme.test",
        "emails": [{"value": "adele.vance@acme.test", "type": "work", "primary": True}],
        "last_name": "Vance",
        "display_name": "Adele Vance",
        "job_title": "Retail Manager",
        "custom_attributes": {"department": "Retail"},
    }
    assert raw_previous["displayName"] == "Adele Vance" and raw_previous["title"] == "Retail Manager"
    assert raw_previous[ENTERPRISE]["department"] == "Retail"
    assert [(d["user"]["id"], d["group"]["id"]) for d in data[6:8]] == [
        (adele["id"], group["id"]),
        (nestor["id"], group["id"]),
    ]
    assert data[8]["previous_attributes"]["name"] == "Sales Team"
    assert (data[9]["user"]["id"], data[9]["group"]["name"]) == (nestor["id"], "Sales & Marketing")
    assert [(d["state"], d["previous_attributes"]["state"]) for d in data[10:13]] == [
        ("inactive", "active"),
        ("active", "inactive"),
        ("inactive", "active"),
    ]
    assert data[13]["id"] == adele["id"] and data[13]["state"] == "inactive"


# -- the RFC-compliant dialect (aadOptscim062020) -------------------------------------------------------------


async def test_entra_compliant_session(client: httpx.AsyncClient, app: Any) -> None:
    database: Database = app.state.database
    directory = await entra_directory(app)
    base, headers = directory.path, directory.headers

    probe = await lookup(client, directory, "Users", filter=f'userName eq "{uuid.uuid4()}"')
    assert probe["totalResults"] == 0

    megan_body = entra_user(
        "Megan", "Bowen", external_id="MeganB", title="VP Marketing", department="Marketing", employee_number="2001"
    )
    lynne_body = entra_user(
        "Lynne",
        "Robbins",
        external_id="LynneR",
        title="Planner",
        department="Retail",
        employee_number="2002",
        phones=[{"type": "work", "value": "+1 425 555 0150"}],
    )
    ids: dict[str, str] = {}
    for key, body in (("megan", megan_body), ("lynne", lynne_body)):
        found = await lookup(client, directory, "Users", filter=f'userName eq "{body["userName"]}"')
        assert found["totalResults"] == 0
        created = await client.post(f"{base}/Users", json=body, headers=headers)
        assert created.status_code == 201, created.text
        ids[key] = created.json()["id"]
    megan, lynne = ids["megan"], ids["lynne"]
    lynne_url = f"{base}/Users/{lynne}"

    # The manager linked by a path-less replace whose key is the URN-qualified path, value a bare id.
    link_manager = patch({"op": "replace", "value": {f"{ENTERPRISE}:manager": megan}})
    response = await client.patch(lynne_url, json=link_manager, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()[ENTERPRISE]["manager"] == {"value": megan}

    # Several attributes in one path-less replace (dotted and URN keys; an echoed id is ignored), plus the work
    # email by a filtered path.
    update = patch(
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "lynne.gagnon@acme.test"},
        {
            "op": "replace",
            "value": {
                "id": lynne,
                "displayName": "Lynne Gagnon",
                "name.givenName": "Lynne",
                "name.familyName": "Gagnon",
                "title": "Senior Planner",
                f"{ENTERPRISE}:department": "Merchandising",
                f"{ENTERPRISE}:employeeNumber": "2002",
            },
        },
        {"op": "add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 425 555 0151"},
    )
    response = await client.patch(lynne_url, json=update, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == lynne and body["displayName"] == "Lynne Gagnon"
    assert body["name"] == {"formatted": "Lynne Robbins", "familyName": "Gagnon", "givenName": "Lynne"}
    assert body["emails"] == [{"primary": True, "type": "work", "value": "lynne.gagnon@acme.test"}]
    assert body["phoneNumbers"] == [
        {"type": "work", "value": "+1 425 555 0150"},
        {"type": "mobile", "value": "+1 425 555 0151"},
    ]
    assert body[ENTERPRISE] == {"department": "Merchandising", "employeeNumber": "2002", "manager": {"value": megan}}

    # No-ops: the same update again, and the manager re-sent with a path (the same stored value either way).
    before = await event_count(database, directory.id)
    for same in (update, link_manager, patch({"op": "add", "path": f"{ENTERPRISE}:manager", "value": megan})):
        response = await client.patch(lynne_url, json=same, headers=headers)
        assert response.status_code == 200, response.text
    assert await event_count(database, directory.id) == before

    # Group: looked up, created empty, members added, one removed by a value filter.
    object_id = str(uuid.uuid4())
    found = await lookup(client, directory, "Groups", excludedAttributes="members", filter='displayName eq "Retail"')
    assert found["totalResults"] == 0
    created = await client.post(f"{base}/Groups", json=entra_group("Retail", object_id=object_id), headers=headers)
    assert created.status_code == 201 and created.json()["members"] == []
    group = created.json()
    group_url = f"{base}/Groups/{group['id']}"
    add_members = patch({"op": "add", "path": "members", "value": [{"value": lynne}, {"value": megan}]})
    assert (await client.patch(group_url, json=add_members, headers=headers)).status_code == 204
    remove = patch({"op": "remove", "path": f'members[value eq "{megan}"]'})
    assert (await client.patch(group_url, json=remove, headers=headers)).status_code == 204
    before = await event_count(database, directory.id)
    assert (await client.patch(group_url, json=remove, headers=headers)).status_code == 204
    assert await event_count(database, directory.id) == before
    members = (await client.get(group_url, headers=headers)).json()["members"]
    assert [m["value"] for m in members] == [lynne]

    async with database.read() as session:
        stored = await session.get(DirectoryUser, lynne)
        assert stored is not None
        assert (stored.first_name, stored.last_name, stored.display_name, stored.job_title, stored.email) == (
            "Lynne",
            "Gagnon",
            "Lynne Gagnon",
            "Senior Planner",
            "lynne.gagnon@acme.test",
        )
        assert stored.custom_attributes == {
            "department": "Merchandising",
            "employee_number": "2002",
            "manager_id": megan,
        }

    # Soft delete with a real boolean (a repeat is a no-op), restore, soft delete, hard delete; the group goes too.
    disable = patch({"op": "replace", "path": "active", "value": False})
    response = await client.patch(lynne_url, json=disable, headers=headers)
    assert response.status_code == 200 and response.json()["active"] is False
    before = await event_count(database, directory.id)
    assert (await client.patch(lynne_url, json=disable, headers=headers)).status_code == 200
    assert await event_count(database, directory.id) == before
    enable = patch({"op": "replace", "path": "active", "value": True})
    response = await client.patch(lynne_url, json=enable, headers=headers)
    assert response.status_code == 200 and response.json()["active"] is True
    assert (await client.patch(lynne_url, json=disable, headers=headers)).status_code == 200
    assert (await client.delete(lynne_url, headers=headers)).status_code == 204
    assert (await client.delete(group_url, headers=headers)).status_code == 204

    async with database.read() as session:
        users = list(await session.scalars(select(DirectoryUser)))
        assert [(u.id, u.state, u.custom_attributes) for u in users] == [
            (megan, "active", {"department": "Marketing", "employee_number": "2001"})
        ]
        assert list(await session.scalars(select(DirectoryGroup))) == []
        assert list(await session.scalars(select(col(GroupMembership.user_id)))) == []

    log = await events(database, directory.id)
    assert [name for name, _ in log] == [
        "dsync.activated",
        "dsync.user.created",  # Megan
        "dsync.user.created",  # Lynne
        "dsync.user.updated",  # manager linked
        "dsync.user.updated",  # attributes
        "dsync.group.created",
        "dsync.group.user_added",  # Lynne
        "dsync.group.user_added",  # Megan
        "dsync.group.user_removed",  # Megan
        "dsync.user.updated",  # disabled
        "dsync.user.updated",  # enabled
        "dsync.user.updated",  # disabled
        "dsync.user.deleted",
        "dsync.group.deleted",
    ]
    data = [d for _, d in log]
    assert data[3]["previous_attributes"]["custom_attributes"] == {"manager_id": None}
    previous = dict(data[4]["previous_attributes"])
    previous.pop("raw_attributes")
    assert previous == {
        "email": "lynne.robbins@acme.test",
        "emails": [{"value": "lynne.robbins@acme.test", "type": "work", "primary": True}],
        "last_name": "Robbins",
        "display_name": "Lynne Robbins",
        "job_title": "Planner",
        "custom_attributes": {"department": "Retail"},
    }
    assert (data[8]["user"]["id"], data[8]["group"]["id"]) == (megan, group["id"])
    assert [d["state"] for d in data[9:12]] == ["inactive", "active", "inactive"]
    assert data[13]["id"] == group["id"] and data[13]["name"] == "Retail"


# -- lookups with unquoted values -------------------------------------------------------------------------------


async def test_entra_unquoted_external_id_lookup(client: httpx.AsyncClient, app: Any) -> None:
    """Microsoft's SCIM guide shows the matching query with a bare value: ``filter=externalId eq jyoung``."""
    directory = await entra_directory(app)
    body = entra_user(
        "Joy", "Young", external_id="jyoung", title="Analyst", department="Finance", employee_number="3001"
    )
    created = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
    assert created.status_code == 201, created.text
    found = await lookup(client, directory, "Users", filter="externalId eq jyoung")
    assert [r["id"] for r in found["Resources"]] == [created.json()["id"]]
    missing = await lookup(client, directory, "Users", filter="externalId eq nobody")
    assert missing["totalResults"] == 0


# -- lookups by work email --------------------------------------------------------------------------------------


async def test_entra_work_email_lookup(client: httpx.AsyncClient, app: Any) -> None:
    """Microsoft's SCIM guide: an attribute used for user uniqueness must be queryable, e.g. both
    ``userName eq "user@contoso.com"`` and ``emails[type eq "work"].value eq "user@contoso.com"``."""
    directory = await entra_directory(app)
    body = entra_user(
        "Diego", "Siciliani", external_id="DiegoS", title="HR Manager", department="HR", employee_number="4001"
    )
    created = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
    assert created.status_code == 201, created.text
    found = await lookup(
        client, directory, "Users", filter='emails[type eq "work"].value eq "diego.siciliani@acme.test"'
    )
    assert [r["id"] for r in found["Resources"]] == [created.json()["id"]]
    missing = await lookup(client, directory, "Users", filter='emails[type eq "work"].value eq "nobody@acme.test"')
    assert missing["totalResults"] == 0
