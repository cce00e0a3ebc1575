"""``DSYNC_DATABASE_URL`` as the async engines need it."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def async_url(database_url: str) -> URL:
    """``DSYNC_DATABASE_URL`` for the async engines: PostgreSQL through asyncpg, which the writer and the lookups use
    directly (``postgresql://`` and ``postgres://`` mean it; another driver named is refused, not half-working)."""
    if database_url.startswith("postgres://"):  # (the scheme some hosts hand out)
        database_url = "postgresql://" + database_url.removeprefix("postgres://")
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or url.drivername == "postgresql+asyncpg":
        return url
    if url.drivername != "postgresql":
        raise ValueError(
            f"DSYNC_DATABASE_URL: PostgreSQL is used through asyncpg; write postgresql+asyncpg://… or postgresql://…,"
            f" not {url.drivername}://…"
        )
    return url.set(drivername="postgresql+asyncpg")
