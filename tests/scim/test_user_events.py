"""A user's events carry the whole user: the deleted event, made from the row its DELETE returned (on SQLite its JSON
columns embedded as stored, not decoded and encoded again), carries it exactly as the created event did."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import DirectoryFixture, recorded_events

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def test_the_deleted_event_carries_the_user_as_created(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": "zoë@acme.test",
        "externalId": "jc-42",
        "name": {"givenName": "Zoë", "familyName": "Ødegård"},
        "title": "Engineer",
        "emails": [
            {"value": "zoë@acme.test", "type": "work", "primary": True},
            {"value": "Zoe@Home.test", "type": "home"},
        ],
        ENTERPRISE: {"employeeNumber": "7", "department": "R&D", "manager": {"value": "mgr-1"}},
        "urn:example:vendor:1.0:User": {"nested": [1, 2.5, {"deep": None}]},
    }
    created = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    deleted = await client.delete(f"{directory.path}/Users/{user_id}", headers=directory.headers)
    assert deleted.status_code == 204

    log = dict((name, data) for name, data in await recorded_events(app.state.database, directory.id))
    assert log["dsync.user.deleted"] == log["dsync.user.created"]
    user = log["dsync.user.deleted"]
    assert user["id"] == user_id and user["emails"][1]["value"] == "Zoe@Home.test"
    assert user["raw_attributes"]["urn:example:vendor:1.0:User"] == {"nested": [1, 2.5, {"deep": None}]}
    assert user["custom_attributes"] and user["created_at"].endswith("Z")
