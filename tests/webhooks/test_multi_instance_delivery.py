"""Webhooks from two real `dsync serve` processes on one PostgreSQL, each with its delivery child process (the
default): SCIM writes land on both; three endpoints on one receiver get every event exactly once and in log order,
and no event is ever in flight twice at once. The endpoint lease is what makes it so: with the lease disabled
(claims ignoring ``lease_owner``) both children deliver the same events and this test fails."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.gateway.test_multi_instance import _cli, _directory, _instance, _libpq, database_url
from tests.waiting import eventually
from tests.webhook_receiver import receiving

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

__all__ = ["database_url"]  # the fixture: a fresh PostgreSQL database per test

ENDPOINTS = 3
USERS_PER_INSTANCE = 40


def _env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DSYNC_DATABASE_URL": database_url,
        "DSYNC_BROADCAST_URL": "memory://",  # the children find new events by polling the log
        "DSYNC_ADMIN_KEY": "dsync_admin_webhook_instances_test_key",
        "DSYNC_PUBLIC_URL": "http://127.0.0.1",
        "DSYNC_SCIM_RATE_LIMIT": "0",
        "DSYNC_WEBHOOK_PROCESS": "1",
        "DSYNC_WEBHOOK_POLL_SECONDS": "0.1",
    }


def _children(pid: int) -> list[int]:
    """The server's delivery processes (it has other children: the costly-work pool's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return [child for child in found if b"webhooks\x00deliver" in _cmdline(Path(f"/proc/{child}"))]


async def _users(base: str, directory: dict[str, Any], prefix: str) -> None:
    headers = {"Authorization": f"Bearer {directory['bearer_token']}", "Content-Type": "application/scim+json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        for i in range(USERS_PER_INSTANCE):
            user = {"userName": f"{prefix}{i}@acme.test", "name": {"givenName": "Ada", "familyName": f"L{i}"}}
            response = await http.post(f"/scim/v2/{directory['id']}/Users", json=user)
            assert response.status_code == 201, response.text


async def _log(database_url: str) -> list[str]:
    connection = await asyncpg.connect(_libpq(database_url))
    try:
        return [row["id"] for row in await connection.fetch("SELECT id FROM events ORDER BY cursor")]
    finally:
        await connection.close()


async def test_two_serve_processes_deliver_each_event_once_and_in_order(database_url: str) -> None:
    env = _env(database_url)
    with _directory(env) as directory:
        async with receiving(delay=0.003) as receiver:
            for i in range(ENDPOINTS):  # one path per endpoint: the same event may go to two endpoints at once
                _cli(env, "webhooks", "create", "--url", receiver.url(f"/hook{i}"))
            async with _instance(env) as first, _instance(env) as second:
                await asyncio.gather(_users(first, directory, "a"), _users(second, directory, "b"))
                log = await _log(database_url)
                assert len(log) >= 2 * USERS_PER_INSTANCE
                await eventually(lambda: len(receiver.received) >= ENDPOINTS * len(log), within=60)
                await asyncio.sleep(1.0)  # a repeat would arrive now
            assert receiver.concurrent_duplicates == 0
            assert len(receiver.received) == ENDPOINTS * len(log)
            for i in range(ENDPOINTS):
                assert [json.loads(r.body)["id"] for r in receiver.received if r.path == f"/hook{i}"] == log


async def test_the_delivery_process_is_restarted_when_it_dies(database_url: str) -> None:
    env = _env(database_url)
    with _directory(env):
        async with _instance(env) as base:
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/readyz")).status_code == 200
            port = int(base.rsplit(":", 1)[1])
            server = _server_pid(port)
            await eventually(lambda: len(_children(server)) == 1, within=30)
            (child,) = _children(server)
            os.kill(child, 9)
            await eventually(lambda: len(_children(server)) == 1 and _children(server) != [child], within=30)


def _server_pid(port: int) -> int:
    marker = f"--port\x00{port}".encode()
    return next(int(pid.name) for pid in Path("/proc").iterdir() if pid.name.isdigit() and marker in _cmdline(pid))


def _cmdline(pid: Path) -> bytes:
    try:
        return (pid / "cmdline").read_bytes()
    except OSError:
        return b""
