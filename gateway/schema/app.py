"""The GraphQL endpoint as an ASGI app: HTTP (POST and GET) and graphql-transport-ws on ``/graphql``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from gateway.schema.context import Context, build_context
from gateway.schema.schema import schema
from gateway.settings import Settings


class GatewayGraphQL(GraphQL[Context, None]):
    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        return await build_context(request)


def graphql_app(settings: Settings) -> Any:
    return GatewayGraphQL(schema, graphql_ide="graphiql" if settings.graphiql else None)
