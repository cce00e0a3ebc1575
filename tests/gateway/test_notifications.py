"""Change notifications between processes over every broadcast backend, against the real Redis and PostgreSQL:
delivery, revocation announcements, and recovery after the connection drops or the server restarts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest

from gateway.events.notifier import Notifier, check_url
from tests.redis_server import private_redis
from tests.waiting import eventually

REDIS_URL = os.environ.get("DSYNC_TEST_REDIS_URL")
POSTGRES_URL = os.environ.get("DSYNC_TEST_POSTGRES_URL")


def _backend_urls() -> list[object]:
    return [
        "memory://",
        pytest.param(REDIS_URL, id="redis", marks=pytest.mark.skipif(not REDIS_URL, reason="no DSYNC_TEST_REDIS_URL")),
        pytest.param(
            POSTGRES_URL, id="postgres", marks=pytest.mark.skipif(not POSTGRES_URL, reason="no DSYNC_TEST_POSTGRES_URL")
        ),
    ]


class Recorder:
    def __init__(self) -> None:
        self.notifications = 0
        self.reconnects = 0
        self.revoked: list[str] = []
        self.changed = asyncio.Event()

    def _bump(self, action: Callable[[], None]) -> None:
        action()
        self.changed.set()

    def notification(self) -> None:
        self._bump(lambda: setattr(self, "notifications", self.notifications + 1))

    def reconnect(self) -> None:
        self._bump(lambda: setattr(self, "reconnects", self.reconnects + 1))

    def revocation(self, key_id: str) -> None:
        self._bump(lambda: self.revoked.append(key_id))

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def notifier(url: str, recorder: Recorder, heartbeat: float = 0.2) -> AsyncIterator[Notifier]:
    instance = Notifier(
        url,
        on_notification=recorder.notification,
        on_reconnect=recorder.reconnect,
        on_revocation=recorder.revocation,
        heartbeat_seconds=heartbeat,
        silence_seconds=heartbeat * 3,
        connect_timeout_seconds=2.0,
    )
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.mark.parametrize("url", _backend_urls())
async def test_a_notification_reaches_the_other_process_and_not_the_sender(url: str) -> None:
    # The memory backend lives in one process: two notifiers on it stand for two processes only across redis/pg.
    a, b = Recorder(), Recorder()
    async with notifier(url, a) as sender, notifier(url, b) as receiver:
        assert sender.connected and receiver.connected
        if url == "memory://":
            sender.notify()
            await asyncio.sleep(0.5)
            assert a.notifications == 0  # its own notification is not echoed back
            return
        await asyncio.sleep(0.3)  # each announces itself once connected (so others catch up): let that pass
        own, seen = a.notifications, b.notifications
        for _ in range(3):
            sender.notify()
        await b.until(lambda: b.notifications > seen)
        sender.announce_revocation("api_key_01TEST")
        await b.until(lambda: b.revoked == ["api_key_01TEST"])
        await asyncio.sleep(0.5)  # heartbeats flowed meanwhile: none counted as a notification
        assert a.notifications == own and a.revoked == []
        assert 1 <= b.notifications - seen <= 3  # asked for while one is in flight: they coalesce


@pytest.mark.skipif(not REDIS_URL, reason="no DSYNC_TEST_REDIS_URL")
async def test_redis_databases_are_separate_deployments() -> None:
    # Redis's pub/sub ignores the database number: the channel carries it, so another database never hears us.
    assert REDIS_URL
    base, _, number = REDIS_URL.rstrip("/").rpartition("/")
    other_url = f"{base}/{(int(number) + 1) % 16 if number.isdigit() else 1}"
    a, b, c = Recorder(), Recorder(), Recorder()
    async with notifier(REDIS_URL, a) as sender, notifier(REDIS_URL, b), notifier(other_url, c):
        await asyncio.sleep(0.3)  # each announces itself once connected: let that pass
        seen, elsewhere = b.notifications, c.notifications
        sender.notify()
        sender.announce_revocation("api_key_01TEST")
        await b.until(lambda: b.notifications > seen and b.revoked == ["api_key_01TEST"])
        await asyncio.sleep(0.5)
        assert c.notifications == elsewhere and c.revoked == []


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported scheme"):
        check_url("kafkaa://localhost")
    check_url("postgresql+asyncpg://postgres@127.0.0.1/test")  # the SQLAlchemy spelling is accepted too


@pytest.mark.slow
async def test_a_redis_restart_is_noticed_and_recovered() -> None:
    with private_redis() as redis:
        a, b = Recorder(), Recorder()
        async with notifier(redis.url, a) as sender, notifier(redis.url, b) as receiver:
            sender.notify()
            await b.until(lambda: b.notifications >= 1)
            redis.stop()
            await eventually(lambda: not receiver.connected and not sender.connected)
            sender.notify()  # asked for while Redis is down: published once the connection is back
            redis.start()
            await eventually(lambda: receiver.connected and sender.connected, within=15)
            before = b.notifications
            sender.notify()
            await b.until(lambda: b.notifications > before)
            assert b.reconnects >= 2  # the first connection and the re-established one: the hub catches up on each


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES_URL, reason="no DSYNC_TEST_POSTGRES_URL")
async def test_a_dropped_postgres_listen_connection_is_re_established() -> None:
    assert POSTGRES_URL
    url = POSTGRES_URL.replace("postgresql+asyncpg://", "postgres://")
    a, b = Recorder(), Recorder()
    async with notifier(url, a) as sender, notifier(url, b) as receiver:
        sender.notify()
        await b.until(lambda: b.notifications >= 1)
        connection = await asyncpg.connect(url)
        try:
            # The server ends the notifiers' sessions (LISTEN, then pg_notify), as a restart or a failover would.
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND (query ILIKE '%dsync_events%' OR query ILIKE '%pg_notify%')"
            )
        finally:
            await connection.close()
        await eventually(lambda: sender.reconnects >= 1 and receiver.reconnects >= 1, within=15)
        await eventually(lambda: receiver.connected and sender.connected, within=15)
        before = b.notifications
        sender.notify()
        await b.until(lambda: b.notifications > before)


@pytest.mark.slow
async def test_a_quiet_process_notices_a_redis_restart_without_waiting_for_silence() -> None:
    # The receiver publishes nothing during the outage (its heartbeat is far off), and redis-py reconnects its
    # publishing connection by itself: only its stopped subscription reader can tell it to subscribe again.
    with private_redis() as redis:
        a, b = Recorder(), Recorder()
        async with notifier(redis.url, a) as sender, notifier(redis.url, b, heartbeat=60) as receiver:
            sender.notify()
            await b.until(lambda: b.notifications >= 1)
            await asyncio.sleep(1.0)  # past the receiver's first announcement: from here on it publishes nothing
            redis.stop()
            await asyncio.sleep(1.0)
            redis.start()
            await eventually(lambda: b.reconnects >= 2 and receiver.connected and sender.connected, within=15)
            before = b.notifications
            sender.notify()
            await b.until(lambda: b.notifications > before)
