"""uvicorn's sans-I/O WebSocket protocol, holding less per open connection (``dsync serve`` uses it for
``DSYNC_WS_IMPLEMENTATION=websockets-sansio``).

A dashboard keeps its connection open for hours, mostly idle: what a connection holds is multiplied by 10,000 in a
process serving many. uvicorn keeps the handshake's request and response (parsed headers, twice) and the header list
of the ASGI scope for the connection's whole life, and gives each connection an ``asyncio.Queue`` and an
``asyncio.Event`` (four deques, ~4 KiB together) where one pending message and one waiter are all it ever needs.
Measured with tracemalloc on 300 idle subscribers (see README's Performance).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from gateway.graphql.live_frames import TRANSPORT_ABORT


class _Inbox:
    """The receive queue: the messages uvicorn's protocol puts, the one task of the ASGI app gets them."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None  # an idle connection keeps no deque
        return item


class _Writable:
    """``asyncio.Event`` for the transport's flow control, without a deque of waiters while nobody waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        while not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # accepted for the app to decide (not refused by the handshake itself)
            scope[TRANSPORT_ABORT] = self.transport.abort

    def start_keepalive(self) -> None:
        # No protocol-level pings (a timer per connection and 10,000 pings per interval): the gateway's own
        # graphql-transport-ws pings (gateway.graphql.keepalive) close silent peers, and abort through
        # TRANSPORT_ABORT one that stopped reading, whose close frame cannot be sent.
        return

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The handshake is answered: nothing reads its request, its response or the scope's headers again (the
            # origin was checked, and the API key comes in connection_init). Cleared in place: Starlette's
            # WebSocket holds the same list.
            # Emptied too: the protocol's parser keeps the request in a local of its generator.
            self.request.headers.clear()
            self.response.headers.clear()
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
            headers = self.scope["headers"]
            if isinstance(headers, list):
                headers.clear()
            for key in ("extensions", "state", "subprotocols"):  # read by the handshake only
                self.scope.pop(key, None)  # type: ignore[misc]
            # Its attributes, added in no fixed order, grew a table for more than it holds now: a fresh one is
            # ~300 bytes smaller.
            self.__dict__ = dict(self.__dict__)


def ws_protocol(implementation: str) -> Any:
    """uvicorn's ``ws`` option for a ``DSYNC_WS_IMPLEMENTATION``: the sans-I/O one is served by the class above."""
    return LeanWebSocketProtocol if implementation == "websockets-sansio" else implementation
