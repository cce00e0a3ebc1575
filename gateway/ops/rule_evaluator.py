"""The background re-evaluation of users after a role or attribute rule changed (``gateway.ops.rule_evaluation``).

A rule change queues its work (``rule_evaluations`` rows) in its own transaction and wakes this process's evaluator
as soon as it commits; work queued by another process (the CLI, another instance) is found by a periodic look.
Users are re-evaluated a chunk per write transaction, through the ordinary write path, so SCIM writes queued behind
a chunk wait for one small transaction at most and ingest goes on while a 10,000-member group is re-mapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.ops import directory_rules
from gateway.ops.rule_evaluation import evaluate_next_chunk, has_pending
from gateway.store.database import Database

logger = logging.getLogger("dsync.rules")


class RuleEvaluator:
    """This process's worker draining the queue of pending re-evaluations."""

    def __init__(self, database: Database, *, chunk_size: int, poll_seconds: float) -> None:
        self._database = database
        self._chunk_size = chunk_size
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._seen = directory_rules.changes_seen()
        self._task: asyncio.Task[None] | None = None
        self.changed = 0  # users whose role(s) or attributes changed, since start (tests, benchmarks)

    async def start(self) -> None:
        self._database.on_commit(self._after_commit)
        self._wake.set()  # work left by a previous run
        self._task = asyncio.create_task(self._run(), name="dsync-rule-evaluator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Look for queued work now."""
        self._wake.set()

    def _after_commit(self) -> None:
        # Every commit of this process: a rule change among them (a counter moved) means work was queued.
        seen = directory_rules.changes_seen()
        if seen != self._seen:
            self._seen = seen
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed chunk stays queued: the next round retries it
                logger.exception("re-evaluating users failed; retrying")
                await asyncio.sleep(1.0)

    async def _drain(self) -> None:
        size = self._chunk_size
        # A read first: an idle look costs no write transaction (nor the commit notification one would send).
        if not await self._database.query(has_pending):
            return
        while True:
            changed = await self._database.transaction(lambda session: evaluate_next_chunk(session, size=size))
            if changed is None:
                return
            self.changed += changed
