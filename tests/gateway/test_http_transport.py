"""The HTTP protocol of ``dsync serve`` (gateway.http_transport): the same bytes as uvicorn's, one write a response."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http_transport import HttpProtocol
from tests.redis_server import free_port


async def _item(request: Request) -> Response:
    if request.method == "DELETE":
        return Response(status_code=204)
    body = await request.body()
    return Response(b"hello" + body, media_type="application/scim+json", headers={"ETag": 'W/"1"'})


async def _stream(_request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.sleep(0.01)
        yield b"b"

    return StreamingResponse(chunks())


_APP = Starlette(routes=[Route("/item", _item, methods=["GET", "HEAD", "PUT", "DELETE"]), Route("/stream", _stream)])


class _CountingTransport:
    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def _exchange(protocol: type[asyncio.Protocol], request: bytes) -> tuple[bytes, list[bytes]]:
    """What a raw client gets for ``request`` (the server closes the connection), and the server's writes."""
    writes: list[bytes] = []

    class Counting(protocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(_CountingTransport(transport, writes))

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_APP, host="127.0.0.1", port=port, http=Counting, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
    finally:
        server.should_exit = True
        await task
    return answer, writes


def _without_dates(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(b"date: "))


_CLOSE = b"Host: x\r\nConnection: close\r\n\r\n"
_REQUESTS = {
    "get": b"GET /item HTTP/1.1\r\n" + _CLOSE,
    "head": b"HEAD /item HTTP/1.1\r\n" + _CLOSE,
    "delete": b"DELETE /item HTTP/1.1\r\n" + _CLOSE,
    "stream": b"GET /stream HTTP/1.1\r\n" + _CLOSE,
    "pipelined": b"GET /item HTTP/1.1\r\nHost: x\r\n\r\nHEAD /item HTTP/1.1\r\nHost: x\r\n\r\n"
    b"DELETE /item HTTP/1.1\r\nHost: x\r\n\r\nGET /item HTTP/1.1\r\n" + _CLOSE,
    "continue": b"PUT /item HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close"
    b"\r\n\r\nabc",
}


@pytest.mark.parametrize("name", sorted(_REQUESTS))
async def test_answers_as_uvicorn_does(name: str) -> None:
    ours, _ = await _exchange(HttpProtocol, _REQUESTS[name])
    theirs, _ = await _exchange(HttpToolsProtocol, _REQUESTS[name])
    assert _without_dates(ours) == _without_dates(theirs)
    assert ours.startswith(b"HTTP/1.1 ")


@pytest.mark.parametrize("name", ["get", "head", "delete"])
async def test_one_write_per_response(name: str) -> None:
    answer, writes = await _exchange(HttpProtocol, _REQUESTS[name])
    assert [write for write in writes if write] == [answer]


async def test_streamed_head_goes_first() -> None:
    answer, writes = await _exchange(HttpProtocol, _REQUESTS["stream"])
    assert writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert b"".join(writes) == answer
