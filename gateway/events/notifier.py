"""Change notifications between processes over ``broadcaster``, kept alive.

A notification says only "the event log grew" (and who said it): the log is the source of truth, so a lost
notification delays delivery until the pump's periodic read of the log's head, never loses an event.

broadcaster's Redis and PostgreSQL backends never reconnect: when the server restarts or drops the connection, their
listener stops quietly and nothing arrives again. ``Notifier`` therefore owns the connection: it sends a heartbeat
to itself and rebuilds the connection when a publish fails or nothing (not even its own heartbeat) came back in
time, then tells the hub to catch up from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from urllib.parse import urlparse

from broadcaster import Broadcast, BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from broadcaster._backends.postgres import PostgresBackend
from broadcaster._backends.redis import RedisBackend
from broadcaster._base import Subscriber

logger = logging.getLogger("dsync.notifications")

CHANNEL = "dsync_events"
_NOTIFY = "n"
_HEARTBEAT = "h"
_REVOKED = "r"


class _SubscribedRedisBackend(RedisBackend):
    """broadcaster 0.3.1 marks itself ready before SUBSCRIBE completes; redis-py 8's ``listen()`` then finds no
    channel, returns at once, and the listener waits forever: nothing is ever delivered. Subscribe, then be ready."""

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._ready.set()

    async def lost(self) -> None:
        """Raise once the subscription's reader has stopped (Redis went away under it). redis-py reconnects the
        connection that publishes by itself, so a process whose heartbeats all fell outside an outage would go on
        publishing to the restarted server while hearing nothing, until the silence timeout: watch the reader."""
        if self._listener is not None:
            await asyncio.wait({self._listener})
            if not self._listener.cancelled() and (error := self._listener.exception()) is not None:
                raise ConnectionError(f"the subscription's reader stopped: {_describe(error)}") from error
        raise ConnectionError("the subscription's reader stopped")


def _backend(url: str) -> BroadcastBackend:
    scheme = urlparse(url).scheme
    if scheme in ("redis", "rediss"):
        return _SubscribedRedisBackend(url)
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        # asyncpg wants a plain libpq URL; accept the SQLAlchemy spelling used for DSYNC_DATABASE_URL too.
        return PostgresBackend(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    if scheme == "memory":
        return MemoryBackend(url)
    raise ValueError(f"DSYNC_BROADCAST_URL: unsupported scheme {scheme!r} (use memory://, redis:// or postgres://)")


def channel_for(url: str) -> str:
    """The channel a deployment's processes talk on. Redis's pub/sub ignores the database number, so on Redis the
    channel carries it: deployments sharing one Redis server on different databases (``/1``, ``/2``) never hear
    each other (PostgreSQL's LISTEN/NOTIFY is per database already)."""
    parsed = urlparse(url)
    if parsed.scheme in ("redis", "rediss"):
        return f"{CHANNEL}:{parsed.path.strip('/') or '0'}"
    return CHANNEL


def check_url(url: str) -> None:
    """Fail fast on a URL no backend understands (raises ValueError)."""
    _backend(url)


_STOP_SECONDS = 6.0  # longer than _close's two 2-second steps


class Notifier:
    """This process's connection to the broadcaster: publishes "the log grew", hears other processes' news."""

    def __init__(
        self,
        url: str,
        *,
        on_notification: Callable[[], None],
        on_reconnect: Callable[[], None],
        on_revocation: Callable[[str], None] = lambda _key_id: None,
        heartbeat_seconds: float = 2.0,
        silence_seconds: float = 30.0,
        connect_timeout_seconds: float = 10.0,
    ) -> None:
        check_url(url)
        self._url = url
        self._channel = channel_for(url)
        self._on_notification = on_notification
        self._on_reconnect = on_reconnect
        self._on_revocation = on_revocation
        self._heartbeat_seconds = heartbeat_seconds
        # A failed publish, or on Redis a stopped reader, is noticed at once; silence (a subscription that died
        # quietly) only after this long, so an event loop busy with a fan-out burst is not mistaken for a dead one.
        self._silence_seconds = silence_seconds
        self._connect_timeout_seconds = connect_timeout_seconds
        self._sender = secrets.token_hex(8)  # this process: its own notifications come back and are skipped
        self._pending = False  # a notification waits to be published
        self._revocations: list[str] = []  # revoked API key ids to announce
        self._send = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """Whether the broadcaster connection is up (``/readyz`` reports it)."""
        return self._connected.is_set()

    async def start(self, *, wait_seconds: float = 5.0) -> None:
        """Connect in the background; wait a little for the first connection so a healthy start is ready at once.
        An unreachable broadcaster does not stop the gateway: it keeps retrying and ``/readyz`` says so."""
        self._task = asyncio.create_task(self._run(), name="dsync-notifier")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_seconds):
                await self._connected.wait()
        if not self.connected:
            logger.warning("broadcaster %s not reachable yet; retrying in the background", _redacted(self._url))

    async def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        if self._task is not None:
            self._task.cancel()
            # Bounded: a client library that swallows the cancellation of a close in flight (seen with redis-py 8
            # while a publish was pending) would otherwise hang the whole shutdown; the task is abandoned then.
            done, _ = await asyncio.wait({self._task}, timeout=_STOP_SECONDS)
            if not done:
                logger.warning("broadcaster connection did not close within %.0f s; abandoned", _STOP_SECONDS)
            elif not self._task.cancelled() and self._task.exception() is not None:
                logger.warning("broadcaster connection ended with an error", exc_info=self._task.exception())

    def notify(self) -> None:
        """Ask for one notification to be published; notifications asked for while one is in flight coalesce."""
        self._pending = True
        self._send.set()

    def announce_revocation(self, api_key_id: str) -> None:
        """Tell the other processes to close connections authenticated with this key (this one does it itself).
        Lost announcements are covered by each connection's periodic re-check of its key."""
        self._revocations.append(api_key_id)
        self._send.set()

    async def _run(self) -> None:
        delay = 0.25
        while True:
            backend = _backend(self._url)
            broadcast = Broadcast(backend=backend)
            try:
                async with asyncio.timeout(self._connect_timeout_seconds):
                    await broadcast.connect()
                async with broadcast.subscribe(self._channel) as subscriber:
                    self._connected.set()
                    if delay > 0.25 or self.reconnects:
                        logger.info("broadcaster connection re-established")
                    delay = 0.25
                    # Whatever was committed while we were away: catch up here, and tell the other processes.
                    self._on_reconnect()
                    self.notify()
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._publish_loop(broadcast))
                        tasks.create_task(self._receive_loop(subscriber))
                        if isinstance(backend, _SubscribedRedisBackend):
                            tasks.create_task(backend.lost())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the backend: drop it and build a new connection
                logger.warning("broadcaster connection lost (%s); reconnecting", _describe(exc))
            finally:
                self._connected.clear()
                await _close(broadcast, backend)
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _publish_loop(self, broadcast: Broadcast) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_seconds):
                    await self._send.wait()
            self._send.clear()
            messages = [f"{_REVOKED}:{self._sender}:{key_id}" for key_id in self._revocations]
            self._revocations.clear()
            if self._pending or not messages:
                messages.append(f"{_NOTIFY if self._pending else _HEARTBEAT}:{self._sender}")
            self._pending = False
            for message in messages:
                async with asyncio.timeout(self._connect_timeout_seconds):
                    await broadcast.publish(self._channel, message)

    async def _receive_loop(self, subscriber: Subscriber) -> None:
        # Every message proves the connection alive; our own heartbeat guarantees one per interval.
        while True:
            async with asyncio.timeout(self._silence_seconds):
                message = await subscriber.get()
            kind, _, rest = str(message.message).partition(":")
            sender, _, argument = rest.partition(":")
            if sender == self._sender:
                continue
            if kind == _NOTIFY:
                self._on_notification()
            elif kind == _REVOKED and argument:
                self._on_revocation(argument)


async def _close(broadcast: Broadcast, backend: BroadcastBackend) -> None:
    # A dead backend may raise or hang on the way out; neither may stop the reconnection. Broadcast.disconnect()
    # re-raises its listener's error before closing the backend, so close the backend itself then.
    try:
        async with asyncio.timeout(2.0):
            await broadcast.disconnect()
    except Exception:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await backend.disconnect()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    if isinstance(exc, TimeoutError):
        return "no message came back in time"
    return f"{type(exc).__name__}: {exc}"


def _redacted(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url
