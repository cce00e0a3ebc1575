"""Custom attributes from IdP fields, over real SCIM traffic on both stores: each provider's defaults (Entra's
enterprise extension and manager, JumpCloud), the admin's overrides and own attributes (OneLogin custom fields
under a vendor URN), re-evaluation in the background, and the exact events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from gateway.ops import attribute_mappings
from gateway.ops.attribute_paths import parse_path, resolve
from gateway.ops.inputs import InvalidInput, NotFound
from tests.conftest import make_directory
from tests.rules.helpers import CORE, ENTERPRISE, event_count, events_after, patch, post, run, send, settled, user_roles

ONELOGIN_CUSTOM = "urn:onelogin:params:scim:schemas:extension:custom:2.0:User"


def entra_user(first: str, *, department: str, number: str) -> dict[str, Any]:
    email = f"{first.lower()}@acme.test"
    return {
        "schemas": [CORE, ENTERPRISE],
        "externalId": f"{first}-oid",
        "userName": email,
        "active": True,
        "displayName": f"{first} Test",
        "title": "Engineer",
        "emails": [{"primary": True, "type": "work", "value": email}],
        "name": {"formatted": f"{first} Test", "familyName": "Test", "givenName": first},
        "addresses": [{"type": "work", "country": "US", "locality": "Redmond", "primary": False}],
        "roles": [],
        ENTERPRISE: {"department": department, "employeeNumber": number, "costCenter": "CC-7"},
    }


async def test_entra_defaults_manager_and_overrides(client: httpx.AsyncClient, app: Any) -> None:
    entra = await make_directory(app.state.database, type="entra", name="Entra")
    nestor = await post(client, entra, "Users", entra_user("Nestor", department="Operations", number="1001"))
    adele = await post(client, entra, "Users", entra_user("Adele", department="Sales", number="1002"))
    # Entra links the manager afterwards, as a bare id.
    await send(
        client,
        entra,
        "PATCH",
        f"Users/{adele['id']}",
        patch({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": nestor["id"]}),
    )
    _, _, custom = await user_roles(app, adele["id"])
    assert custom == {
        "department": "Sales",
        "employee_number": "1002",
        "cost_center": "CC-7",
        "manager_id": nestor["id"],
    }

    # The admin reads job_title from the core title and the city from the work address, and stops reading the
    # cost center: every user is re-evaluated in the background, one event each, with the old values.
    before = await event_count(app, entra)
    path = 'addresses[type eq "work"].locality'

    def remap(session: Session) -> None:  # one change of the rules, as the dashboard's form saves it
        org = entra.organization_id
        attribute_mappings.map_attribute(session, directory_id=entra.id, name="job_title", path="title", scope=None)
        attribute_mappings.define_attribute(session, organization_id=org, name="city", scope=None)
        attribute_mappings.map_attribute(session, directory_id=entra.id, name="city", path=path, scope=None)
        attribute_mappings.map_attribute(session, directory_id=entra.id, name="cost_center", path=None, scope=None)

    await run(app, remap)
    await settled(app)
    log = await events_after(app, entra, before)
    assert [name for name, _ in log] == ["dsync.user.updated", "dsync.user.updated"]
    by_user = {data["id"]: data for _, data in log}
    assert by_user[adele["id"]]["custom_attributes"] == {
        "department": "Sales",
        "employee_number": "1002",
        "manager_id": nestor["id"],
        "job_title": "Engineer",
        "city": "Redmond",
    }
    assert by_user[adele["id"]]["previous_attributes"] == {
        "custom_attributes": {"job_title": None, "city": None, "cost_center": "CC-7"}
    }

    # A write applies the directory's mapping at once.
    before = await event_count(app, entra)
    moved = patch({"op": "replace", "path": 'addresses[type eq "work"].locality', "value": "Seattle"})
    await send(client, entra, "PATCH", f"Users/{adele['id']}", moved)
    [(name, data)] = await events_after(app, entra, before)
    assert data["custom_attributes"]["city"] == "Seattle"
    assert data["previous_attributes"]["custom_attributes"] == {"city": "Redmond"}

    # Back to the provider's default for the cost center.
    await run(
        app,
        lambda s: attribute_mappings.reset_attribute_mapping(s, directory_id=entra.id, name="cost_center", scope=None),
    )
    await settled(app)
    assert (await user_roles(app, nestor["id"]))[2]["cost_center"] == "CC-7"
    views = await run(app, lambda s: attribute_mappings.list_attribute_mappings(s, directory_id=entra.id, scope=None))
    sources = {v.name: (v.source, v.path) for v in views}
    assert sources["cost_center"] == ("default", f"{ENTERPRISE}:costCenter")
    assert sources["city"] == ("custom", path)
    assert sources["manager_email"] == ("none", None)


async def test_jumpcloud_defaults(client: httpx.AsyncClient, app: Any) -> None:
    jumpcloud = await make_directory(app.state.database, type="jumpcloud")
    body = {
        "schemas": [CORE, ENTERPRISE],
        "userName": "ada@acme.test",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@acme.test", "type": "work", "primary": True}],
        "active": True,
        "title": "Engineer",
        ENTERPRISE: {"department": "R&D", "employeeNumber": "42", "organization": "Acme", "division": "Labs"},
    }
    ada = await post(client, jumpcloud, "Users", body)
    assert (await user_roles(app, ada["id"]))[2] == {
        "department": "R&D",
        "employee_number": "42",
        "organization": "Acme",
        "division": "Labs",
    }


async def test_onelogin_custom_fields(client: httpx.AsyncClient, app: Any) -> None:
    """OneLogin's SCIM JSON template puts custom user fields where the admin says: here under a vendor URN."""
    onelogin = await make_directory(app.state.database, type="onelogin", name="OneLogin")
    org = onelogin.organization_id
    await run(app, lambda s: attribute_mappings.define_attribute(s, organization_id=org, name="badge", scope=None))
    await run(
        app,
        lambda s: attribute_mappings.map_attribute(
            s, directory_id=onelogin.id, name="badge", path=f"{ONELOGIN_CUSTOM}:badgeNumber", scope=None
        ),
    )
    await settled(app)
    body = {
        "schemas": [CORE, ENTERPRISE, ONELOGIN_CUSTOM],
        "userName": "grace@acme.test",
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [{"value": "grace@acme.test", "type": "work", "primary": True}],
        "active": True,
        ENTERPRISE: {"department": "Navy"},
        ONELOGIN_CUSTOM: {"badgeNumber": "B-12", "shirtSize": "M"},
    }
    grace = await post(client, onelogin, "Users", body)
    assert (await user_roles(app, grace["id"]))[2] == {"department": "Navy", "badge": "B-12"}
    # Deleting the definition: the value goes, with one event.
    before = await event_count(app, onelogin)
    await run(
        app, lambda s: attribute_mappings.delete_attribute_definition(s, organization_id=org, name="badge", scope=None)
    )
    await settled(app)
    [(name, data)] = await events_after(app, onelogin, before)
    assert data["previous_attributes"] == {"custom_attributes": {"badge": "B-12"}}


