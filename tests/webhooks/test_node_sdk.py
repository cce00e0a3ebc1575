"""Deliveries verified by the official WorkOS Node SDK (``@workos-inc/node``'s ``webhooks.constructEvent``),
installed once by npm into tests/node (``package.json``, ``package-lock.json``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DirectoryFixture
from tests.waiting import eventually
from tests.webhook_receiver import receiving
from tests.webhooks.test_delivery import _endpoint, _log, _users

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed")
    if not (NODE_DIR / "node_modules" / "@workos-inc" / "node").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True, timeout=300
        )
    return NODE_DIR / "verify.mjs"


def _verify_with_node(script: Path, deliveries: list[dict[str, str]]) -> list[dict[str, Any]]:
    stdin = "".join(json.dumps(d) + "\n" for d in deliveries)
    done = subprocess.run(
        ["node", str(script)], input=stdin, cwd=script.parent, capture_output=True, text=True, timeout=60, check=True
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def test_deliveries_verify_with_the_official_node_sdk(
    node_sdk: Path, app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    database = app.state.database
    async with receiving() as receiver:
        issued = await _endpoint(database, receiver.url(), directory.organization_id)
        [user_id] = await _users(client, directory, 1)
        group = await client.post(
            f"{directory.path}/Groups",
            headers=directory.headers,
            json={"displayName": "Ünïcode “group” / é", "members": [{"value": user_id}]},
        )
        assert group.status_code == 201
        assert (await client.delete(f"{directory.path}/Users/{user_id}", headers=directory.headers)).status_code == 204
        log = await _log(database, directory.organization_id)
        await eventually(lambda: len(receiver.received) >= len(log), within=15)

        deliveries = [
            {"body": r.body.decode(), "signature": r.headers["workos-signature"], "secret": issued.secret}
            for r in receiver.received
        ]
        results = _verify_with_node(node_sdk, deliveries)
        assert all(r["ok"] for r in results), results
        assert [(r["id"], r["event"]) for r in results] == log
        assert {r["userEmail"] for r in results if r["event"] == "dsync.group.user_added"} == {"u0@acme.test"}
        forged = _verify_with_node(node_sdk, [{**deliveries[0], "secret": "whsec_wrong"}])
        assert forged[0]["ok"] is False and "Signature" in forged[0]["error"]
