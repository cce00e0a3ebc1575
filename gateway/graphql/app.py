"""The GraphQL endpoint as an ASGI app: HTTP (POST and GET) and graphql-transport-ws on ``/graphql``."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage, PongMessage
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from gateway.graphql.context import Context, authenticate_connection, build_context, key_is_active
from gateway.graphql.errors import is_unauthenticated
from gateway.graphql.execution import SharedData
from gateway.graphql.keepalive import PingWheel
from gateway.graphql.live_frames import TRANSPORT_ABORT, FrameHandler
from gateway.graphql.schema import schema
from gateway.settings import Settings

# graphql-ws's code for a connection the other side stopped answering; clients reconnect on it.
_KEEPALIVE_CLOSE = 4499


class _KeepaliveHandler(FrameHandler):
    """graphql-transport-ws with server pings (one task for all connections: gateway.graphql.keepalive): a peer that
    does not pong before the next ping is closed (a dead network path otherwise holds a subscription and its queue
    for hours). Each ping also re-checks the API key, and a revocation announced through the hub closes the
    connection at once."""

    _ponged = True
    _api_key_id: str | None = None
    _closing = False

    def on_request_accepted(self) -> None:
        super().on_request_accepted()
        view: GatewayGraphQL = self.view  # type: ignore[assignment]
        view.pings.add(self)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        # Its job is done: a finished task still holds its coroutine's result and callbacks.
        self.connection_init_timeout_task = None
        self.context.connection_params = None  # authenticated (or refused): the key is not needed again
        if self.connection_acknowledged and self._api_key_id is None:
            self._api_key_id = self.context.principal.api_key_id
            self.context.hub.watch_key(self._api_key_id, self._revoked)

    async def handle_pong(self, message: PongMessage) -> None:
        self._ponged = True

    async def shutdown(self) -> None:
        view: GatewayGraphQL = self.view  # type: ignore[assignment]
        view.pings.remove(self)
        if self._api_key_id is not None:
            self.context.hub.unwatch_key(self._api_key_id, self._revoked)
        await super().shutdown()

    def _revoked(self) -> None:
        self._close(4403, "Forbidden: the API key was revoked")

    async def keepalive_tick(self) -> None:
        view: GatewayGraphQL = self.view  # type: ignore[assignment]
        if self._api_key_id is None or self._closing:
            return  # not acknowledged yet: the init timeout deals with connections that never are
        if not await view.key_is_active(self.context.database, self._api_key_id):
            self._close(4403, "Forbidden: the API key was revoked")
        elif not self._ponged:
            # Also a peer that stopped reading: its ping is still queued behind what it did not read.
            self._close(_KEEPALIVE_CLOSE, "Keepalive timeout: no pong")
        else:
            self._ponged = False
            self.send_nowait('{"type":"ping"}')

    def _close(self, code: int, reason: str) -> None:
        if not self._closing:
            self._closing = True
            task = asyncio.create_task(self._close_now(code, reason))
            _closing_tasks.add(task)
            task.add_done_callback(_closing_tasks.discard)

    async def _close_now(self, code: int, reason: str) -> None:
        view: GatewayGraphQL = self.view  # type: ignore[assignment]
        try:
            async with asyncio.timeout(view.ping_seconds):
                await self.websocket.close(code=code, reason=reason)
        except TimeoutError:
            # A peer that stopped reading filled the socket and the close frame cannot go: drop the connection.
            abort = self.websocket.ws.scope.get(TRANSPORT_ABORT)  # type: ignore[attr-defined]
            if abort is not None:
                abort()
        except Exception as error:  # already closed: the handler's own shutdown follows
            self.task_logger.debug("closing failed: %s", error)


# Closes in progress: the event loop keeps only weak references to tasks.
_closing_tasks: set[asyncio.Task[None]] = set()


class GatewayGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = _KeepaliveHandler

    def __init__(self, *, ping_seconds: float, **kwargs: Any) -> None:
        super().__init__(schema, **kwargs)
        self.ping_seconds = ping_seconds
        self.pings = PingWheel(ping_seconds)
        # API key id -> (checked at, active): 10,000 connections on a few keys ask once per key per interval.
        self._key_checks: dict[str, tuple[float, bool]] = {}

    async def key_is_active(self, database: Any, api_key_id: str) -> bool:
        """``key_is_active``, answered from a check made less than half a ping interval ago when there is one
        (revocations announced through the hub close connections at once whatever this says)."""
        now = time.monotonic()
        checked = self._key_checks.get(api_key_id)
        if checked is not None and now - checked[0] < self.ping_seconds / 2:
            return checked[1]
        active = await key_is_active(database, api_key_id)
        if len(self._key_checks) > 10_000:
            self._key_checks.clear()
        self._key_checks[api_key_id] = (now, active)
        return active

    def encode_json(self, data: object) -> str:
        # A subscription event shared by many subscribers carries its JSON already: only the envelope is new.
        if isinstance(data, dict) and data.get("type") == "next":
            payload = data["payload"]
            if len(payload) == 1 and isinstance(payload.get("data"), SharedData):
                envelope = orjson.dumps({"id": data["id"], "type": "next"}).decode()
                return f'{envelope[:-1]},"payload":{{"data":{payload["data"].encoded()}}}}}'
        try:
            return orjson.dumps(data).decode()
        except TypeError:  # beyond orjson (e.g. an integer past 64 bits): the standard encoder
            return str(super().encode_json(data))

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        # A refusal costs the server little, but a client ignoring them could have them answered as fast as the
        # CPU allows: each waits a moment first (holding nothing but this coroutine).
        settings: Settings = request.app.state.settings
        if settings.graphql_refusal_delay_ms > 0 and is_unauthenticated(result):
            await asyncio.sleep(settings.graphql_refusal_delay_ms / 1000)
        return await super().process_result(request, result)

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        # The body as orjson's bytes: encode_json's text would be decoded, then encoded back by the response.
        try:
            body = orjson.dumps(response_data)
        except TypeError:  # beyond orjson (e.g. an integer past 64 bits): the standard encoder
            return super().create_response(response_data, sub_response)
        response = Response(body, status_code=sub_response.status_code or 200, media_type="application/json")
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        return await build_context(request)

    def decode_json(self, data: str | bytes) -> object:
        # orjson reads standard UTF-8 JSON; anything else (other UTF encodings, NaN, huge integers, lone surrogates)
        # is read, or refused, by the standard decoder exactly as before.
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        # Bytes in no UTF encoding raise UnicodeDecodeError; Strawberry answers 400 for JSONDecodeError only.
        try:
            return super().decode_json(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"not UTF-8, -16 or -32: {exc.reason}", "", exc.start) from None

    async def on_ws_connect(self, context: Context) -> Any:
        if not await authenticate_connection(context):
            raise ConnectionRejectionError({"message": "a valid API key is required"})
        return UNSET


def graphql_app(settings: Settings) -> Any:
    return GatewayGraphQL(
        ping_seconds=settings.ws_ping_seconds,
        graphql_ide="graphiql" if settings.graphiql else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
        max_subscriptions_per_connection=settings.ws_max_subscriptions,
        allowed_origins=settings.allowed_origins,
    )
