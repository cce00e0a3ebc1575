"""A real HTTP server on 127.0.0.1 that receives webhooks for tests and benchmarks: it keeps each request's raw
body and headers, can answer errors, and notices an event that arrives while the same event is still in flight."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.redis_server import free_port
from tests.waiting import eventually


@dataclass(frozen=True)
class Received:
    path: str
    body: bytes
    headers: dict[str, str]
    at: float  # time.time() when it arrived


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    concurrent_duplicates: int = 0
    _in_flight: set[tuple[str, bytes]] = field(default_factory=set)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        key = (request.url.path, body[:200])
        if key in self._in_flight:
            self.concurrent_duplicates += 1
        self._in_flight.add(key)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.status < 300:
                self.received.append(Received(request.url.path, body, dict(request.headers), time.time()))
            return Response(b"ok", status_code=self.status)
        finally:
            self._in_flight.discard(key)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        await eventually(lambda: self._server is not None and self._server.started, within=10, step=0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._server = None
            self._task = None


@contextlib.asynccontextmanager
async def receiving(**kwargs: object) -> contextlib.AsyncIterator[Receiver]:  # type: ignore[name-defined]
    receiver = Receiver(**kwargs)  # type: ignore[arg-type]
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
