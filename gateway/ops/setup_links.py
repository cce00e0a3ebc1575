"""Setup links (WorkOS's Admin Portal): a one-time, expiring link an operator sends to a customer's IT admin, who
opens it without an API key to connect their identity provider to one directory.

The link's token is a secret like an API key: only its SHA-256 is stored. It travels in the URL's fragment
(``/setup/#dsync_setup_…``), which browsers never send to a server, so it reaches no access log. Revealing the
bearer token issues a new one for the directory (only hashes are stored, so the old one cannot be shown): the old
token stops working, nothing else changes, and each link reveals once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.ops.directories import IssuedDirectory, get_directory, rotate_directory_token
from gateway.ops.inputs import InvalidInput, NotFound
from gateway.store.credentials import hash_secret, new_secret
from gateway.store.ids import new_id
from gateway.store.models import Directory, SetupLink, utcnow

DEFAULT_HOURS = 72
MAX_HOURS = 30 * 24
TOKEN_PREFIX = "dsync_setup_"


@dataclass(frozen=True)
class IssuedSetupLink:
    """A new link's row with its token, which the operator sees this once."""

    link: SetupLink
    token: str


class LinkUnavailable(InvalidInput):
    """The link cannot be used: ``reason`` is ``unknown``, ``expired`` or ``used`` (safe to show its holder)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SetupView:
    """What a link's holder sees: the directory it sets up and the link's own state."""

    link: SetupLink
    directory: Directory


def setup_url(*, public_url: str, token: str) -> str:
    """The address to send: the token in the fragment, which never reaches a server or its logs."""
    return f"{public_url.rstrip('/')}/setup/#{token}"


def create_setup_link(session: Session, *, directory_id: str, hours: float = DEFAULT_HOURS) -> IssuedSetupLink:
    """A new one-time link for a directory, valid ``hours`` (at most 30 days)."""
    if not 0 < hours <= MAX_HOURS:
        raise InvalidInput(f"a setup link lasts more than 0 and at most {MAX_HOURS} hours, not {hours:g}")
    directory = get_directory(session, directory_id=directory_id)
    token = new_secret(TOKEN_PREFIX)
    now = utcnow()
    link = SetupLink(
        id=new_id("setup_link"),
        directory_id=directory.id,
        token_hash=hash_secret(token),
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(link)
    session.flush()
    return IssuedSetupLink(link=link, token=token)


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; the store writes UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=utcnow().tzinfo)


def open_setup_link(session: Session, *, token: str) -> SetupView:
    """The link a token opens, or ``LinkUnavailable`` (unknown, expired). A used link still opens, to show status."""
    link = session.scalar(select(SetupLink).where(col(SetupLink.token_hash) == hash_secret(token.strip())))
    if link is None:
        raise LinkUnavailable("unknown", "This setup link is not valid. Ask for a new one.")
    if _aware(link.expires_at) <= utcnow():
        raise LinkUnavailable("expired", "This setup link has expired. Ask for a new one.")
    return SetupView(link=link, directory=get_directory(session, directory_id=link.directory_id))


def reveal_bearer_token(session: Session, *, token: str, public_url: str) -> IssuedDirectory:
    """Use the link: issue the directory a new bearer token and return it (once per link; the old token stops
    working, nothing else changes). Two reveals racing: one wins, the other finds the link used."""
    view = open_setup_link(session, token=token)
    claimed = session.execute(
        update(SetupLink)
        .where(col(SetupLink.id) == view.link.id, col(SetupLink.revealed_at).is_(None))
        .values(revealed_at=utcnow())
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkUnavailable("used", "This link's token was already revealed. Ask for a new link.")
    return rotate_directory_token(session, directory_id=view.directory.id, public_url=public_url)


def list_setup_links(session: Session, *, directory_id: str) -> list[SetupLink]:
    """A directory's links, newest first (their tokens are never kept)."""
    statement = select(SetupLink).where(col(SetupLink.directory_id) == directory_id)
    return list(session.scalars(statement.order_by(col(SetupLink.id).desc())).all())


def setup_link_status(link: SetupLink, *, now: datetime | None = None) -> str:
    """``used`` (its token was revealed), ``expired`` or ``active``."""
    if link.revealed_at is not None:
        return "used"
    return "expired" if _aware(link.expires_at) <= (now or utcnow()) else "active"


def get_setup_link(session: Session, *, setup_link_id: str) -> SetupLink:
    """A link by id, or ``NotFound``."""
    link = session.get(SetupLink, setup_link_id)
    if link is None:
        raise NotFound(f"no setup link {setup_link_id}")
    return link


def revoke_setup_link(session: Session, *, setup_link_id: str) -> SetupLink:
    """Revoke a link: it is deleted, so opening it answers "not valid" (its holder learns nothing else). Returns the
    row as it was."""
    link = get_setup_link(session, setup_link_id=setup_link_id)
    session.delete(link)
    session.flush()
    return link
