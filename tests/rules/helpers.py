"""Shared steps of the roles and custom attributes tests: SCIM bodies as each provider sends them, operations run
through the app's database, and waiting for the background evaluator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.store.database import Database
from gateway.store.models import DirectoryUser, RuleEvaluation
from tests.conftest import DirectoryFixture, recorded_events

T = TypeVar("T")
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


async def run(app: Any, job: Callable[[Session], T]) -> T:
    database: Database = app.state.database
    return await database.transaction(job)


async def post(client: httpx.AsyncClient, directory: DirectoryFixture, resource: str, body: dict[str, Any]) -> Any:
    response = await client.post(f"{directory.path}/{resource}", json=body, headers=directory.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def send(client: httpx.AsyncClient, directory: DirectoryFixture, method: str, path: str, body: Any = None) -> Any:
    response = await client.request(method, f"{directory.path}/{path}", json=body, headers=directory.headers)
    assert response.status_code in (200, 204), response.text
    return response.json() if response.status_code == 200 else None


async def settled(app: Any) -> None:
    """Wait until the background evaluator has no work left."""
    database: Database = app.state.database
    async with asyncio.timeout(10):
        while True:
            async with database.read() as session:
                if (await session.scalar(select(col(RuleEvaluation.id)).limit(1))) is None:
                    return
            await asyncio.sleep(0.02)


async def events_after(app: Any, directory: DirectoryFixture, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The directory's events after the first ``count``."""
    return (await recorded_events(app.state.database, directory.id))[count:]


async def event_count(app: Any, directory: DirectoryFixture) -> int:
    return len(await recorded_events(app.state.database, directory.id))


async def user_roles(app: Any, user_id: str) -> tuple[str | None, list[str], dict[str, Any]]:
    async with app.state.database.read() as session:
        user = await session.scalar(select(DirectoryUser).where(col(DirectoryUser.id) == user_id))
        assert user is not None
        return user.role, list(user.roles), dict(user.custom_attributes)
