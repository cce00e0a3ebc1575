"""PostgreSQL's cached plans are dropped once a few seconds old (``gateway.store.plan_age``): a generic plan made while
a directory was small (before autovacuum had analyzed its initial sync, or with autovacuum off) chose an index for a
few dozen rows and kept reading every user of the directory once it had grown (a PUT's read of the user took 12 ms
at 40,000 users instead of 0.5). Planning every execution instead cost more than running most statements."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from gateway.store import plan_age
from gateway.store.database import Database
from scim.backend.resources import read_resource
from scim.backend.users import USERS
from tests.conftest import make_directory

pytestmark = pytest.mark.postgres


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


_ADD_USERS = text(
    "INSERT INTO directory_users (id, directory_id, idp_id, user_name, emails, state, custom_attributes,"
    " raw_attributes, version, created_at, updated_at)"
    " SELECT u.name || lpad(g::text, 7, '0'), :directory_id, 'x' || g, u.name || g, '[]', 'active', '{}', '{}', 1,"
    " now(), now() FROM (SELECT CAST(:prefix AS VARCHAR) AS name) AS u,"
    " generate_series(CAST(:first AS INTEGER), CAST(:last AS INTEGER)) AS g"
)
# The statement that reads a user in a write job (PUT), as the write connection prepared it.
_SNAPSHOT = text(
    "SELECT name, generic_plans FROM pg_prepared_statements"
    " WHERE statement LIKE '%dsync_groups_seen%' AND statement NOT LIKE '%pg_prepared_statements%'"
)


async def _read_user(connection: AsyncConnection, *, directory_id: str, user_id: str) -> None:
    await connection.run_sync(
        lambda sync: read_resource(Session(bind=sync), USERS, directory_id=directory_id, resource_id=user_id)
    )


async def test_plans_made_on_a_small_directory_do_not_outlive_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = await make_directory(database)
    prefix = f"u{directory.id[-8:]}-"
    writes = database._write_engine  # asyncpg: grouped writes
    assert writes is not None
    async with writes.begin() as connection:
        assert (await connection.execute(text("SHOW plan_cache_mode"))).scalar() == "auto"
        await connection.execute(_ADD_USERS, {"prefix": prefix, "directory_id": directory.id, "first": 1, "last": 20})
    user_id = f"{prefix}{1:07d}"
    for _ in range(8):  # past the five custom plans: a generic plan, made for 20 users, is cached
        async with writes.begin() as connection:
            await _read_user(connection, directory_id=directory.id, user_id=user_id)
    async with writes.begin() as connection:
        made = (await connection.execute(_SNAPSHOT)).one().generic_plans
        assert made >= 1
        await connection.execute(
            _ADD_USERS, {"prefix": prefix, "directory_id": directory.id, "first": 100, "last": 5099}
        )

    monkeypatch.setattr(plan_age, "PLANS_KEPT_SECONDS", 0.0)  # the plans are old now
    async with writes.begin() as connection:
        await _read_user(connection, directory_id=directory.id, user_id=user_id)
        name, remade = (await connection.execute(_SNAPSHOT)).one()
        assert remade > made  # planned again, for the directory as it now is
        explain = f"EXPLAIN EXECUTE {name}('{user_id}', '{directory.id}')"
        plan = "\n".join(row[0] for row in await connection.exec_driver_sql(explain))
    # The user found through an index on its id (not a directory's index, its users filtered by id one by one).
    [found_by] = [line for line in plan.splitlines() if "on directory_users" in line]
    first_condition = plan.splitlines()[plan.splitlines().index(found_by) + 1]
    assert "Index Cond" in first_condition and "(id)::text = ($1)::text" in first_condition, plan
    async with writes.begin() as connection:
        await connection.execute(text("DELETE FROM directories WHERE id = :id"), {"id": directory.id})


async def test_lookups_and_writes_keep_cached_plans(database: Database) -> None:
    writes = database._write_engine
    assert writes is not None
    show = text("SHOW plan_cache_mode")
    for engine in (writes, database.engine):  # grouped writes; sessions and the lookups' asyncpg connections
        async with engine.connect() as connection:
            assert (await connection.execute(show)).scalar() == "auto"
