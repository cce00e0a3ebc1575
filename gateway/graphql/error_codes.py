"""Every GraphQL error answer carries an ``extensions.code``, and every HTTP-level refusal on ``/graphql`` is JSON.

Errors the resolvers raise have their codes already (``gateway.graphql.errors``); a document that does not parse
gets ``GRAPHQL_PARSE_FAILED``, one that fails validation (unknown fields, wrong argument types, the cost limits)
``GRAPHQL_VALIDATION_FAILED``, a masked unexpected failure ``INTERNAL_SERVER_ERROR``: a client can branch on the
code alone. Strawberry answers transport refusals (``GET /graphql`` without a query, a body that is not JSON, a
wrong method) in plain text; ``JsonErrors`` rewrites them as ``{"errors": [{"message", "extensions": {"code"}}]}``."""

from __future__ import annotations

import orjson
from graphql import GraphQLError
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
INTERNAL = "INTERNAL_SERVER_ERROR"  # an unexpected failure, masked (its text is logged, never sent)


def tag_errors(errors: list[GraphQLError] | None, code: str) -> None:
    """Give ``code`` to the errors that have none (gateway.graphql.schema does, by the stage that refused the
    document; the parser raises from its hook, which the operation's hook sees as an exception)."""
    for error in errors or ():
        if not (error.extensions or {}).get("code"):
            error.extensions = {**(error.extensions or {}), "code": code}


_NO_QUERY = (
    'Send a GraphQL query: POST /graphql with {"query": "{ viewer { isAdmin } }"} (or GET /graphql?query=…) and '
    "Authorization: Bearer <api key>"
)


class JsonErrors:
    """Plain-text error answers of the GraphQL transport, as GraphQL-shaped JSON with a code."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if content_type.startswith("text/plain"):
                    start = message  # held until the body says what the refusal was
                    return
            elif start is not None and message["type"] == "http.response.body":
                reason = message.get("body", b"").decode("utf-8", "replace")
                status = start["status"]
                if status == 404 and reason == "Not Found":  # GET /graphql without a query (and no GraphiQL)
                    status, reason = 400, _NO_QUERY
                code = "METHOD_NOT_ALLOWED" if status == 405 else "BAD_REQUEST"
                body = orjson.dumps({"errors": [{"message": reason, "extensions": {"code": code}}]})
                headers = MutableHeaders(raw=list(start.get("headers", [])))
                headers["content-type"] = "application/json"
                headers["content-length"] = str(len(body))
                await send({"type": "http.response.start", "status": status, "headers": headers.raw})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, rewrite)
