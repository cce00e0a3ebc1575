"""Per-directory behaviour: deprovisioning policy and provider-aware identity of groups."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from gateway.ops import directories, inputs
from gateway.store.models import DirectoryGroup, DirectoryUser, Event, GroupMembership
from tests.conftest import DirectoryFixture, make_directory

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def deactivate(value: Any = False) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": value}}]}


async def event_names(app: Any, directory_id: str) -> list[str]:
    async with app.state.database.read() as session:
        return list(
            await session.scalars(
                select(col(Event.event)).where(col(Event.directory_id) == directory_id).order_by(col(Event.cursor))
            )
        )


async def test_keep_inactive_is_the_default(client: httpx.AsyncClient, directory: DirectoryFixture, app: Any) -> None:
    user = (
        await client.post(f"{directory.path}/Users", json={"userName": "a@x.test"}, headers=directory.headers)
    ).json()
    url = f"{directory.path}/Users/{user['id']}"
    assert (await client.patch(url, json=deactivate("False"), headers=directory.headers)).json()["active"] is False
    # Re-sending the deactivation changes nothing; reactivation keeps the same id.
    await client.patch(url, json=deactivate(False), headers=directory.headers)
    assert (await client.patch(url, json=deactivate("True"), headers=directory.headers)).json()["id"] == user["id"]
    assert await event_names(app, directory.id) == [
        "dsync.activated",
        "dsync.user.created",
        "dsync.user.updated",
        "dsync.user.updated",
    ]


async def test_delete_inactive_deletes_on_deactivation(client: httpx.AsyncClient, app: Any) -> None:
    database = app.state.database
    directory = await make_directory(database, type="okta", name="Okta")
    await database.transaction(
        lambda session: directories.set_deprovision_policy(session, directory_id=directory.id, policy="delete_inactive")
    )
    headers = directory.headers
    user = (await client.post(f"{directory.path}/Users", json={"userName": "b@x.test"}, headers=headers)).json()
    group = (
        await client.post(
            f"{directory.path}/Groups",
            json={"displayName": "Eng", "members": [{"value": user["id"]}]},
            headers=headers,
        )
    ).json()
    response = await client.patch(f"{directory.path}/Users/{user['id']}", json=deactivate(), headers=headers)
    assert response.status_code == 200 and response.json()["active"] is False
    assert (await client.get(f"{directory.path}/Users/{user['id']}", headers=headers)).status_code == 404
    async with database.read() as session:
        assert list(await session.scalars(select(col(DirectoryUser.id)))) == []
        assert list(await session.scalars(select(col(GroupMembership.user_id)))) == []
        deleted = await session.scalar(select(col(Event.data)).where(col(Event.event) == "dsync.user.deleted"))
    assert deleted is not None and deleted["state"] == "inactive" and deleted["id"] == user["id"]
    assert await event_names(app, directory.id) == [
        "dsync.activated",
        "dsync.user.created",
        "dsync.group.created",
        "dsync.group.user_added",
        "dsync.user.deleted",
    ]
    assert group["id"].startswith("directory_group_")


@pytest.mark.parametrize(("kind", "expected"), [("okta", "Engineering"), ("jumpcloud", "ext-1"), ("azure", "ext-1")])
async def test_group_identity_follows_the_provider(
    client: httpx.AsyncClient, app: Any, kind: str, expected: str
) -> None:
    directory = await make_directory(app.state.database, type=kind, name=kind)
    body = {"displayName": "Engineering", "externalId": "ext-1"}
    assert (await client.post(f"{directory.path}/Groups", json=body, headers=directory.headers)).status_code == 201
    async with app.state.database.read() as session:
        assert await session.scalar(select(col(DirectoryGroup.idp_id))) == expected


async def test_unknown_policy_is_refused(app: Any) -> None:
    directory = await make_directory(app.state.database)
    with pytest.raises(inputs.InvalidInput, match="keep_inactive"):
        await app.state.database.transaction(
            lambda session: directories.set_deprovision_policy(session, directory_id=directory.id, policy="shred")
        )


async def test_user_without_usable_email_is_stored(
    client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    body = {"userName": "jdoe", "emails": [{"value": "", "type": "work"}], "name": {"givenName": "J"}}
    response = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
    assert response.status_code == 201, response.text
    async with app.state.database.read() as session:
        user = await session.scalar(select(DirectoryUser).where(DirectoryUser.id == response.json()["id"]))
    assert user is not None and user.email is None and user.emails == [] and user.first_name == "J"
