"""``ApiKey.lastUsedAt``: recorded when a key authenticates, at most once a minute per key and process, so reads do
not each turn into a write."""

from __future__ import annotations

import logging
import time

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.store.database import Database
from gateway.store.models import ApiKey, utcnow

logger = logging.getLogger("dsync.graphql")

_EVERY_SECONDS = 60.0
_MAX_REMEMBERED = 10_000
_last_noted: dict[str, float] = {}


async def note_key_use(database: Database, api_key_id: str) -> None:
    """Record that ``api_key_id`` was just used, unless this process did so in the last minute."""
    now = time.monotonic()
    if now - _last_noted.get(api_key_id, -_EVERY_SECONDS) < _EVERY_SECONDS:
        return
    if len(_last_noted) >= _MAX_REMEMBERED:
        _last_noted.clear()
    _last_noted[api_key_id] = now
    moment = utcnow()

    def write(session: Session) -> None:
        session.execute(update(ApiKey).where(col(ApiKey.id) == api_key_id).values(last_used_at=moment))

    try:
        await database.transaction(write)
    except Exception:  # a busy store must not fail the request; the next minute tries again
        logger.warning("could not record the use of API key %s", api_key_id, exc_info=True)
