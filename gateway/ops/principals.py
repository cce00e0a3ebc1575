"""Who an API key speaks for: an admin (every organization) or one organization. Shared by every API that takes
``Authorization: Bearer <api key>`` (GraphQL, the WorkOS REST API), so a key means the same thing on each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, bindparam, select
from sqlmodel import col

from gateway.store.credentials import hash_secret
from gateway.store.models import ApiKey
from gateway.store.prepared import Reader


@dataclass(frozen=True)
class Principal:
    """The caller an active API key identifies."""

    api_key_id: str
    organization_id: str | None  # None: an admin key

    @property
    def is_admin(self) -> bool:
        """An admin key: it sees every organization."""
        return self.organization_id is None

    def can_see(self, organization_id: str) -> bool:
        """Whether the caller may see (and change) the organization's data."""
        return self.organization_id is None or self.organization_id == organization_id


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value (scheme case-insensitive), or None."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


# Built once: every API request runs one, and building a statement (then its cache key) costs more than running it.
# (``Reader.rows`` takes statements of any columns.)
_ACTIVE_KEY_BY_HASH = cast(
    "Select[Any]",
    select(col(ApiKey.id), col(ApiKey.organization_id)).where(
        col(ApiKey.key_hash) == bindparam("key_hash"), col(ApiKey.revoked_at).is_(None)
    ),
)
_ACTIVE_KEY_BY_ID: Select[Any] = select(col(ApiKey.id)).where(
    col(ApiKey.id) == bindparam("api_key_id"), col(ApiKey.revoked_at).is_(None)
)


def principal_for_key(reader: Reader, *, key: str) -> Principal | None:
    """The principal of an active (not revoked) API key, or None for an unknown or revoked one. Read through
    ``Database.lookup`` (a prebuilt statement straight on the connection, tens of microseconds instead of a session's
    hundred), and by every request again: a revocation or rotation is seen by the very next one."""
    rows = reader.rows(_ACTIVE_KEY_BY_HASH, {"key_hash": hash_secret(key)})
    return Principal(api_key_id=rows[0][0], organization_id=rows[0][1]) if rows else None


def key_is_active(reader: Reader, *, api_key_id: str) -> bool:
    """Whether the key is still active (a long-lived connection re-checks it), through ``Database.lookup``."""
    return bool(reader.rows(_ACTIVE_KEY_BY_ID, {"api_key_id": api_key_id}))
