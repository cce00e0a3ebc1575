"""The base of every WorkOS endpoint: the API key (``Authorization: Bearer <api key>``, as for GraphQL), reads and
writes through the store, and every refusal answered in WorkOS's error shape."""

from __future__ import annotations

import json as jsonlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.ops import principals
from gateway.ops.principals import Principal
from gateway.store.database import Database
from gateway.workos.errors import WorkOSError, invalid, method_not_allowed, not_found, unauthorized

T = TypeVar("T")
logger = logging.getLogger("dsync.workos")


class WorkOSEndpoint(HTTPEndpoint):
    """One resource; subclasses define ``get`` / ``post`` / ``patch`` / ``delete`` and raise ``WorkOSError`` for
    what they refuse."""

    async def dispatch(self) -> None:
        try:
            await super().dispatch()
        except WorkOSError as error:
            # Raised before the handler sent anything: the whole answer is the error.
            logger.debug("WorkOS API %s %s: %s %s", self.scope["method"], self.scope["path"], error.status, error)
            await error.response()(self.scope, self.receive, self.send)

    async def method_not_allowed(self, request: Request) -> Response:
        allowed = [method for method in ("GET", "POST", "PATCH", "DELETE") if hasattr(self, method.lower())]
        raise method_not_allowed(request.method, allowed)


async def authenticate(request: Request) -> Principal:
    """The caller's principal, or 401 (no key, an unknown or a revoked one)."""
    key = principals.bearer_key(request.headers.get("authorization"))
    if key is None:
        raise unauthorized("Send an API key: Authorization: Bearer <api key>")
    principal = await database_of(request).lookup(lambda reader: principals.principal_for_key(reader, key=key))
    if principal is None:
        raise unauthorized("Unknown or revoked API key")
    return principal


def path_id(request: Request, what: str) -> str:
    """The object id in the path; one holding a NUL (PostgreSQL text cannot) is simply not found, on every store."""
    object_id: str = request.path_params["id"]
    if "\x00" in object_id:
        raise not_found(what, object_id.replace("\x00", ""))
    return object_id


def database_of(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def read(request: Request, job: Callable[[Session], T]) -> T:
    """Run a read job (a ``gateway.workos.queries`` function) on the store."""
    return await database_of(request).query(job)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``), or 422 when it is not one."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = jsonlib.loads(raw)
    except ValueError:  # also bytes that are not UTF-8
        raise invalid("body", "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise invalid("body", "the request body must be a JSON object")
    return body


def json(body: dict[str, Any], *, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)
