"""Runs python-scim's scim2-tester conformance checks against a real ``dsync serve`` process.

The server is started as a subprocess on a free port of 127.0.0.1 with its own SQLite file, an organization and a
directory are created with the ``dsync`` CLI beforehand, and every check scim2-tester offers is run against the
directory's SCIM endpoint (discovery, CRUD, PATCH, query attributes, misc), including those that create, modify and
delete resources.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from scim2_client import BaseSyncSCIMClient
from scim2_client.errors import RequestNetworkException
from scim2_tester import CheckResult, Status, check_server

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 10.0
FAILING_STATUSES = {Status.ERROR, Status.CRITICAL}


@dataclass(frozen=True)
class LiveDirectory:
    base_url: str
    endpoint: str
    bearer_token: str


class HttpxSyncSCIMClient(BaseSyncSCIMClient):
    """A scim2-client sync engine over a plain ``httpx.Client``.

    scim2-client's bundled network engine imports ``httpx2``, which is not one of the project's dependencies, so this
    test talks to the server through the ``httpx`` the test extra already installs. The base client does all the SCIM
    work; an engine only sends the request and tells whether an endpoint stays under the base URL.
    """

    def __init__(self, client: httpx.Client, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base = self.client.base_url
        try:
            url = self.client.build_request("GET", endpoint).url
        except httpx.InvalidURL:
            return False
        # httpx keeps a trailing slash on the base path, so a prefix check cannot match a sibling path.
        return url.scheme == base.scheme and url.netloc == base.netloc and url.raw_path.startswith(base.raw_path)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.RequestError as exc:
            error = RequestNetworkException()
            error.add_note(str(exc))
            raise error from exc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _dsync(env: dict[str, str], *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, f"dsync {' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr}"
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)


@pytest.fixture
def live_directory(tmp_path: Path) -> Iterator[LiveDirectory]:
    """A ``dsync serve`` subprocess on a free port with a fresh SQLite database, and one JumpCloud directory in it."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DSYNC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'dsync.db'}",
        "DSYNC_PUBLIC_URL": base_url,
        "PYTHONUNBUFFERED": "1",
        # scim2-tester does not retry a 429, and on a fast server its ~500 requests come faster than the default
        # burst of 400: the limit has tests of its own (tests/scim/test_rate_limit.py).
        "DSYNC_SCIM_RATE_LIMIT": "0",
    }
    # The CLI migrates the embedded database itself, so the directory can be created before the server starts; a new
    # database must be asked for (--create-database).
    organization = _dsync(env, "organizations", "create", "Acme", "--create-database")
    directory = _dsync(
        env, "directories", "create", "--organization", organization["id"], "--name", "JC", "--type", "jumpcloud"
    )

    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"dsync serve exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"dsync serve not healthy after {STARTUP_TIMEOUT_S}s:\n{log_path.read_text(errors='replace')}"
                )
            time.sleep(0.1)

        yield LiveDirectory(base_url=base_url, endpoint=directory["endpoint"], bearer_token=directory["bearer_token"])
    finally:
        _stop(process)


def _describe(result: CheckResult) -> str:
    where = f"[{result.resource_type}] " if result.resource_type else ""
    data = f"\n      data: {result.data!r}"[:1200] if result.data is not None else ""
    return f"  - {where}{result.title}: {result.status.name}: {result.reason}{data}"


def test_scim2_tester_checks(live_directory: LiveDirectory) -> None:
    headers = {"Authorization": f"Bearer {live_directory.bearer_token}"}
    with httpx.Client(base_url=live_directory.endpoint, headers=headers, timeout=10.0) as http:
        scim = HttpxSyncSCIMClient(http)
        # check_server queries /ServiceProviderConfig, /ResourceTypes and /Schemas itself and registers what they
        # publish on the client, then runs every resource check; no tag filter, so all checks run.
        results = check_server(scim)

    by_status = dict(Counter(result.status.name for result in results))
    print(f"\nscim2-tester: {len(results)} checks, {by_status}")

    failing = [result for result in results if result.status in FAILING_STATUSES]
    report = f"{len(failing)} scim2-tester check(s) failed:\n" + "\n".join(map(_describe, failing))
    # The resource checks only run once the discovery endpoints described the server.
    assert {result.resource_type for result in results} >= {"User", "Group"}, f"no resource checks ran; {report}"
    assert not failing, report
