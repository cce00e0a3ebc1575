"""Prometheus metrics, served on ``/metrics`` in the text exposition format.

Labels stay bounded: routes are templates (``/scim/v2/{directory_id}/Users/{id}``), never raw paths or ids. The
request path pays a dictionary lookup and three lock-protected additions per request; everything about the hub
(subscriptions, subscriber lag, the broadcaster) is read when Prometheus scrapes, and costs nothing in between.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from time import perf_counter
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.events.hub import EventHub
from gateway.events.log import EVENTS_RECORDED

# No *_created series: Prometheus detects counter resets itself, and they would double the output.
disable_created_metrics()  # type: ignore[no-untyped-call]

HTTP_REQUESTS = Counter(
    "dsync_http_requests",
    "HTTP requests answered, by method, route template and status (SCIM routes start with /scim/v2)",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "dsync_http_request_duration_seconds",
    "Time from a request's arrival to its response's end, by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
GRAPHQL_OPERATIONS = Counter(
    "dsync_graphql_operations",
    "GraphQL operations executed (HTTP and WebSocket), by type; 'invalid': refused before execution",
    ["operation_type"],
)
EVENTS_WRITTEN = Counter("dsync_events_written", "Events committed to the event log by this process")
EVENTS_DELIVERED = Counter(
    "dsync_events_delivered",
    "Events sent to subscriptions: read from the log (replay, catching up) or handed over live by the pump",
    ["source"],
)
DELIVERED_FROM_LOG = EVENTS_DELIVERED.labels("log")
DELIVERED_LIVE = EVENTS_DELIVERED.labels("live")
WEBSOCKETS = Gauge("dsync_websocket_connections", "Open (accepted) WebSocket connections")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_by_labels: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _route_template(scope: Scope) -> str:
    route = scope.get("route")  # set by Starlette's router on the matching (or 405-answering) route
    if route is None:
        return "unmatched"
    if isinstance(route, Mount):
        return f"{route.path}/{{path:path}}"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _observe(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    children = _by_labels.get(key)
    if children is None:
        children = _by_labels[key] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_SECONDS.labels(method, route),
        )
    children[0].inc()
    children[1].observe(seconds)


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    """Count and time one HTTP request that ended with ``status`` (``HttpMetrics`` does it for every request; a
    shortcut past it, gateway.app's for ``/graphql``, does it itself)."""
    method = scope["method"] if scope["method"] in _METHODS else "other"
    _observe(method, _route_template(scope), status, seconds)


class HttpMetrics:
    """ASGI middleware: counts and times every HTTP request, and counts open WebSocket connections."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        status = 500  # unless a response starts: the server answers 500 when the app fails before that

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            observe_request(scope, status, perf_counter() - started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = False

        async def send_accept(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                WEBSOCKETS.inc()
            await send(message)

        try:
            await self.app(scope, receive, send_accept)
        finally:
            if accepted:
                WEBSOCKETS.dec()


# Events are counted once their transaction commits: ``record_events`` tallies them in the session's info, and a
# rollback (a grouped write batch that failed and is rerun job by job) forgets them.
@event.listens_for(Session, "after_commit")
def _count_committed_events(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    recorded = session.info.pop(EVENTS_RECORDED, 0)
    if recorded:
        EVENTS_WRITTEN.inc(recorded)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_events(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(EVENTS_RECORDED, None)


class _HubCollector(Collector):
    """Subscriptions, subscriber lag and the broadcaster's state, read from the running hubs at scrape time."""

    def __init__(self) -> None:
        self.hubs: list[EventHub] = []

    def collect(self) -> Iterator[Metric]:
        subscribers = [subscriber for hub in self.hubs for subscriber in hub.subscribers]
        yield GaugeMetricFamily("dsync_subscriptions", "Active GraphQL subscriptions", value=len(subscribers))
        yield GaugeMetricFamily(
            "dsync_subscriber_lag_events",
            "Events waiting to be sent to the furthest-behind subscription (its queue holds 1000; a full queue "
            "switches it to reading the log)",
            value=max((subscriber.lag() for subscriber in subscribers), default=0),
        )
        yield GaugeMetricFamily(
            "dsync_subscribers_catching_up",
            "Subscriptions that fell behind (queue full) and are reading the event log to catch up",
            value=sum(1 for subscriber in subscribers if subscriber.behind),
        )
        yield GaugeMetricFamily(
            "dsync_broadcaster_connected",
            "1 while the change-notification broadcaster is connected",
            value=1 if self.hubs and all(hub.broadcast_connected for hub in self.hubs) else 0,
        )
        yield CounterMetricFamily(
            "dsync_broadcaster_reconnects",
            "Broadcaster connections lost or failed, each followed by a new attempt",
            value=sum(hub.broadcast_reconnects for hub in self.hubs),
        )


_HUBS = _HubCollector()
REGISTRY.register(_HUBS)


def watch_hub(hub: EventHub) -> None:
    _HUBS.hubs.append(hub)


def unwatch_hub(hub: EventHub) -> None:
    if hub in _HUBS.hubs:
        _HUBS.hubs.remove(hub)


def _authorized(authorization: str | None, token: str) -> bool:
    scheme, _, given = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``; with ``DSYNC_METRICS_TOKEN`` set it wants ``Authorization: Bearer <that token>``."""
    token: str | None = request.app.state.settings.metrics_token
    if token is not None and not _authorized(request.headers.get("authorization"), token):
        return PlainTextResponse(
            "Send the metrics token: Authorization: Bearer <DSYNC_METRICS_TOKEN>\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
