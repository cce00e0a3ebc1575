"""The built-in dashboard: static files under ``static/`` served at ``/``, talking only to ``/graphql``."""

from __future__ import annotations

from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose

STATIC_DIRECTORY = Path(__file__).parent / "static"

# Scripts and styles only from files the gateway serves (no inline code), connections only back to the gateway
# (fetch to /graphql, the same-origin WebSocket), and no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidate on every load (ETag / Last-Modified): an upgraded gateway serves its own dashboard at once.
    "Cache-Control": "no-cache",
}


class Dashboard:
    def __init__(self, directory: Path = STATIC_DIRECTORY) -> None:
        self._files: ASGIApp = StaticFiles(directory=directory, html=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # a WebSocket to any path but /graphql
            await WebSocketClose()(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await self._files(scope, receive, send_with_headers)
