"""Costly work known before it runs (a PATCH's application to a large resource, a GraphQL query whose cost is over
``DSYNC_GRAPHQL_BACKGROUND_COST``) done in a small pool of worker processes at a lower CPU priority, not in the server.

Why: in the server such work competes with the event loop, on a thread for the GIL (which changes hands only every
switch interval, 5 ms), on the loop for its turns: measured with tenant A's worst allowed PATCHes and queries
(bench/noisy_neighbour.py), the loop got no turn for 13-27 ms at a time and tenant B's SCIM p99 more than doubled,
although each of A's requests had its own thread or background priority (gateway.ops.priority) and its rate limit.
A worker process holds no GIL of the server's, and at ``DSYNC_COSTLY_NICE`` the kernel gives the loop the CPU first.
What crosses the boundary is plain data (a resource's attributes and the operations in, the patched attributes out;
a query's text and variables in, its JSON out), pickled: the callables must be module-level functions, their
arguments and results picklable.

One owner (an organization: the tenant whose PATCH or query it is) has at most one job sent at a time; its others
wait in the server, where they cost nothing, until that one is answered (a query's wait counts against its deadline).
Without it a tenant sending costly requests side by side filled the pool's queue, and another tenant's costly work
waited for all of them; now for at most one job of each other owner.

``CostlyWork.run`` falls back to a thread when there is no pool (``DSYNC_COSTLY_WORKERS=0``: tests and library use)
or the pool broke (a worker killed): the work is then done as before, never refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

from gateway.settings import Settings

T = TypeVar("T")
logger = logging.getLogger("dsync.costly")
_PARENT_POLL_SECONDS = 1.0

__all__ = ["CostlyWork", "worker_settings"]


class CostlyWork:
    """The worker processes of one server process (none until ``start``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: ProcessPoolExecutor | None = None
        self._owners: dict[str, _Turn] = {}  # owners with a job sent or waiting
        self.runs = 0  # for tests and metrics: jobs sent to a worker process
        self.fallbacks = 0  # jobs done on a thread because the pool broke

    @property
    def started(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        """Start the pool (its processes start with the first job: ``warm`` sends one)."""
        if self._settings.costly_workers > 0 and self._pool is None:
            self._pool = _new_pool(self._settings)

    def warm(self, modules: list[str]) -> None:
        """Have every worker start and import ``modules`` (those of the jobs it will run) now, not on the first
        costly request."""
        pool = self._pool
        if pool is not None:
            for _ in range(self._settings.costly_workers):
                pool.submit(_import, modules)

    async def run(self, function: Callable[..., T], /, *args: Any, owner: str | None = None, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` in a worker process, or on a thread when there is no (working) pool; after
        ``owner``'s previous jobs (``owner`` is not passed on)."""
        if owner is None:
            return await self._run(function, *args, **kwargs)
        turn = self._owners.get(owner)
        if turn is None:
            turn = self._owners[owner] = _Turn()
        turn.holders += 1
        try:
            async with turn.lock:
                return await self._run(function, *args, **kwargs)
        finally:
            turn.holders -= 1
            if turn.holders == 0:
                del self._owners[owner]

    async def _run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        pool = self._pool
        if pool is not None:
            self.runs += 1
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, partial(function, *args, **kwargs))
            except BrokenProcessPool:
                self._replace(pool)
                self.fallbacks += 1
        return await asyncio.to_thread(function, *args, **kwargs)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        logger.warning("a costly-work process died; the pool is restarted and the job runs on a thread")
        if self._pool is broken:
            self._pool = _new_pool(self._settings)
        broken.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class _Turn:
    """One owner's place: its lock, and how many of its jobs hold or wait for it."""

    __slots__ = ("lock", "holders")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.holders = 0


def _new_pool(settings: Settings) -> ProcessPoolExecutor:
    # spawn: a fork of the server would copy its threads' locks (the store's pools, the loop) in whatever state.
    return ProcessPoolExecutor(
        max_workers=settings.costly_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_initialize,
        initargs=(settings, os.getpid()),
    )


# The worker process's settings (those of the server that started it).
_settings: Settings | None = None


def _initialize(settings: Settings, server_pid: int) -> None:
    global _settings
    _settings = settings
    _lower_priority(settings.costly_nice)
    threading.Thread(target=_exit_with, args=(server_pid,), name="dsync-costly-parent", daemon=True).start()


def _lower_priority(nice: int) -> None:
    """This process at ``nice``, in a scheduling group of its own at ``nice`` too; each step best effort.

    With Linux's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, on by default on many
    distributions, for processes outside a CPU cgroup of their own) the kernel first shares the CPU between
    sessions, and a nice level only orders the processes of one session. In the server's session a worker's CPU
    time was the server's: the worker yielded to the server, but the session as a whole had used its share, and the
    server then waited behind PostgreSQL's backends and every other session. In a session of its own, its group
    niced too, the worker takes only CPU that nothing else wants."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), nice))
    if nice <= 0:
        return
    with contextlib.suppress(OSError):
        os.setsid()  # a new session, and so a new autogroup (the worker is never a process group leader)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
        autogroup.write(str(nice))


def _exit_with(server_pid: int) -> None:
    # A server killed outright (SIGKILL) never shuts its pool down, and a worker waiting for jobs would wait forever.
    while os.getppid() == server_pid:
        time.sleep(_PARENT_POLL_SECONDS)
    os._exit(0)


def _import(modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)


def worker_settings() -> Settings | None:
    """In a worker process: the settings of the server that started it; None elsewhere (a job run on a thread of the
    server because the pool broke)."""
    return _settings
