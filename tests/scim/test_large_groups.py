"""Groups past the bind-parameter limit (32,766 on stock SQLite builds, 32,767 through asyncpg): POST, PUT and PATCH
of a group with more members than one statement could name work on both stores, and PUT writes only the difference."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.settings import Settings
from gateway.store.ids import new_id
from gateway.store.models import Directory, DirectoryUser, Event, GroupMembership
from scim.backend.columns import user_columns
from scim.backend.resources import new_row
from tests.conftest import DirectoryFixture

pytestmark = pytest.mark.slow

MEMBERS = 33_000  # past every store's bind-parameter limit
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A 33,000-member body is ~1.5 MB; no background jobs beside the requests.
    return dataclasses.replace(
        settings, scim_max_body_bytes=16 * 1024 * 1024, webhook_worker=False, event_retention_days=0
    )


async def _seed_users(app: Any, directory: DirectoryFixture, count: int) -> list[str]:
    """``count`` users inserted directly (as ingest would store them, without their events): SCIM POSTs would take
    minutes here."""

    def seed(session: Session) -> list[str]:
        owner = session.get(Directory, directory.id)
        assert owner is not None
        rows = [
            new_row(
                directory=owner,
                resource_id=new_id("directory_user"),
                columns=user_columns({"userName": f"member{i}@acme.test"}),
            )
            for i in range(count)
        ]
        session.execute(DirectoryUser.__table__.insert(), rows)  # type: ignore[attr-defined]
        return [row["id"] for row in rows]

    ids: list[str] = await app.state.database.transaction(seed)
    return ids


async def _counts(app: Any, group_id: str) -> tuple[int, dict[str, int]]:
    def count(session: Session) -> tuple[int, dict[str, int]]:
        members = session.scalar(
            select(func.count()).select_from(GroupMembership).where(col(GroupMembership.group_id) == group_id)
        )
        events = session.execute(select(col(Event.event), func.count()).group_by(col(Event.event))).all()
        return members or 0, {name: n for name, n in events}

    result: tuple[int, dict[str, int]] = await app.state.database.query(count)
    return result


def _members(ids: list[str]) -> list[dict[str, str]]:
    return [{"value": i} for i in ids]


async def test_post_put_and_patch_of_a_group_larger_than_a_statement_can_name(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    users = await _seed_users(app, directory, MEMBERS + 200)
    first, spare = users[:MEMBERS], users[MEMBERS:]
    body = {"schemas": [GROUP], "displayName": "Everyone", "members": _members(first)}
    created = await client.post(f"{directory.path}/Groups", json=body, headers=directory.headers, timeout=120)
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    assert len(created.json()["members"]) == MEMBERS
    assert (await _counts(app, group_id))[0] == MEMBERS

    # PUT: 100 members leave, 100 join; only they are written and get events.
    replaced = {**body, "members": _members(first[100:] + spare[:100])}
    put = await client.put(f"{directory.path}/Groups/{group_id}", json=replaced, headers=directory.headers, timeout=120)
    assert put.status_code == 200, put.text
    members, events = await _counts(app, group_id)
    assert members == MEMBERS
    assert events["dsync.group.user_removed"] == 100
    assert events["dsync.group.user_added"] == MEMBERS + 100

    # PATCH: add one, remove all but one in one operation (a value list past the limit too).
    operations = [
        {"op": "add", "path": "members", "value": _members(spare[100:101])},
        {"op": "remove", "path": "members", "value": _members(first[100:] + spare[:99])},
    ]
    patched = await client.patch(
        f"{directory.path}/Groups/{group_id}",
        json={"schemas": [PATCH], "Operations": operations},
        headers=directory.headers,
        timeout=120,
    )
    assert patched.status_code in (200, 204), patched.text
    members, events = await _counts(app, group_id)
    assert members == 2
    assert events["dsync.group.user_removed"] == 100 + MEMBERS - 1
    got = await client.get(f"{directory.path}/Groups/{group_id}", headers=directory.headers)
    assert sorted(m["value"] for m in got.json()["members"]) == sorted([spare[99], spare[100]])
