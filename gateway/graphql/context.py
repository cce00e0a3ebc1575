"""Per-request context: the store, the settings, and the API key's principal (admin or one organization)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col
from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from gateway.graphql.errors import ApiError
from gateway.graphql.key_use import note_key_use
from gateway.graphql.loaders import Loaders
from gateway.settings import Settings
from gateway.store.credentials import hash_secret
from gateway.store.database import Database
from gateway.store.models import ApiKey


@dataclass(frozen=True)
class Principal:
    api_key_id: str
    organization_id: str | None  # None: an admin key

    @property
    def is_admin(self) -> bool:
        return self.organization_id is None

    def can_see(self, organization_id: str) -> bool:
        return self.organization_id is None or self.organization_id == organization_id


@dataclass
class Context:
    database: Database
    settings: Settings
    hub: Any
    # None when the request carried no valid key: every field then answers UNAUTHENTICATED (see ``principal``).
    _principal: Principal | None
    _auth_error: str = ""
    # Set by Strawberry from a WebSocket's connection_init payload.
    connection_params: dict[str, Any] | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.database)

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            raise ApiError(self._auth_error or "Send an API key", "UNAUTHENTICATED")
        return self._principal

    def require_admin(self) -> None:
        if not self.principal.is_admin:
            raise ApiError("This operation needs an admin API key", "FORBIDDEN")

    def can_see(self, organization_id: str) -> bool:
        return self.principal.can_see(organization_id)


Info = StrawberryInfo[Context, Any]


def bearer_key(authorization: str | None) -> str | None:
    scheme, _, key = (authorization or "").strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _principal_for(session: Session, key_hash: str) -> Principal | None:
    row = session.execute(
        select(col(ApiKey.id), col(ApiKey.organization_id)).where(
            col(ApiKey.key_hash) == key_hash, col(ApiKey.revoked_at).is_(None)
        )
    ).first()
    return Principal(api_key_id=row[0], organization_id=row[1]) if row else None


def _key_active(session: Session, api_key_id: str) -> bool:
    statement = select(col(ApiKey.id)).where(col(ApiKey.id) == api_key_id, col(ApiKey.revoked_at).is_(None))
    return session.execute(statement).first() is not None


async def key_is_active(database: Database, api_key_id: str) -> bool:
    return await database.query(lambda session: _key_active(session, api_key_id))


async def authenticate(database: Database, authorization: str | None) -> tuple[Principal | None, str]:
    key = bearer_key(authorization)
    if key is None:
        return None, "Send an API key: Authorization: Bearer <key>"
    key_hash = hash_secret(key)
    principal = await database.query(lambda session: _principal_for(session, key_hash))
    if principal is not None:
        await note_key_use(database, principal.api_key_id)
    return (principal, "") if principal else (None, "Unknown or revoked API key")


async def build_context(request: Request | WebSocket) -> Context:
    database: Database = request.app.state.database
    settings: Settings = request.app.state.settings
    hub = request.app.state.hub
    if isinstance(request, WebSocket):
        # Over WebSocket the key comes in connection_init (see ``authenticate_connection``).
        return Context(database=database, settings=settings, hub=hub, _principal=None, _auth_error="Send an API key")
    principal, error = await authenticate(database, request.headers.get("authorization"))
    return Context(database=database, settings=settings, hub=hub, _principal=principal, _auth_error=error)


async def authenticate_connection(context: Context) -> bool:
    """graphql-transport-ws: ``{"authorization": "Bearer <key>"}`` in connection_init (key name case-insensitive)."""
    params = context.connection_params or {}
    authorization = next((v for k, v in params.items() if k.lower() == "authorization"), None)
    principal, error = await authenticate(context.database, authorization if isinstance(authorization, str) else None)
    context._principal, context._auth_error = principal, error
    return principal is not None
