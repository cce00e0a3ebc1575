"""``emails eq "…"`` filters go through ``directory_user_emails``, which triggers keep equal to every user's
addresses through every write (POST, PUT, PATCH, DELETE, a directory's deletion) on both stores; the lookup
reads the index, not every user's JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import create_engine, select, text
from sqlmodel import col

from gateway.store.migrate import upgrade
from gateway.store.models import DirectoryUserEmail
from tests.conftest import DirectoryFixture, make_directory

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def _index(app: Any, user_id: str) -> set[str]:
    async with app.state.database.read() as session:
        query = select(col(DirectoryUserEmail.value)).where(col(DirectoryUserEmail.user_id) == user_id)
        rows = await session.scalars(query)
        return set(rows)


async def _found(client: httpx.AsyncClient, directory: DirectoryFixture, filter_text: str) -> list[str]:
    response = await client.get(f"{directory.path}/Users", params={"filter": filter_text}, headers=directory.headers)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["Resources"]]


async def test_index_follows_every_write_and_answers_filters(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    body = {
        "userName": "ada",
        "emails": [
            {"value": "Ada@Acme.test", "type": "work", "primary": True},
            {"value": "ada@home.test", "type": "home"},
            {"value": "ADA@acme.test", "type": "other"},  # the same address in another case: one entry
        ],
    }
    created = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
    assert created.status_code == 201, created.text
    user = created.json()
    url = f"{directory.path}/Users/{user['id']}"
    assert await _index(app, user["id"]) == {"ada@acme.test", "ada@home.test"}

    # Filters on the address, in any case and form, find the user; a type mismatch under ``and`` does not.
    for filter_text in (
        'emails eq "ada@ACME.test"',
        'emails.value eq "ADA@HOME.TEST"',
        'emails[type eq "home" and value eq "ada@home.test"]',
        'emails[value eq "ada@acme.test"] and userName eq "ada"',
    ):
        assert await _found(client, directory, filter_text) == [user["id"]], filter_text
    assert await _found(client, directory, 'emails[type eq "work" and value eq "ada@home.test"]') == []
    assert await _found(client, directory, 'not (emails eq "ada@home.test")') == []
    assert await _found(client, directory, 'emails eq ""') == []

    # Another directory with the same address sees only its own user.
    other = await make_directory(app.state.database, name="Other")
    twin = await client.post(f"{other.path}/Users", json={**body, "userName": "twin"}, headers=other.headers)
    assert twin.status_code == 201
    assert await _found(client, directory, 'emails eq "ada@acme.test"') == [user["id"]]
    assert await _found(client, other, 'emails eq "ada@acme.test"') == [twin.json()["id"]]

    replaced = await client.put(
        url, json={"userName": "ada", "emails": [{"value": "ada@new.test"}]}, headers=directory.headers
    )
    assert replaced.status_code == 200, replaced.text
    assert await _index(app, user["id"]) == {"ada@new.test"}
    assert await _found(client, directory, 'emails eq "ada@acme.test"') == []

    patch = {
        "schemas": [PATCH],
        "Operations": [
            {"op": "add", "path": "emails", "value": [{"value": "Second@New.test", "type": "home"}]},
            {"op": "remove", "path": 'emails[value eq "ada@new.test"]'},
        ],
    }
    patched = await client.patch(url, json=patch, headers=directory.headers)
    assert patched.status_code == 200, patched.text
    assert await _index(app, user["id"]) == {"second@new.test"}
    assert await _found(client, directory, 'emails eq "second@new.test"') == [user["id"]]

    # A PATCH that leaves the addresses alone keeps the entries as they are.
    renamed = await client.patch(
        url,
        json={"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]},
        headers=directory.headers,
    )
    assert renamed.status_code == 200
    assert await _index(app, user["id"]) == {"second@new.test"}

    assert (await client.delete(url, headers=directory.headers)).status_code == 204
    assert await _index(app, user["id"]) == set()
    assert await _index(app, twin.json()["id"]) == {"ada@acme.test", "ada@home.test"}


def _plan(path: str, directory_id: str) -> str:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            from scim.backend import lookups
            from scim.backend.users import USERS

            page, _ = lookups._lookup_statements(USERS, "emails", "sqlite")
            compiled = page.compile(dialect=engine.dialect)
            sql = f"EXPLAIN QUERY PLAN {compiled.string}"
            values = {**{k: b.effective_value for k, b in compiled.binds.items()}}
            values.update(directory_id=directory_id, value="x@y.test", count=1)
            parameters = tuple(values[name] for name in compiled.positiontup or ())
            rows = connection.exec_driver_sql(sql, parameters).fetchall()
            return "\n".join(str(row[-1]) for row in rows)
    finally:
        engine.dispose()


async def test_sqlite_lookup_starts_from_the_index(tmp_path: Any) -> None:
    path = tmp_path / "plan.db"
    await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{path}")
    plan = await asyncio.to_thread(_plan, str(path), "directory_1")
    assert "ix_directory_user_emails_directory_value" in plan, plan
    assert "SCAN directory_users" not in plan, plan


async def test_migration_fills_the_index_from_existing_users(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, url, "0009")
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO organizations (id, name, domains, created_at, updated_at)"
                    " VALUES ('org_1', 'Acme', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO directories (id, organization_id, name, type, state, token_hash, deprovision_policy,"
                    " created_at, updated_at) VALUES ('directory_1', 'org_1', 'D', 'generic', 'linked', 'h',"
                    " 'keep_inactive', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO directory_users (id, directory_id, user_name, emails, state, custom_attributes,"
                    " raw_attributes, version, created_at, updated_at) VALUES ('directory_user_1', 'directory_1',"
                    " 'u', :emails, 'active', '{}', '{}', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"emails": '[{"value": "U@Old.test"}, {"value": ""}, "junk"]'},
            )
        await asyncio.to_thread(upgrade, url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT user_id, directory_id, value FROM directory_user_emails")).all()
        assert [tuple(r) for r in rows] == [("directory_user_1", "directory_1", "u@old.test")]
    finally:
        engine.dispose()
