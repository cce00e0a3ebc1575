"""First run: with no active admin key, `dsync serve` creates one and prints it once, even when two servers start
together on the same empty database."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway import cli
from gateway.graphql.context import authenticate
from gateway.ops import api_keys, organizations
from gateway.settings import Settings
from gateway.store.credentials import hash_secret
from gateway.store.database import Database
from gateway.store.ids import new_id
from gateway.store.models import ApiKey


async def test_an_admin_key_is_created_once_and_stored_as_a_hash(database: Database) -> None:
    key = await database.transaction(api_keys.ensure_first_admin_key)
    assert key is not None and key.startswith("dsync_key_")
    assert await database.transaction(api_keys.ensure_first_admin_key) is None
    principal, _ = await authenticate(database, f"Bearer {key}")
    assert principal is not None and principal.is_admin
    hashes = await database.query(lambda s: s.query(col(ApiKey.key_hash)).all())
    assert [row[0] for row in hashes] == [hash_secret(key)]


async def test_only_an_active_admin_key_counts(database: Database) -> None:
    organization = await database.transaction(lambda s: organizations.create_organization(s, name="Acme"))
    await database.transaction(lambda s: api_keys.create_api_key(s, organization_id=organization.id))
    first = await database.transaction(api_keys.ensure_first_admin_key)
    assert first is not None  # an organization's key is no admin key
    first_id = (await authenticate(database, f"Bearer {first}"))[0]
    assert first_id is not None
    await database.transaction(lambda s: api_keys.revoke_api_key(s, api_key_id=first_id.api_key_id))
    assert await database.transaction(api_keys.ensure_first_admin_key) is not None  # every admin key was revoked


async def test_no_key_is_created_next_to_an_existing_admin_key(database: Database) -> None:
    await database.transaction(lambda s: api_keys.create_api_key(s))
    assert await database.transaction(api_keys.ensure_first_admin_key) is None


async def test_two_servers_starting_together_create_one_key(settings: Settings) -> None:
    databases = [Database(settings), Database(settings)]
    try:
        keys = await asyncio.gather(*(db.transaction(api_keys.ensure_first_admin_key) for db in databases))
    finally:
        for db in databases:
            await db.dispose()
    assert len([key for key in keys if key is not None]) == 1


async def test_the_database_refuses_a_second_active_first_run_key(database: Database) -> None:
    # What makes the race above safe whatever the isolation level: not the read before the insert, the index.
    await database.transaction(api_keys.ensure_first_admin_key)

    def insert_another(session: Session) -> None:
        session.add(ApiKey(id=new_id("api_key"), key_hash=hash_secret("other"), organization_id=None, first_run=True))
        session.flush()

    with pytest.raises(IntegrityError):
        await database.transaction(insert_another)


@pytest.mark.parametrize(
    ("host", "public_url", "expected"),
    [
        ("127.0.0.1", None, "http://127.0.0.1:9000/"),
        ("0.0.0.0", None, "http://localhost:9000/"),
        ("::1", None, "http://[::1]:9000/"),
        ("0.0.0.0", "https://dsync.example.com", "https://dsync.example.com/"),
    ],
)
def test_the_printed_dashboard_url(host: str, public_url: str | None, expected: str) -> None:
    settings = Settings(public_url=public_url) if public_url else Settings()
    assert cli._dashboard_url(argparse.Namespace(host=host, port=9000), settings) == expected
