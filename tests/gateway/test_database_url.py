"""``DSYNC_DATABASE_URL`` for PostgreSQL as users write it: ``postgresql://`` (or ``postgres://``) means asyncpg, which
the writer and the lookups use directly; another driver is refused at start with a clear error."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from gateway.ops import organizations
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.database_url import async_url
from gateway.store.migrate import upgrade


def test_plain_postgres_urls_mean_asyncpg_and_others_are_kept() -> None:
    assert async_url("postgresql://u:p%40ss@db:5432/dsync").render_as_string(hide_password=False) == (
        "postgresql+asyncpg://u:p%40ss@db:5432/dsync"
    )
    assert async_url("postgres://u@db/dsync").drivername == "postgresql+asyncpg"
    assert async_url("postgresql+asyncpg://u@db/dsync").drivername == "postgresql+asyncpg"
    assert async_url("sqlite+aiosqlite:///./dsync.db").drivername == "sqlite+aiosqlite"


def test_another_postgres_driver_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="postgresql\\+asyncpg"):
        async_url("postgresql+psycopg://u@db/dsync")


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_plain_postgresql_url_writes_and_reads(settings: Settings) -> None:
    plain = settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    await asyncio.to_thread(upgrade, plain)  # (already at head: the URL is what is tried)
    database = Database(dataclasses.replace(settings, database_url=plain))
    try:
        created = await database.transaction(
            lambda session: organizations.create_organization(session, name="Plain", domains=["plain.test"]).id
        )
        again = await database.transaction(
            lambda session: organizations.create_organization(session, name="Plain 2", domains=[]).id
        )
        assert created != again
    finally:
        await database.dispose()
