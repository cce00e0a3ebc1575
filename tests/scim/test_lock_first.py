"""PostgreSQL: the directory lock a write batch keeps for later (``AsyncpgStatements.lock_later``) goes as the first
execution of the batch's run of DELETEs or member adds, in their round trip (``batch_driver.LockFirst``), and before
a PUT's read in a round trip of its own. The statements after it must read what the batch that held the lock
committed (a snapshot taken once it is held), and a directory changed since the snapshot the jobs started from must
still refuse them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from gateway.ops import directories
from gateway.settings import Settings
from gateway.store import batch_driver
from gateway.store.database import Database
from gateway.store.prepared import Compiled
from scim.api import resources
from scim.api.rate_limit import RateLimiter
from scim.backend import groups, users
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory, recorded_events

pytestmark = pytest.mark.postgres


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, webhook_worker=False, event_retention_days=0)


@pytest.fixture
def locks_first(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many kept locks went as the first executions of a run, each time some did."""
    taken: list[int] = []
    original = batch_driver.AsyncpgStatements._locks_first

    def counted(statements: batch_driver.AsyncpgStatements, waiting: Any) -> list[Any]:
        locks = original(statements, waiting)
        taken.extend([len(locks)] if locks else [])
        return locks

    monkeypatch.setattr(batch_driver.AsyncpgStatements, "_locks_first", counted)
    yield taken


async def _holding_the_directory(database: Database, locked: str, statement: str, **values: Any) -> Any:
    """Another transaction (as another instance's batch) that holds the directory's lock and has run ``statement``."""
    connection: AsyncConnection = await database.engine.connect()
    await connection.begin()
    await connection.execute(text("SELECT FROM directories WHERE id = :id FOR NO KEY UPDATE"), {"id": locked})
    await connection.execute(text(statement), values)
    return connection


async def _created(client: httpx.AsyncClient, directory: DirectoryFixture, name: str) -> str:
    """A new user; the directory linked first, so that the next batch starts from a snapshot of it."""
    await client.get(f"{directory.path}/Users", headers=directory.headers)
    body = {"userName": name, "displayName": "Before", "emails": [{"value": name, "primary": True}]}
    response = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
    assert response.status_code == 201
    user_id: str = response.json()["id"]
    return user_id


async def _user_and_group(client: httpx.AsyncClient, directory: DirectoryFixture, name: str) -> tuple[str, str]:
    """A new user (``_created``) and a new group without members."""
    user = await _created(client, directory, name)
    group = await client.post(f"{directory.path}/Groups", json={"displayName": "Team"}, headers=directory.headers)
    assert group.status_code == 201
    group_id: str = group.json()["id"]
    return user, group_id


async def _rotated(database: Database, directory_id: str) -> str:
    """The directory's token rotated (as by another instance): the new one."""

    def rotate(session: Session) -> str:
        issued = directories.rotate_directory_token(session, directory_id=directory_id, public_url=PUBLIC_URL)
        return issued.bearer_token

    token: str = await database.transaction(rotate)
    return token


async def _waits(call: Any) -> asyncio.Future[httpx.Response]:
    pending: asyncio.Future[httpx.Response] = asyncio.ensure_future(call)
    await asyncio.sleep(0.3)
    assert not pending.done()  # it waits for the lock
    return pending


async def test_a_put_that_waited_for_the_lock_reads_what_its_holder_committed(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, locks_first: list[int]
) -> None:
    database = app.state.database
    user = await _created(client, directory, "renamed@acme.test")
    holder = await _holding_the_directory(
        database,
        directory.id,
        "UPDATE directory_users SET display_name = 'Holder', version = version + 1 WHERE id = :id",
        id=user,
    )
    body = {"userName": "renamed@acme.test", "displayName": "Put", "emails": [{"value": "renamed@acme.test"}]}
    put = await _waits(client.put(f"{directory.path}/Users/{user}", json=body, headers=directory.headers))
    await holder.commit()
    await holder.close()
    assert (await put).status_code == 200
    assert locks_first == []  # (the lock went before the read, in a round trip of its own)
    async with database.engine.connect() as connection:
        version = await connection.execute(text("SELECT version FROM directory_users WHERE id = :id"), {"id": user})
        assert version.scalar_one() == 3  # created 1, the holder's 2, the PUT's 3: no update lost
    updated = [data for name, data in await recorded_events(database, directory.id) if name == "dsync.user.updated"]
    assert updated[-1]["display_name"] == "Put"
    assert updated[-1]["previous_attributes"]["display_name"] == "Holder"  # read after the holder's commit


