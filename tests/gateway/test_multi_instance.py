"""Scale-out end to end: two real `dsync serve` processes on one PostgreSQL, notifying each other through Redis or
through PostgreSQL's LISTEN/NOTIFY. SCIM writes land on one instance; subscribers on the other receive every event,
in order, long before the periodic read of the log would have found them (it is set to 60 s here); and a Redis
restart in the middle of a stream loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from tests.redis_server import RedisProcess, free_port, private_redis
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

POSTGRES_URL = os.environ.get("DSYNC_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("DSYNC_TEST_REDIS_URL")
DSYNC = str(Path(sys.executable).with_name("dsync"))
ADMIN_KEY = "dsync_admin_multi_instance_test_key"
SUBSCRIBE = (
    "subscription($dir: ID, $after: String) { directoryEvents(directoryId: $dir, after: $after) { cursor event } }"
)


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
def database_url() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("DSYNC_TEST_POSTGRES_URL is not set")
    name = f"dsync_multi_{uuid.uuid4().hex[:10]}"

    async def admin_sql(statement: str) -> None:
        connection = await asyncpg.connect(_libpq(POSTGRES_URL))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE "{name}" WITH (FORCE)'))


def _env(database_url: str, broadcast_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DSYNC_DATABASE_URL": database_url,
        "DSYNC_BROADCAST_URL": broadcast_url,
        "DSYNC_ADMIN_KEY": ADMIN_KEY,
        "DSYNC_EVENT_POLL_SECONDS": "60",  # only notifications can deliver within the test's deadlines
        "DSYNC_PUBLIC_URL": "http://127.0.0.1",
    }


def _cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([DSYNC, *args, "--json"], env=env, capture_output=True, text=True, check=True, timeout=60)
    return dict(json.loads(done.stdout))


@contextmanager
def _directory(env: dict[str, str]) -> Iterator[dict[str, Any]]:
    subprocess.run([DSYNC, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    organization = _cli(env, "organizations", "create", "Acme", "--domain", "acme.test")
    yield _cli(env, "directories", "create", "--organization", organization["id"], "--name", "JumpCloud")


@asynccontextmanager
async def _instance(env: dict[str, str], *options: str, own_session: bool = False) -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        DSYNC,
        "serve",
        "--port",
        str(port),
        *options,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=own_session,
    )
    base = f"http://127.0.0.1:{port}"
    _pids[base] = process.pid
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(300):  # up to 30 s
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.returncode is None, "dsync serve exited"
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("dsync serve did not become ready")
        yield base
    finally:
        _pids.pop(base, None)
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


_pids: dict[str, int] = {}  # base URL of a running ``_instance`` -> its process id


def _nice(base: str) -> int:
    """The nice level of the instance serving ``base`` (field 19 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{_pids[base]}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def _autogroup_nice(base: str) -> int | None:
    """The nice level of the instance's autogroup (its session's), None without autogroup scheduling."""
    path = Path(f"/proc/{_pids[base]}/autogroup")
    return int(path.read_text().split()[-1]) if path.exists() else None


async def _subscribe(base: str, directory_id: str, received: list[dict[str, Any]], started: asyncio.Event) -> None:
    transport = WebsocketsTransport(
        url=base.replace("http://", "ws://") + "/graphql",
        init_payload={"authorization": f"Bearer {ADMIN_KEY}"},
        subprotocols=["graphql-transport-ws"],
    )
    async with Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIBE, variable_values={"dir": directory_id, "after": "0"})
        stream = session.subscribe(request)
        started.set()
        async for result in stream:
            received.append(result["directoryEvents"])


