"""uvicorn's httptools HTTP/1.1 protocol, writing a response's head and its body in one socket write
(``dsync serve`` uses it).

uvicorn writes the status line and headers when the application sends ``http.response.start``, and the body when it
sends ``http.response.body``: two ``write`` calls, two TCP segments and two wake-ups of the client for every
response. A SCIM request is answered by one body right after its start; under wrk (8 keep-alive connections, 2
cores) one write instead of two took a bare Starlette route from ~7,300 to ~8,600 responses/s. Here the head of a
response whose length is known (``Content-Length``, or no body at all) is held until its first body message and
goes out with it. A streamed (chunked) response still gets its head at once: its first chunk may be long coming.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _Held:
    """The transport as uvicorn's cycle sees it while it writes a head: the bytes are kept, not sent."""

    __slots__ = ("transport", "data")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def __getattr__(self, name: str) -> Any:  # close, is_closing, ...: the real transport's
        return getattr(self.transport, name)


class _Prefixed:
    """The transport as the cycle sees it while it writes the first body: the held head goes out with it."""

    __slots__ = ("transport", "head")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head: bytes | None = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, None
        self.transport.write(data if head is None else head + data)

    def close(self) -> None:
        if self.head is not None:  # a HEAD's response on a connection that ends with it
            self.write(b"")
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _OneWriteCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, its head sent with the first body (see the module's docstring)."""

    _head: bytes | None = None

    async def send(self, message: Any) -> None:
        transport = self.transport
        if message["type"] == "http.response.start" and not self.response_started:
            held = _Held(transport)
            self.transport = held  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if self.chunked_encoding:
                transport.write(held.data)
            elif held.data:
                self._head = held.data
            return
        head = self._head
        if head is None:
            await super().send(message)
            return
        self._head = None
        prefixed = _Prefixed(transport, head)
        self.transport = prefixed  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
            # Not written with a body (a HEAD's never is): on its own, as uvicorn would have.
            if prefixed.head is not None and not self.disconnected and not transport.is_closing():
                transport.write(prefixed.head)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose responses go out in one write (see the module's docstring)."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # The request's task is created but has not run yet: the cycle can still change how it sends.
        if cycle is not None and type(cycle) is RequestResponseCycle:
            cycle.__class__ = _OneWriteCycle
