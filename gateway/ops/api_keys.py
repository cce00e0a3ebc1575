"""API keys for GraphQL and the dashboard: admin keys see every organization, organization keys one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.ops.inputs import InvalidInput, get_or_not_found
from gateway.ops.organizations import get_organization
from gateway.store.credentials import hash_secret, new_secret
from gateway.store.ids import has_prefix, new_id
from gateway.store.models import ApiKey, utcnow


@dataclass(frozen=True)
class IssuedApiKey:
    """A new API key's row with the key itself, which the operator sees this once."""

    api_key: ApiKey
    key: str  # shown once; only its hash is stored


def create_api_key(session: Session, *, organization_id: str | None = None) -> IssuedApiKey:
    """A new key for one organization's data, or an admin key for all of them (``organization_id=None``)."""
    if organization_id is not None:
        get_organization(session, organization_id=organization_id)
    key = new_secret("dsync_key_")
    api_key = ApiKey(id=new_id("api_key"), key_hash=hash_secret(key), organization_id=organization_id)
    session.add(api_key)
    session.flush()
    return IssuedApiKey(api_key=api_key, key=key)


def list_api_keys(session: Session, *, organization_id: str | None = None, admin_only: bool = False) -> list[ApiKey]:
    """Keys oldest first, revoked ones included: all, one organization's, or the admin keys (``admin_only``)."""
    statement = select(ApiKey).order_by(col(ApiKey.id))
    if admin_only:
        statement = statement.where(col(ApiKey.organization_id).is_(None))
    elif organization_id is not None:
        statement = statement.where(col(ApiKey.organization_id) == organization_id)
    return list(session.scalars(statement).all())


def check_api_key_id(value: str) -> None:
    """Refuse what is not an API key id without repeating it: it may be the key itself (errors reach logs)."""
    if not has_prefix(value, "api_key"):
        raise InvalidInput("that is not an API key id (api_key_…); `dsync api-keys list` or `apiKeys` shows them")


def revoke_api_key(session: Session, *, api_key_id: str) -> ApiKey:
    """Revoke a key by its id: the next request made with it is refused."""
    check_api_key_id(api_key_id)
    api_key = get_or_not_found(session, ApiKey, api_key_id, "API key")
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        session.flush()
    return api_key


def ensure_admin_key(session: Session, *, key: str) -> None:
    """Register the bootstrap admin key from ``DSYNC_ADMIN_KEY`` (idempotent)."""
    key_hash = hash_secret(key)
    found = session.scalar(select(col(ApiKey.id)).where(col(ApiKey.key_hash) == key_hash))
    if found is None:
        session.add(ApiKey(id=new_id("api_key"), key_hash=key_hash, organization_id=None))
        session.flush()


def ensure_first_admin_key(session: Session) -> str | None:
    """First run: when no admin key is active, create one and return it (the only time it is seen); else None.

    Two servers starting together may both find none: the unique index on active first-run keys lets one insert
    commit, and the other returns None, so the key is printed once."""
    active = select(col(ApiKey.id)).where(col(ApiKey.organization_id).is_(None), col(ApiKey.revoked_at).is_(None))
    if session.scalar(active.limit(1)) is not None:
        return None
    key = new_secret("dsync_key_")
    try:
        with session.begin_nested():
            session.add(ApiKey(id=new_id("api_key"), key_hash=hash_secret(key), organization_id=None, first_run=True))
    except IntegrityError:
        return None
    return key
