"""The invariant checks the fuzzers rely on hold for a healthy store, and fail for each way a store can go wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.log import record_event
from gateway.events.payloads import EventName, group_payload
from gateway.store.models import DirectoryGroup, DirectoryUser, Event, GroupMembership, utcnow
from tests.conftest import DirectoryFixture, make_directory
from tests.robustness.invariants import check_invariants


@pytest.fixture
async def store(client: httpx.AsyncClient, directory: DirectoryFixture, app: Any) -> dict[str, Any]:
    """Two users, a group with one of them, and another directory with a user: all made through SCIM."""
    ids: dict[str, Any] = {}
    for name in ("ada", "grace"):
        response = await client.post(
            f"{directory.path}/Users", json={"userName": f"{name}@acme.test"}, headers=directory.headers
        )
        ids[name] = response.json()["id"]
    group = await client.post(
        f"{directory.path}/Groups",
        json={"displayName": "Eng", "members": [{"value": ids["ada"]}]},
        headers=directory.headers,
    )
    ids["group"] = group.json()["id"]
    other = await make_directory(app.state.database, name="Other")
    response = await client.post(f"{other.path}/Users", json={"userName": "x@other.test"}, headers=other.headers)
    ids["other_user"] = response.json()["id"]
    ids["tokens"] = {directory.id: directory.token, other.id: other.token}
    return ids


def _edge(group: str, user: str, directory_id: str) -> GroupMembership:
    return GroupMembership(group_id=group, user_id=user, directory_id=directory_id, created_at=utcnow())


CORRUPTIONS: dict[str, Callable[[Session, dict[str, Any]], object]] = {
    # A membership row no event announced.
    "silent membership": lambda s, ids: s.add(_edge(ids["group"], ids["grace"], _directory_of(s, ids["grace"]))),
    # A membership joining a user and a group of different directories.
    "cross-directory membership": lambda s, ids: s.add(
        _edge(ids["group"], ids["other_user"], _directory_of(s, ids["group"]))
    ),
    # A change written without its event.
    "silent update": lambda s, ids: s.execute(
        update(DirectoryUser).where(col(DirectoryUser.id) == ids["grace"]).values(job_title="CEO")
    ),
    # A row whose creation the log does not have.
    "lost event": lambda s, ids: s.execute(
        delete(Event).where(col(Event.event) == EventName.USER_CREATED, Event.data["id"].as_string() == ids["grace"])
    ),
    # An event for a deletion that did not happen.
    "phantom deletion": lambda s, ids: _phantom_group_deletion(s, ids["group"]),
}


def _directory_of(session: Session, object_id: str) -> str:
    row = session.get(DirectoryUser, object_id) or session.get(DirectoryGroup, object_id)
    assert row is not None
    return row.directory_id


def _phantom_group_deletion(session: Session, group_id: str) -> None:
    group = session.get(DirectoryGroup, group_id)
    assert group is not None
    data = group_payload(group, organization_id="?")
    record_event(
        session, event=EventName.GROUP_DELETED, organization_id="?", directory_id=group.directory_id, data=data
    )


async def test_a_healthy_store_passes(client: httpx.AsyncClient, app: Any, store: dict[str, Any]) -> None:
    checked = await check_invariants(app.state.database, client, tokens=store["tokens"])
    assert len(checked.users) == 3 and len(checked.groups) == 1 and len(checked.edges) == 1


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
async def test_each_corruption_is_caught(
    client: httpx.AsyncClient, app: Any, store: dict[str, Any], corruption: str
) -> None:
    await app.state.database.transaction(lambda session: CORRUPTIONS[corruption](session, store))
    with pytest.raises(AssertionError):
        await check_invariants(app.state.database, client, tokens=store["tokens"])
