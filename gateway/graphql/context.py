"""Per-request context: the store, the settings, and the API key's principal (admin or one organization).

A WebSocket connection keeps one context for all its operations, so nothing that caches may live on it: the
DataLoaders belong to one operation (``loaders``: set by each execution, see gateway.graphql.execution).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from gateway.graphql.errors import ApiError
from gateway.graphql.key_use import note_key_use
from gateway.graphql.loaders import Loaders
from gateway.ops import principals
from gateway.ops.costly_work import CostlyWork
from gateway.ops.principals import Principal
from gateway.ops.priority import Scheduler
from gateway.ops.token_buckets import TokenBuckets
from gateway.settings import Settings
from gateway.store.database import Database


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
    # Per API key, shared by every request of the app (None: no limit).
    rate_limiter: TokenBuckets | None = None
    # Per API key, the operations' costs (gateway.graphql.budget).
    cost_limiter: TokenBuckets | None = None
    # Where operations above ``graphql_background_cost`` take their turns (gateway.graphql.budget).
    scheduler: Scheduler | None = None
    # Where a costly operation runs (gateway.graphql.remote); None: in this process.
    costly_work: CostlyWork | None = None

    def start_operation(self) -> None:
        """Fresh DataLoaders for the operation (or subscription event) that starts executing in this task, built
        when a resolver first asks: a subscription that never does (most of them) keeps none."""
        _operation_loaders.set(_OperationLoaders(self.database))

    @property
    def loaders(self) -> Loaders:
        holder = _operation_loaders.get(None)
        if holder is None or holder.database is not self.database:
            holder = _OperationLoaders(self.database)  # outside an execution: nothing to share with
            _operation_loaders.set(holder)
        if holder.loaders is None:
            holder.loaders = Loaders(self.database)
        return holder.loaders

    @property
    def authenticated(self) -> Principal | None:
        """The principal, or None when the request carried no valid key (never raises)."""
        return self._principal

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


class _OperationLoaders:
    """One operation's DataLoaders, made on first use. The holder is set in the operation's task before any resolver
    runs, so resolvers running in tasks of their own (lists resolved concurrently) share what the first one made."""

    __slots__ = ("database", "loaders")

    def __init__(self, database: Database) -> None:
        self.database = database
        self.loaders: Loaders | None = None


# Each operation runs in its own task (an HTTP request; an operation of a WebSocket connection), whose copy of this
# variable its execution sets: resolvers of one operation share loaders, no two operations do.
_operation_loaders: ContextVar[_OperationLoaders | None] = ContextVar("dsync_operation_loaders", default=None)


async def key_is_active(database: Database, api_key_id: str) -> bool:
    return await database.lookup(lambda reader: principals.key_is_active(reader, api_key_id=api_key_id))


async def authenticate(database: Database, authorization: str | None) -> tuple[Principal | None, str]:
    key = principals.bearer_key(authorization)
    if key is None:
        return None, "Send an API key: Authorization: Bearer <key>"
    # A prebuilt statement on the raw connection (gateway.store.prepared): tens of microseconds instead of a session.
    principal = await database.lookup(lambda reader: principals.principal_for_key(reader, key=key))
    if principal is not None:
        await note_key_use(database, principal.api_key_id)
    return (principal, "") if principal else (None, "Unknown or revoked API key")


async def build_context(request: Request | WebSocket) -> Context:
    database: Database = request.app.state.database
    settings: Settings = request.app.state.settings
    hub = request.app.state.hub
    limiter: TokenBuckets = request.app.state.graphql_rate_limiter
    cost_limiter: TokenBuckets | None = getattr(request.app.state, "graphql_cost_limiter", None)
    scheduler: Scheduler | None = getattr(request.app.state, "scheduler", None)
    costly_work: CostlyWork | None = getattr(request.app.state, "costly_work", None)
    principal, error = None, "Send an API key"
    # Over WebSocket the key comes in connection_init (see ``authenticate_connection``).
    if not isinstance(request, WebSocket):
        principal, error = await authenticate(database, request.headers.get("authorization"))
    return Context(
        database=database,
        settings=settings,
        hub=hub,
        rate_limiter=limiter,
        cost_limiter=cost_limiter,
        scheduler=scheduler,
        costly_work=costly_work,
        _principal=principal,
        _auth_error=error,
    )


async def authenticate_connection(context: Context) -> bool:
    """graphql-transport-ws: ``{"authorization": "Bearer <key>"}`` in connection_init (key name case-insensitive)."""
    params = context.connection_params or {}
    authorization = next((v for k, v in params.items() if k.lower() == "authorization"), None)
    principal, error = await authenticate(context.database, authorization if isinstance(authorization, str) else None)
    context._principal, context._auth_error = principal, error
    return principal is not None
