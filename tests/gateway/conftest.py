"""A real uvicorn on 127.0.0.1 serving the app, for WebSocket and multi-connection tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from gateway.app import create_app
from gateway.http_transport import HttpProtocol
from gateway.ops import api_keys
from gateway.settings import Settings
from gateway.ws_transport import ws_protocol
from tests.conftest import make_directory
from tests.redis_server import free_port


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[int, Any]]:
    port = free_port()
    app = create_app(settings)
    # The WebSocket settings `dsync serve` uses (gateway/cli.py), so the tests exercise what runs in production.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        http=HttpProtocol,  # as `dsync serve` does
        ws=ws_protocol(settings.ws_implementation),  # as `dsync serve` does
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # up to 10 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield port, app
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def live_server(settings: Settings, **overrides: Any) -> AsyncIterator[dict[str, Any]]:
    """The app on a real port with a directory and an admin key: {port, app, directory, key, database}."""
    async with serve(dataclasses.replace(settings, **overrides)) as (port, app):
        database = app.state.database
        directory = await make_directory(database)
        key = (await database.transaction(lambda s: api_keys.create_api_key(s, organization_id=None))).key
        yield {"port": port, "app": app, "directory": directory, "key": key, "database": database}


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    async with live_server(settings) as server:
        yield server
