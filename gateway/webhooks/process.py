"""Webhook delivery in its own process: ``dsync serve`` starts ``dsync webhooks deliver`` beside it, at a low CPU
priority, and restarts it if it dies.

Sending webhooks costs CPU (HTTP client, signing, JSON) that, inside the server's event loop, came straight out of
SCIM ingest on a small machine. A separate process at nice 19 gets only what SCIM leaves; it shares nothing with the
server but the database (SQLite in WAL mode lets the two processes read at once; its few writes are batched) and the
broadcaster. The lease on each endpoint keeps one deliverer per endpoint, whatever the number of processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time

from gateway.events.hub import EventHub
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.webhooks.worker import WebhookWorker

logger = logging.getLogger("dsync.webhooks")

_STOP_SECONDS = 15.0  # a stopping child records what it delivered and gives its leases back first
_RESTART_SECONDS = (1.0, 10.0)  # after a child that ran for a while / one that died at once
# The server's pid, handed to its child: read in the child, ``os.getppid()`` is already 1 if the server died while the
# child was still starting (importing takes a second), and the child would then watch for the wrong parent forever.
_PARENT_ENV = "DSYNC_WEBHOOK_PARENT_PID"


def child_command() -> list[str]:
    """The command line of the delivery process."""
    return [sys.executable, "-m", "gateway.cli", "webhooks", "deliver"]


class DeliveryProcess:
    """Supervises the delivery child of one server process: started and stopped with the server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._child: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        child = self._child
        return child.pid if child is not None and child.returncode is None else None

    async def start(self) -> None:
        """Start the child (and keep it running)."""
        self._task = asyncio.create_task(self._supervise(), name="dsync-webhook-process")

    async def _supervise(self) -> None:
        # The child reads the same store and broadcaster as this server, even when they were not set by environment.
        env = {
            **os.environ,
            "DSYNC_DATABASE_URL": self._settings.database_url,
            "DSYNC_BROADCAST_URL": self._settings.broadcast_url,
            _PARENT_ENV: str(os.getpid()),
        }
        while not self._stopping:
            started = time.monotonic()
            # Its own session: a Ctrl-C in the terminal reaches the server only, which then stops the child itself
            # (rather than the child dying first and being restarted during the shutdown).
            self._child = await asyncio.create_subprocess_exec(
                *child_command(), env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
            )
            self.starts += 1
            code = await self._child.wait()
            if self._stopping:
                return
            lived = time.monotonic() - started
            logger.warning("the webhook delivery process exited (code %s) after %.0f s; restarting it", code, lived)
            await asyncio.sleep(_RESTART_SECONDS[0] if lived > 30 else _RESTART_SECONDS[1])

    async def stop(self) -> None:
        """Stop the child: SIGTERM, then SIGKILL if it has not finished in a while."""
        self._stopping = True
        child = self._child
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            try:
                await asyncio.wait_for(child.wait(), _STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _exit_when_orphaned(parent: int) -> None:
    """A server killed outright cannot stop its child: a watcher thread notices the child was re-parented and ends
    the process, politely first (SIGTERM: leases given back), then for sure, since a shutdown step may hang (a
    broadcaster whose server went away) or the loop may be stuck starting."""

    def watch() -> None:
        while os.getppid() == parent:  # not at all if the server is already gone
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(_STOP_SECONDS - 5)
        os._exit(1)

    threading.Thread(target=watch, name="dsync-orphan-watch", daemon=True).start()


async def deliver_until_stopped(settings: Settings) -> None:
    """The child's work: run the delivery worker until SIGTERM/SIGINT, or until the server that started it is gone."""
    with contextlib.suppress(OSError):
        os.nice(settings.webhook_nice)
    parent = os.environ.get(_PARENT_ENV, "")
    _exit_when_orphaned(int(parent) if parent.isdigit() else os.getppid())
    database = Database(settings)
    hub = EventHub(database, settings.broadcast_url, poll_seconds=settings.webhook_poll_seconds)
    await hub.start()
    worker = WebhookWorker(database, hub, settings, poll_seconds=settings.webhook_poll_seconds)
    hub.on_new_events(worker.wake)
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await hub.stop()
        await database.dispose()
