"""The GraphQL endpoint as an ASGI app: HTTP (POST and GET) and graphql-transport-ws on ``/graphql``."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.execution import ExecutionResult
from strawberry.types.unset import UNSET

from gateway.schema.context import Context, authenticate_connection, build_context
from gateway.schema.errors import ApiError
from gateway.schema.schema import schema
from gateway.settings import Settings


class GatewayGraphQL(GraphQL[Context, None]):
    def __init__(self, *, timeout_seconds: float, **kwargs: Any) -> None:
        super().__init__(schema, **kwargs)
        self._timeout_seconds = timeout_seconds

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        return await build_context(request)

    async def on_ws_connect(self, context: Context) -> Any:
        if not await authenticate_connection(context):
            raise ConnectionRejectionError({"message": "a valid API key is required"})
        return UNSET

    async def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        """Queries and mutations over HTTP get a deadline: a runaway query answers TIMEOUT instead of holding a
        worker. (A mutation's transaction, once committed, stays committed.)"""
        try:
            async with asyncio.timeout(self._timeout_seconds):
                return await super().execute_operation(*args, **kwargs)
        except TimeoutError:
            message = f"The request did not finish within {self._timeout_seconds:g} s"
            return ExecutionResult(data=None, errors=[ApiError(message, "TIMEOUT")])


def graphql_app(settings: Settings) -> Any:
    return GatewayGraphQL(
        timeout_seconds=settings.graphql_timeout_seconds,
        graphql_ide="graphiql" if settings.graphiql else None,
    )
