"""Assembles the gateway: the Starlette app with SCIM, health endpoints and the store's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from time import perf_counter
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.dashboard import Dashboard
from gateway.dashboard.setup_links import routes as setup_link_routes
from gateway.events import retention
from gateway.events.hub import EventHub
from gateway.graphql.app import graphql_app
from gateway.graphql.error_codes import JsonErrors
from gateway.graphql.live_frames import SERVER_SEND
from gateway.observe import metrics
from gateway.observe.logs import REQUEST_ID, RequestIds, request_id_of
from gateway.observe.request_log import RequestLog
from gateway.ops import api_keys
from gateway.ops.costly_work import CostlyWork
from gateway.ops.priority import Scheduler
from gateway.ops.rule_evaluator import RuleEvaluator
from gateway.ops.token_buckets import TokenBuckets
from gateway.settings import Settings, get_settings
from gateway.store.database import Database
from gateway.webhooks.process import DeliveryProcess
from gateway.webhooks.worker import WebhookWorker
from gateway.workos import routes as workos
from scim.api.http import error_response
from scim.api.rate_limit import Doorman, RateLimiter
from scim.api.routes import Shortcut
from scim.api.routes import routes as scim_routes
from scim.protocol.errors import ScimError

logger = logging.getLogger("dsync")


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    database: Database = request.app.state.database
    hub: EventHub = request.app.state.hub
    checks = {"database": "ok", "broadcaster": "ok" if hub.broadcast_connected else "unreachable"}
    try:
        async with asyncio.timeout(5), database.read() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the store means "not ready"
        logger.warning("readiness check failed: %s", exc)
        checks["database"] = "unreachable"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", **checks}, status_code=200 if ready else 503)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/scim/"):
        response = error_response(ScimError(exc.status_code, exc.detail or "Request not supported"))
        response.headers.update(exc.headers or {})  # e.g. Allow on 405
        return response
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _graphql_http(settings: Settings) -> ASGIApp:
    app: ASGIApp = JsonErrors(graphql_app(settings))
    if settings.allowed_origins:
        # Pages on these origins may call the API from a browser; SCIM stays server-to-server (no CORS there).
        app = CORSMiddleware(
            app,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    return app


class Gateway(Starlette):
    # graphql-transport-ws on /graphql (None: this role serves no subscriptions), reached before Starlette's stack.
    graphql_ws: ASGIApp | None = None

    def __init__(self, *, scim_routes: list[Route], **kwargs: Any) -> None:
        self.scim_routes = scim_routes
        self.scim_shortcut = Shortcut(scim_routes) if scim_routes else None
        super().__init__(**kwargs)

    # GET/POST/OPTIONS /graphql (its Route, for the metrics' label; its app: CORS, JsonErrors, Strawberry).
    graphql_route: Route | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scim = self.scim_shortcut
        if scim is not None and scope["type"] == "http":
            provisioning = scim.route_for(scope)
            if provisioning is not None:
                scope["app"] = self
                await _http_request(provisioning.app, scope, receive, send)
                return
        route = self.graphql_route
        if (
            route is not None
            and scope["type"] == "http"
            and scope["path"] == "/graphql"
            and scope["method"] in _GRAPHQL_METHODS
        ):
            scope["app"] = self
            scope["route"] = route
            await _http_request(route.app, scope, receive, send)
            return
        if scope["type"] == "websocket":
            # WebSocket handlers get the server's own ``send`` (gateway.graphql.live_frames writes event frames with
            # it): the middlewares' wrappers only look at the handshake, and a burst sends millions of frames.
            scope[SERVER_SEND] = send
            if self.graphql_ws is not None and scope["path"] == "/graphql":
                scope["app"] = self
                await _graphql_websocket(self.graphql_ws, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's own error handling, so a request that failed with a 500 is counted and carries its id.
        # (SCIM's provisioning routes and GraphQL's HTTP requests never come here: see ``__call__``.)
        return RequestIds(metrics.HttpMetrics(_foreground(super().build_middleware_stack())))


def _foreground(app: ASGIApp) -> ASGIApp:
    """Every HTTP request counts as foreground while it runs (a costly GraphQL operation turns itself background):
    background operations give them most of the event loop (gateway.ops.priority)."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        scheduler: Scheduler = scope["app"].state.scheduler
        with scheduler.foreground():
            await app(scope, receive, send)

    return counted


_GRAPHQL_METHODS = frozenset({"GET", "POST", "OPTIONS"})


async def _http_request(endpoint: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """A GraphQL HTTP request or a SCIM provisioning request (``scim.api.routes.Shortcut``), straight to its endpoint
    with what the stack does for it, in this one frame: its id (``RequestIds``), its count and time
    (``HttpMetrics``), foreground while it runs (``_foreground``), a plain 500 if the endpoint fails before answering
    (Starlette's ``ServerErrorMiddleware``). Through the whole stack (those, Starlette's two error middlewares, the
    router, the route) a page of users spent about a tenth of its server time in layers that have nothing to do for
    it; a SCIM write, three coroutine frames and three wrappers of every message it sends."""
    request_id, header = request_id_of(scope)
    started = perf_counter()
    status = 500  # unless a response starts
    response_started = False

    async def send_with_id(message: Message) -> None:
        nonlocal status, response_started
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
            status = message["status"]
            response_started = True
        await send(message)

    token = REQUEST_ID.set(request_id)
    scheduler: Scheduler = scope["app"].state.scheduler
    try:
        with scheduler.foreground():
            await endpoint(scope, receive, send_with_id)
    except Exception:
        if not response_started:
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send_with_id)
        # Not reset: the server's "Exception in ASGI application" record, written next in this request's task,
        # then carries the id too (as ``RequestIds`` does).
        raise
    finally:
        metrics.observe_request(scope, status, perf_counter() - started)
    REQUEST_ID.reset(token)


