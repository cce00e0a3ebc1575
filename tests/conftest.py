"""Shared fixtures: a real database (SQLite file; PostgreSQL when DSYNC_TEST_POSTGRES_URL is set), the ASGI app,
and a directory with its bearer token."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session
from sqlmodel import SQLModel, col

from gateway.app import create_app
from gateway.ops import directories, organizations
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.models import Event

PUBLIC_URL = "http://testserver"
POSTGRES_URL = os.environ.get("DSYNC_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating per test would dominate the suite's time)."""
    path = tmp_path_factory.mktemp("template") / "dsync.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated once per test session."""
    if not POSTGRES_URL:
        pytest.skip("DSYNC_TEST_POSTGRES_URL is not set")
    name = f"dsync_test_{uuid.uuid4().hex[:10]}"
    import asyncio

    async def admin_sql(statement: str) -> None:
        engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(statement))
        await engine.dispose()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    asyncio.run(admin_sql(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "dsync.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_schema_url")
    yield url
    import asyncio

    async def truncate() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await engine.dispose()

    asyncio.run(truncate())


@pytest.fixture
def settings(database_url: str) -> Settings:
    # The SCIM rate limit has its own tests (tests/scim/test_rate_limit.py); elsewhere it would only make fast
    # tests depend on the machine's speed.
    return Settings(
        database_url=database_url,
        public_url=PUBLIC_URL,
        scim_rate_limit=0,
        scim_unauthenticated_rate_limit=0,
        graphql_rate_limit=0,
        webhook_process=False,  # the worker in the test's process (tests/webhooks/test_process.py: the child)
        graphql_cost_rate=0,
        graphql_refusal_delay_ms=0,
        scim_refusal_delay_ms=0,
    )


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings)
    yield db
    await db.dispose()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
        yield http


@dataclass(frozen=True)
class DirectoryFixture:
    id: str
    organization_id: str
    token: str
    endpoint: str

    @property
    def path(self) -> str:
        return f"/scim/v2/{self.id}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}


async def make_directory(database: Database, *, type: str = "jumpcloud", name: str = "JumpCloud") -> DirectoryFixture:
    def create(session: Session) -> tuple[str, directories.IssuedDirectory]:
        organization = organizations.create_organization(session, name="Acme", domains=["acme.test"])
        issued = directories.create_directory(
            session, organization_id=organization.id, name=name, type=type, public_url=PUBLIC_URL
        )
        return organization.id, issued

    organization_id, issued = await database.transaction(create)
    return DirectoryFixture(
        id=issued.directory.id, organization_id=organization_id, token=issued.bearer_token, endpoint=issued.endpoint
    )


async def recorded_events(database: Database, directory_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The directory's event log, in cursor order, as (event name, data) pairs."""
    async with database.read() as session:
        rows = await session.scalars(
            select(Event).where(col(Event.directory_id) == directory_id).order_by(col(Event.cursor))
        )
        return [(event.event, event.data) for event in rows]


@pytest.fixture
async def directory(app: Any) -> DirectoryFixture:
    return await make_directory(app.state.database)
