"""PostgreSQL's grouped writes plan each execution for the tables as they are: a generic plan cached while a
directory was small (before autovacuum had analyzed its initial sync, or with autovacuum off) kept reading every user
of the directory once it had grown: a one-member add took 200 ms at 100,000 users. So do lookups by a filter (a GET
by ``userName``), which the unique index or any other index on ``directory_id`` could serve. Lookups by id keep cached
plans (planning GET by id's statement cost more than running it)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from gateway.store.database import Database
from gateway.store.prepared import Reader

pytestmark = pytest.mark.postgres


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


async def test_grouped_writes_plan_each_execution(database: Database) -> None:
    show = text("SHOW plan_cache_mode")
    writes = database._write_engine  # asyncpg: grouped writes
    assert writes is not None
    async with writes.connect() as connection:
        assert (await connection.execute(show)).scalar() == "force_custom_plan"
    async with database.engine.connect() as connection:  # sessions and the lookups' asyncpg connections
        assert (await connection.execute(show)).scalar() == "auto"


async def test_lookups_by_a_filter_plan_each_execution(database: Database) -> None:
    setting = select(func.current_setting("plan_cache_mode"))

    def read(reader: Reader) -> str:
        return str(reader.rows(setting, {})[0][0])

    assert await database.lookup(read, planned=True) == "force_custom_plan"
    assert await database.lookup(read) == "auto"  # by id: the cached plan is the primary key's
