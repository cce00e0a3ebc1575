"""Assembles the gateway: the Starlette app with SCIM, health endpoints and the store's lifecycle."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from gateway import admin
from gateway.db import Database
from gateway.realtime import EventHub
from gateway.schema.app import graphql_app
from gateway.settings import Settings, get_settings
from scim.errors import ScimError
from scim.routes import routes as scim_routes

logger = logging.getLogger("dsync")


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    database: Database = request.app.state.database
    try:
        async with database.read() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the store means "not ready"
        logger.warning("readiness check failed: %s", exc)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/scim/"):
        response = ScimError(exc.status_code, exc.detail or "Request not supported").to_response()
        response.headers.update(exc.headers or {})  # e.g. Allow on 405
        return response
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = Database(settings)
        app.state.database = database
        if settings.admin_key:
            key = settings.admin_key
            await database.transaction(lambda session: admin.ensure_admin_key(session, key=key))
        hub = EventHub(database, settings.broadcast_url)
        await hub.start()
        database.on_commit(hub.notify)
        app.state.hub = hub
        try:
            yield
        finally:
            await hub.stop()
            await database.dispose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *scim_routes(),
            Route("/graphql", graphql_app(settings), methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql_app(settings)),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.settings = settings
    app.state.linked_directories = set()
    return app
