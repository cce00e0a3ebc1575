"""PostgreSQL's cached plans, kept for a few seconds at most.

A prepared statement executed often gets a generic plan, cached by its connection and costed for the tables as they
were when it was made. Nothing replaces it as the tables grow (only an ANALYZE does, and autovacuum may be behind or
off): a plan made while a directory was small, during an IdP's first minutes, chose its indexes (or a sequential
scan) for a few dozen rows and kept reading every user of the directory once it had grown. Planning every
execution instead (``plan_cache_mode=force_custom_plan``) cost more than many statements' execution (0.3-0.7 ms of
server CPU for a PUT's, a member add's or a DELETE's statements). So plans stay cached, and a connection drops its
plans (``DISCARD PLANS``; its prepared statements stay) when it is taken for a job after ``PLANS_KEPT_SECONDS``:
a plan made on small tables is used for seconds, not for the connection's life, for one round trip per connection
every so often.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import await_

PLANS_KEPT_SECONDS = 10.0
_DISCARD = "DISCARD PLANS"
_SINCE = "dsync.plans_since"


def stale(since: float) -> bool:
    """Whether plans made at ``since`` (``time.monotonic()``) are to be dropped now."""
    return time.monotonic() - since >= PLANS_KEPT_SECONDS


async def discard_plans(driver: Any) -> float:
    """Drop the cached plans of an asyncpg connection; returns when (the next ``since``)."""
    await driver.execute(_DISCARD)
    return time.monotonic()


def keep_plans_young(engine: AsyncEngine) -> None:
    """Drop a pooled asyncpg connection's plans when it is checked out with plans older than ``PLANS_KEPT_SECONDS``
    (checkouts run in a greenlet, as every use of an async engine's pool does)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if stale(record.info.get(_SINCE, 0.0)):
            record.info[_SINCE] = await_(discard_plans(dbapi_connection.driver_connection))


def keep_young(connection: PoolProxiedConnection) -> None:
    """``keep_plans_young`` for a connection kept checked out (PostgreSQL's write batches): called before each use,
    from a greenlet."""
    info = connection.record_info
    if info is not None and stale(info.get(_SINCE, 0.0)):
        info[_SINCE] = await_(discard_plans(connection.driver_connection))