async def _log(database_url: str, directory_id: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(_libpq(database_url))
    try:
        rows = await connection.fetch(
            "SELECT cursor, event FROM events WHERE directory_id = $1 ORDER BY cursor", directory_id
        )
    finally:
        await connection.close()
    return [(row["cursor"], row["event"]) for row in rows]


async def _create_users(base: str, directory: dict[str, Any], names: range, prefix: str = "user") -> None:
    headers = {"Authorization": f"Bearer {directory['bearer_token']}"}
    path = f"/scim/v2/{directory['id']}/Users"
    async with httpx.AsyncClient(base_url=base, headers=headers) as http:
        for i in names:
            response = await http.post(path, json={"userName": f"{prefix}{i}@acme.test", "active": True})
            assert response.status_code == 201, response.text


async def _until_delivered(database_url: str, directory_id: str, *streams: list[dict[str, Any]]) -> None:
    log = await _log(database_url, directory_id)
    # Far below the 60 s poll: notifications did it.
    await eventually(lambda: all(len(stream) >= len(log) for stream in streams), within=10)
    for stream in streams:
        assert [(int(e["cursor"]), e["event"]) for e in stream] == log


def _broadcast_urls() -> list[Any]:
    return [
        pytest.param("redis", id="redis"),
        pytest.param("postgres", id="postgres-notify"),
    ]


@pytest.mark.parametrize("backend", _broadcast_urls())
async def test_writes_on_one_instance_reach_subscribers_on_the_other(database_url: str, backend: str) -> None:
    if backend == "redis" and not REDIS_URL:
        pytest.skip("DSYNC_TEST_REDIS_URL is not set")
    broadcast_url = REDIS_URL if backend == "redis" else _libpq(database_url).replace("postgresql://", "postgres://")
    assert broadcast_url
    env = _env(database_url, broadcast_url)
    with _directory(env) as directory:
        async with _instance(env) as a, _instance(env) as b:
            assert _nice(a) == os.getpriority(os.PRIO_PROCESS, 0)  # role "all" serves SCIM: never lowered
            on_a: list[dict[str, Any]] = []
            on_b: list[dict[str, Any]] = []
            started_a, started_b = asyncio.Event(), asyncio.Event()
            listeners = [
                asyncio.create_task(_subscribe(a, directory["id"], on_a, started_a)),
                asyncio.create_task(_subscribe(b, directory["id"], on_b, started_b)),
            ]
            try:
                await asyncio.wait_for(asyncio.gather(started_a.wait(), started_b.wait()), 10)
                await asyncio.sleep(0.3)
                await _create_users(a, directory, range(20), prefix="from-a-")
                await _create_users(b, directory, range(20), prefix="from-b-")
                await _until_delivered(database_url, directory["id"], on_a, on_b)
            finally:
                for listener in listeners:
                    listener.cancel()
                await asyncio.gather(*listeners, return_exceptions=True)


async def test_ingest_and_realtime_roles_split_the_work(database_url: str) -> None:
    if not REDIS_URL:
        pytest.skip("DSYNC_TEST_REDIS_URL is not set")
    env = _env(database_url, REDIS_URL)
    with _directory(env) as directory:
        async with (
            _instance(env, "--role", "ingest", own_session=True) as ingest,
            _instance(env, "--role", "realtime", own_session=True) as realtime,
        ):
            # Fan-out takes the CPU ingest leaves where they share cores (DSYNC_REALTIME_NICE, default 10), also
            # under autogroup scheduling, where each leads its own session as under a supervisor.
            ours = os.getpriority(os.PRIO_PROCESS, 0)
            assert (_nice(ingest), _nice(realtime)) == (ours, max(10, ours))
            if _autogroup_nice(ingest) is not None:
                assert (_autogroup_nice(ingest), _autogroup_nice(realtime)) == (0, 10)
            received: list[dict[str, Any]] = []
            started = asyncio.Event()
            listener = asyncio.create_task(_subscribe(realtime, directory["id"], received, started))
            try:
                await asyncio.wait_for(started.wait(), 10)
                await asyncio.sleep(0.3)
                await _create_users(ingest, directory, range(20))
                await _until_delivered(database_url, directory["id"], received)
            finally:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            async with httpx.AsyncClient(base_url=realtime) as http:
                scim = await http.get(f"/scim/v2/{directory['id']}/Users")
                assert scim.status_code == 404  # no SCIM on a realtime process
            started = asyncio.Event()
            with pytest.raises(Exception):  # noqa: B017 - the handshake is refused, however gql reports it
                await asyncio.wait_for(_subscribe(ingest, directory["id"], [], started), 10)


def test_a_split_role_refuses_the_memory_broadcaster(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DSYNC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/d.db",
        "DSYNC_BROADCAST_URL": "memory://",
    }
    refused = subprocess.run(
        [DSYNC, "serve", "--role", "realtime", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "DSYNC_BROADCAST_URL" in refused.stderr


async def test_a_redis_restart_mid_stream_loses_nothing(database_url: str) -> None:
    with private_redis() as redis:
        env = _env(database_url, redis.url)
        with _directory(env) as directory:
            async with _instance(env) as a, _instance(env) as b:
                received: list[dict[str, Any]] = []
                started = asyncio.Event()
                listener = asyncio.create_task(_subscribe(b, directory["id"], received, started))
                try:
                    await asyncio.wait_for(started.wait(), 10)
                    writer = asyncio.create_task(_create_users(a, directory, range(150)))
                    await _restart_when(redis, received, at=40)
                    await writer
                    # From the writer's last commit, which may come soon after the restart: both instances notice
                    # the restart at once (a failed publish, or B's stopped subscription reader even when none of
                    # its heartbeats fell in the outage), subscribe again and catch up, far below the 60 s poll.
                    await _until_delivered(database_url, directory["id"], received)
                finally:
                    listener.cancel()
                    await asyncio.gather(listener, return_exceptions=True)


async def _restart_when(redis: RedisProcess, received: list[dict[str, Any]], *, at: int) -> None:
    await eventually(lambda: len(received) >= at, within=30)
    redis.stop()
    await asyncio.sleep(1.0)  # writes go on meanwhile; their notifications are lost
    redis.start()
