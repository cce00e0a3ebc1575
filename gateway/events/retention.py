"""Event log retention: events older than ``DSYNC_EVENT_RETENTION_DAYS`` are pruned in the background.

Deletes go in small batches, each its own transaction through the store's normal write path (on SQLite the grouped
writer, between ingest's batches), with a pause between batches: a backlog of millions of expired events costs
ingest a few milliseconds at a time, never a long lock. A reader resuming below what was pruned is told so
(``CursorExpired``, see gateway.events.log).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from gateway.events.log import prune_events
from gateway.store.database import Database
from gateway.store.models import utcnow

logger = logging.getLogger("dsync.events")

BATCH = 500
_PAUSE_SECONDS = 0.05
_INTERVAL_SECONDS = 600.0


async def prune_expired(database: Database, *, retention_days: float) -> int:
    """Delete every event older than ``retention_days``, batch by batch; returns how many."""
    before = utcnow() - timedelta(days=retention_days)
    total = 0
    while True:
        deleted = await database.transaction(lambda session: prune_events(session, before=before, limit=BATCH))
        total += deleted
        if deleted < BATCH:
            return total
        await asyncio.sleep(_PAUSE_SECONDS)


async def prune_periodically(database: Database, *, retention_days: float) -> None:
    """``prune_expired`` now and then every few minutes, until cancelled; a failed pass is logged and retried."""
    while True:
        try:
            pruned = await prune_expired(database, retention_days=retention_days)
            if pruned:
                logger.info("pruned %d events older than %g days", pruned, retention_days)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("pruning expired events failed; retrying later", exc_info=True)
        await asyncio.sleep(_INTERVAL_SECONDS)