async def test_a_delete_that_waited_for_the_lock_touches_the_group_its_holder_added_the_user_to(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, locks_first: list[int]
) -> None:
    database = app.state.database
    user, group_id = await _user_and_group(client, directory, "leaver@acme.test")
    holder = await _holding_the_directory(
        database,
        directory.id,
        "INSERT INTO group_memberships (group_id, user_id, directory_id, display, created_at)"
        " VALUES (:group_id, :user_id, :directory_id, NULL, now())",
        group_id=group_id,
        user_id=user,
        directory_id=directory.id,
    )
    delete = await _waits(client.delete(f"{directory.path}/Users/{user}", headers=directory.headers))
    await holder.commit()
    await holder.close()
    assert (await delete).status_code == 204
    assert locks_first == [1]
    read = await client.get(f"{directory.path}/Groups/{group_id}", headers=directory.headers)
    assert read.json().get("members", []) == []
    assert read.json()["meta"]["version"] == 'W/"2"'  # the membership its holder added, left with the user


async def test_a_put_or_delete_with_a_token_rotated_since_the_snapshot_changes_nothing(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, locks_first: list[int]
) -> None:
    database = app.state.database
    path, headers = directory.path, directory.headers
    user = await _created(client, directory, "kept@acme.test")

    fresh = {**headers, "Authorization": f"Bearer {await _rotated(database, directory.id)}"}
    unlimited, limiter = app.state.scim_rate_limiter, RateLimiter(rate=1.0, burst=2, clock=lambda: 0.0)
    app.state.scim_rate_limiter = limiter
    body = {"userName": "kept@acme.test", "displayName": "Stale", "emails": [{"value": "kept@acme.test"}]}
    assert (await client.put(f"{path}/Users/{user}", json=body, headers=headers)).status_code == 401
    # The first run had admitted it from the snapshot: the directory's rate limit got that request back.
    assert limiter.acquire(directory.id, amount=2) == 0.0
    app.state.scim_rate_limiter = unlimited
    kept = await client.get(f"{path}/Users/{user}", headers=fresh)
    assert kept.json()["displayName"] == "Before"
    # Logged as a wrong token (the run that took it from the snapshot does not count it as authenticated).
    await app.state.request_log.flush()
    async with database.engine.connect() as connection:
        rejected = text("SELECT last_rejected_token_at FROM directories WHERE id = :id")
        assert (await connection.execute(rejected, {"id": directory.id})).scalar_one() is not None
        logged = text("SELECT count(*) FROM scim_requests WHERE directory_id = :id AND method = 'PUT'")
        assert (await connection.execute(logged, {"id": directory.id})).scalar_one() == 0

    await _created(client, dataclasses.replace(directory, token=fresh["Authorization"][7:]), "next@acme.test")
    await _rotated(database, directory.id)  # and rotated again since that batch's snapshot
    assert (await client.delete(f"{path}/Users/{user}", headers=fresh)).status_code == 401
    assert locks_first == [1]  # refused by the lock taken first (then again, reading under the lock)
    assert (await client.get(f"{path}/Users/{user}", headers=fresh)).status_code == 401  # (that token is gone too)
    async with database.engine.connect() as connection:
        found = await connection.execute(text("SELECT display_name FROM directory_users WHERE id = :id"), {"id": user})
        assert found.scalar_one() == "Before"


