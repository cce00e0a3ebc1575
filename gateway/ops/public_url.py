"""The public URL SCIM endpoints are built on, shared by ``dsync serve`` and the CLI through the database.

``dsync serve`` announces the URL it answers on (``DSYNC_PUBLIC_URL``, else its host and port) in the store at
start; a CLI command run against the same database without ``DSYNC_PUBLIC_URL`` prints endpoints under that URL,
so the two agree without the operator setting anything."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.store.models import ServerSetting, utcnow

_PUBLIC_URL = "public_url"


def announce_public_url(session: Session, *, public_url: str) -> None:
    """Record the URL this server answers on, for CLI commands run against the same database."""
    value = public_url.rstrip("/")
    row = session.get(ServerSetting, _PUBLIC_URL)
    if row is None:
        session.add(ServerSetting(name=_PUBLIC_URL, value=value))
    elif row.value != value:
        row.value, row.updated_at = value, utcnow()
    session.flush()


def announced_public_url(session: Session) -> str | None:
    """The URL the last ``dsync serve`` on this database announced, or None if none has run."""
    row = session.get(ServerSetting, _PUBLIC_URL)
    return row.value if row is not None else None
