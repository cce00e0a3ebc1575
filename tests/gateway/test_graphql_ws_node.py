"""Subscriptions driven by the ``graphql-ws`` npm client under Node (what Apollo Client, urql and Relay use): the
plain and the batched field, a socket dropped mid-stream and a new subscription resumed by cursor, and exactly the
log received, in order. The client is installed once by npm into tests/node (``package.json``,
``package-lock.json``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from gateway.settings import Settings
from gateway.store import models
from tests.gateway.conftest import live_server

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
FIELDS = "cursor event occurredAt data user { id }"
PLAIN = f"subscription($dir: ID, $after: String) {{ directoryEvents(directoryId: $dir, after: $after) {{ {FIELDS} }} }}"
BATCHES = (
    "subscription($dir: ID, $after: String) "
    f"{{ directoryEventBatches(directoryId: $dir, after: $after, maxBatch: 7) {{ {FIELDS} }} }}"
)


@pytest.fixture(scope="session")
def graphql_ws_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed")
    if not (NODE_DIR / "node_modules" / "graphql-ws").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True, timeout=300
        )
    return NODE_DIR / "subscribe.mjs"


async def _users(http: httpx.AsyncClient, path: str, names: range) -> None:
    for i in names:
        response = await http.post(f"{path}/Users", json={"userName": f"node{i}@acme.test", "active": True})
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(("query", "field"), [(PLAIN, "directoryEvents"), (BATCHES, "directoryEventBatches")])
async def test_graphql_ws_client_resumes_by_cursor_and_gets_exactly_the_log(
    graphql_ws_client: Path, settings: Settings, query: str, field: str
) -> None:
    async with live_server(settings) as live:
        directory, database = live["directory"], live["database"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live['port']}", headers=directory.headers) as http:
            await _users(http, directory.path, range(10))  # in the log before the client connects
            before = 11  # + dsync.activated
            spec = {
                "url": f"ws://127.0.0.1:{live['port']}/graphql",
                "key": live["key"],
                "query": query,
                "variables": {"dir": directory.id},
                "field": field,
                "count": before + 30,
                "dropAfter": 5,
            }
            node = await asyncio.create_subprocess_exec(
                "node", str(graphql_ws_client), json.dumps(spec), cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE
            )
            assert node.stdout is not None
            try:
                async with asyncio.timeout(30):
                    assert (await node.stdout.readline()).strip() == b"resumed"
                    await _users(http, directory.path, range(10, 40))  # live, after the drop
                    received = json.loads(await node.stdout.readline())
                    assert await node.wait() == 0
            finally:
                if node.returncode is None:
                    node.kill()
        log = await database.query(
            lambda session: list(
                session.scalars(
                    select(col(models.Event.cursor))
                    .where(col(models.Event.directory_id) == directory.id)
                    .order_by(col(models.Event.cursor))
                )
            )
        )
        assert [int(cursor) for cursor in received] == log
        assert len(log) == before + 30