async def test_a_large_patch_refused_at_its_write_gets_back_all_it_was_charged(
    app: Any,
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PATCH too large for one request is charged its extra once its read has sized it; when the token is rotated
    between that read and its write, the write (from the snapshot, then under the lock) refuses it: the directory's
    rate limit gets back the request and the extra."""
    database = app.state.database
    user = await _created(client, directory, "large@acme.test")

    apply = resources._apply_off_loop

    async def rotated_meanwhile(*args: Any, **kwargs: Any) -> Any:
        await _rotated(database, directory.id)
        return await apply(*args, **kwargs)

    monkeypatch.setattr(resources, "_apply_off_loop", rotated_meanwhile)
    unlimited, limiter = app.state.scim_rate_limiter, RateLimiter(rate=1.0, burst=10, clock=lambda: 0.0)
    app.state.scim_rate_limiter = limiter
    emails = [{"value": f"e{i}@acme.test"} for i in range(100)]  # (charged about 3 requests' worth extra)
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "emails", "value": emails}],
    }
    response = await client.patch(f"{directory.path}/Users/{user}", json=patch, headers=directory.headers)
    app.state.scim_rate_limiter = unlimited
    assert response.status_code == 401
    assert limiter.acquire(directory.id, amount=10) == 0.0  # the whole burst is there again: nothing kept
    async with database.engine.connect() as connection:
        found = text("SELECT count(*) FROM directory_users WHERE id = :id AND display_name = 'Before'")
        assert (await connection.execute(found, {"id": user})).scalar_one() == 1


async def test_deletes_of_two_directories_in_one_batch_take_both_locks_first(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, locks_first: list[int]
) -> None:
    database = app.state.database
    other = await make_directory(database, name="Other")
    users = [await _created(client, d, f"one@{i}.test") for i, d in enumerate((directory, other))]
    busy = asyncio.ensure_future(database.transaction(lambda s: s.execute(text("SELECT pg_sleep(0.5)"))))
    await asyncio.sleep(0.05)
    deletes = [
        asyncio.ensure_future(client.delete(f"{d.path}/Users/{u}", headers=d.headers))
        for d, u in zip((directory, other), users, strict=True)
    ]
    await busy
    assert [r.status_code for r in await asyncio.gather(*deletes)] == [204, 204]
    assert locks_first == [2]
    for d in (directory, other):
        assert [name for name, _ in await recorded_events(database, d.id)][-1] == "dsync.user.deleted"


async def test_a_member_add_that_waited_for_the_lock_adds_to_the_group_as_its_holder_left_it(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, locks_first: list[int]
) -> None:
    database = app.state.database
    user, group_id = await _user_and_group(client, directory, "joiner@acme.test")
    holder = await _holding_the_directory(
        database,
        directory.id,
        "UPDATE directory_groups SET name = 'Renamed', version = version + 1 WHERE id = :id",
        id=group_id,
    )
    add = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}],
    }
    patch = await _waits(client.patch(f"{directory.path}/Groups/{group_id}", json=add, headers=directory.headers))
    await holder.commit()
    await holder.close()
    assert (await patch).status_code in (200, 204)
    assert locks_first == [1]
    read = (await client.get(f"{directory.path}/Groups/{group_id}", headers=directory.headers)).json()
    assert read["meta"]["version"] == 'W/"3"'  # created 1, the holder's 2, the add's 3
    assert [member["value"] for member in read["members"]] == [user]
    added = [data for name, data in await recorded_events(database, directory.id) if name == "dsync.group.user_added"]
    assert added[-1]["group"]["name"] == "Renamed"


@pytest.mark.parametrize("plans", ["force_custom_plan", "force_generic_plan"])
async def test_each_gated_statement_checks_the_lock_in_its_lock_execution(app: Any, plans: str) -> None:
    # The lock's execution gives the statement's own parameters None: PostgreSQL must not prove the outermost query
    # empty from them and leave the condition that takes the lock unchecked (``auth.taking_lock_first``). A check
    # of a directory that is not as seen (here: none at all) must fail, whatever the plan.
    gated = [
        users._DELETE_USER_LOCK_FIRST,
        *groups._LOCK_FIRST.values(),
    ]
    lock = {"directory_id": "'nowhere'", "seen_rules_version": "0", "seen_updated_at": "now()"}
    async with app.state.database.engine.connect() as connection:
        await connection.exec_driver_sql(f"SET plan_cache_mode = {plans}")
        for number, statement in enumerate(gated):
            compiled = Compiled(statement.statement, connection.dialect)
            arguments = [
                "true"
                if name == batch_driver.LOCK_FIRST
                else lock.get(name.removeprefix(batch_driver.LOCK_FIRST_PREFIX), "'x'")
                if name.startswith(batch_driver.LOCK_FIRST_PREFIX)
                else "NULL"
                for name in compiled.names
            ]
            await connection.exec_driver_sql(f"PREPARE gated_{number} AS {compiled.sql}")
            with pytest.raises(DBAPIError, match="division by zero"):
                async with connection.begin_nested():
                    await connection.exec_driver_sql(f"EXECUTE gated_{number}({', '.join(arguments)})")
