"""Migration 0005: externalId stops being unique (RFC 7643 §3.1) on a database migrated before it, on both stores;
the migrated indexes are the models' own."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from gateway.store import models  # noqa: F401  (the tables' metadata)
from gateway.store.migrate import alembic_config, upgrade

_INDEXED = ("directory_users", "directory_groups")
_EXPRESSION_INDEX = "uq_directory_users_user_name"  # lower(user_name): SQLite's reflection skips it


async def _indexes(url: str) -> dict[str, bool]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:

            def read(sync: Any) -> dict[str, bool]:
                inspector = inspect(sync)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", SAWarning)
                    indexes = [i for t in _INDEXED for i in inspector.get_indexes(t)]
                return {i["name"]: bool(i["unique"]) for i in indexes if i["name"] != _EXPRESSION_INDEX}

            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def _insert_twins(url: str) -> None:
    """Two users and two groups of one directory sharing an externalId."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO organizations (id, name, domains, created_at, updated_at)"
                    " VALUES ('org_1', 'Acme', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO directories (id, organization_id, name, type, state, token_hash, deprovision_policy,"
                    " created_at, updated_at) VALUES ('directory_1', 'org_1', 'D', 'generic', 'linked', 'h',"
                    " 'keep_inactive', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            for n in (1, 2):
                await connection.execute(
                    text(
                        "INSERT INTO directory_users (id, directory_id, idp_id, user_name, emails, state,"
                        " custom_attributes, raw_attributes, version, created_at, updated_at) VALUES"
                        f" ('directory_user_{n}', 'directory_1', 'shared', 'u{n}', '[]', 'active', '{{}}', '{{}}', 1,"
                        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    )
                )
                await connection.execute(
                    text(
                        "INSERT INTO directory_groups (id, directory_id, idp_id, external_id, name, raw_attributes,"
                        f" version, created_at, updated_at) VALUES ('directory_group_{n}', 'directory_1', 'shared',"
                        f" 'shared', 'G{n}', '{{}}', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    )
                )
    finally:
        await engine.dispose()


def _model_indexes() -> dict[str, bool]:
    return {
        index.name: bool(index.unique)
        for name in _INDEXED
        for index in SQLModel.metadata.tables[name].indexes
        if index.name not in (None, _EXPRESSION_INDEX)
    }


async def _check(url: str) -> None:
    await asyncio.to_thread(upgrade, url, "0004")
    before = await _indexes(url)
    assert before["uq_directory_users_idp_id"] and before["uq_directory_groups_external_id"]
    with pytest.raises(Exception, match="(?i)unique"):
        await _insert_twins(url)
    await asyncio.to_thread(upgrade, url)
    assert await _indexes(url) == _model_indexes()
    assert _model_indexes()["ix_directory_users_idp_id"] is False
    await _insert_twins(url)


async def test_external_id_uniqueness_dropped_on_sqlite(tmp_path: Any) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'dsync.db'}")


@pytest.mark.postgres
async def test_external_id_uniqueness_dropped_on_postgresql(postgres_schema_url: str) -> None:
    from alembic import command

    # A database of its own: the session's shared one is at head and in use.
    base, _, _ = postgres_schema_url.rpartition("/")
    name = "dsync_test_migration_0005"
    admin = create_async_engine(postgres_schema_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = f"{base}/{name}"
        await _check(url)
        # Down again fails while twins exist; without them it restores the unique indexes.
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0004")
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