async def _graphql_websocket(endpoint: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """A graphql-transport-ws connection, straight to its endpoint with what ``RequestIds`` and ``HttpMetrics`` do for
    it (its id, echoed on the accept; the open-connections gauge) in this one frame. Through the whole stack, every
    layer (those two, Starlette's error middlewares, router and route) kept a coroutine frame and a send wrapper for
    the connection's whole life: ~3 KiB per idle subscriber, for nothing to do (Strawberry answers every protocol
    error itself)."""
    request_id, header = request_id_of(scope)
    accepted = False

    async def send_accept(message: Message) -> None:
        nonlocal accepted
        if message["type"] in ("websocket.accept", "websocket.http.response.start"):
            message["headers"] = [*message.get("headers", ()), header]
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                metrics.WEBSOCKETS.inc()
        await send(message)

    token = REQUEST_ID.set(request_id)
    try:
        await endpoint(scope, receive, send_accept)
    finally:
        if accepted:
            metrics.WEBSOCKETS.dec()
    REQUEST_ID.reset(token)


def check_role(settings: Settings) -> None:
    if settings.role != "all" and settings.broadcast_url.startswith("memory"):
        raise ValueError(
            f"DSYNC_ROLE={settings.role} splits the gateway over processes, which hear each other's commits only "
            "through the broadcaster: set DSYNC_BROADCAST_URL to a redis:// or postgres:// URL"
        )


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    check_role(settings)
    ingest, realtime = settings.role in ("all", "ingest"), settings.role in ("all", "realtime")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = Database(settings)
        app.state.database = database
        costly: CostlyWork = app.state.costly_work
        costly.start()
        costly.warm(["gateway.graphql.schema", "scim.api.resources"])  # what gateway.graphql.remote runs
        if settings.admin_key:
            key = settings.admin_key
            await database.transaction(lambda session: api_keys.ensure_admin_key(session, key=key))
        scheduler: Scheduler = app.state.scheduler
        hub = EventHub(
            database,
            settings.broadcast_url,
            poll_seconds=settings.event_poll_seconds,
            busy=lambda: scheduler.foreground_requests > 0,
        )
        await hub.start()
        database.on_commit(hub.notify)
        app.state.hub = hub
        metrics.watch_hub(hub)
        pruner = None
        if ingest and settings.event_retention_days > 0:
            days = settings.event_retention_days
            pruner = asyncio.create_task(retention.prune_periodically(database, retention_days=days))
        worker = WebhookWorker(database, hub, settings, poll_seconds=settings.event_poll_seconds)
        delivery = app.state.webhook_process = DeliveryProcess(settings)
        if ingest and settings.webhook_worker and settings.webhook_process:
            await delivery.start()  # deliveries in a low-priority child process: they never take SCIM's CPU
        elif ingest and settings.webhook_worker:
            hub.on_new_events(worker.wake)
            await worker.start()
        request_log = app.state.request_log = RequestLog(database)
        request_log.start()
        evaluator = app.state.rule_evaluator = RuleEvaluator(
            database, chunk_size=settings.rule_evaluation_chunk, poll_seconds=settings.rule_evaluation_poll_seconds
        )
        await evaluator.start()
        try:
            yield
        finally:
            await delivery.stop()
            await evaluator.stop()
            await worker.stop()
            if pruner is not None:
                pruner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruner
            metrics.unwatch_hub(hub)
            await hub.stop()
            # After the hub: the last flush's commit then only flags a notification. Before it, the notifier could be
            # stopped mid-publish, which redis-py may not let it leave (shutdown waited forever).
            await request_log.stop()
            costly.stop()
            await database.dispose()

    scim = scim_routes() if ingest else []
    # Also reached by other methods through Starlette's stack (a 405 with Allow); see ``Gateway.graphql_route``.
    graphql_route = Route("/graphql", _graphql_http(settings), methods=sorted(_GRAPHQL_METHODS))
    app = Gateway(
        scim_routes=scim,
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics.metrics_endpoint),
            *scim,
            graphql_route,
            *(workos.routes() if ingest else []),
            # The same resources at the root too: the Node SDK takes a host and port but no path.
            *(workos.resource_routes("") if ingest else []),
            *setup_link_routes(),
            Mount("/", Dashboard()),  # last: it answers every path the routes above do not
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.graphql_ws = graphql_app(settings) if realtime else None
    app.graphql_route = graphql_route
    app.state.settings = settings
    app.state.linked_directories = set()
    app.state.scim_rate_limiter = RateLimiter(rate=settings.scim_rate_limit, burst=settings.scim_rate_burst)
    app.state.graphql_rate_limiter = TokenBuckets(rate=settings.graphql_rate_limit, burst=settings.graphql_rate_burst)
    app.state.graphql_cost_limiter = TokenBuckets(rate=settings.graphql_cost_rate, burst=settings.graphql_cost_burst)
    app.state.costly_work = CostlyWork(settings)
    app.state.scheduler = Scheduler(foreground_seconds=settings.graphql_foreground_ms / 1000)
    app.state.scim_doorman = Doorman(rate=settings.scim_unauthenticated_rate_limit)
    return app