async def test_attribute_inputs(app: Any) -> None:
    directory = await make_directory(app.state.database)
    other = await make_directory(app.state.database, name="Other")
    for bad in ("", "emails[type eq work].value", "a..b", "urn:x:y:"):

        def remap(session: Session, path: str = bad) -> object:
            return attribute_mappings.map_attribute(
                session, directory_id=directory.id, name="department", path=path, scope=None
            )

        with pytest.raises(InvalidInput):
            await run(app, remap)
    with pytest.raises(InvalidInput):
        await run(
            app,
            lambda s: attribute_mappings.map_attribute(
                s, directory_id=directory.id, name="undefined", path="title", scope=None
            ),
        )
    with pytest.raises(NotFound):
        await run(
            app,
            lambda s: attribute_mappings.map_attribute(
                s, directory_id=directory.id, name="department", path="title", scope=other.organization_id
            ),
        )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("title", "Engineer"),
        ("name.givenName", "Ada"),
        ('emails[type eq "work"].value', "ada@work.test"),
        ("emails[primary eq true].value", "ada@home.test"),
        ("emails.value", "ada@home.test"),
        (f"{ENTERPRISE}:manager.value", "u-1"),
        (f"{ENTERPRISE}:MANAGER.displayName", "Boss"),
        (f"{CORE}:title", "Engineer"),
        ("urn:vendor:ext:User:Level", 3),
        ("phoneNumbers.value", None),
    ],
)
def test_paths(path: str, expected: Any) -> None:
    raw = {
        "title": "Engineer",
        "name": {"givenName": "Ada"},
        "emails": [
            {"value": "ada@home.test", "type": "home", "primary": True},
            {"value": "ada@work.test", "type": "work"},
        ],
        ENTERPRISE: {"manager": {"value": "u-1", "displayName": "Boss"}},
        "urn:vendor:ext:User": {"level": 3},
    }
    assert resolve(raw, parse_path(path)) == expected
