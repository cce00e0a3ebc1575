"""What the dashboard's browser tests share: a real `dsync serve` in a temp dir, a SCIM client, sign-in and GraphQL
helpers, screenshots (the fixtures that use them are in conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.redis_server import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
FIRST_RUN_KEY = re.compile(r"dsync_key_[A-Za-z0-9_-]{43}")


class Gateway:
    """`dsync serve` on 127.0.0.1 against a SQLite file, as an operator starts it (no DSYNC_ADMIN_KEY)."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.database = directory / "dsync.db"
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, port: int | None = None) -> str:
        """Start (again, on ``port`` if given) and return what this start printed on stdout."""
        assert self._process is None, "already running"
        self.port = port or self.port
        self._starts += 1
        stdout = self.directory / f"stdout-{self._starts}.txt"
        env = {key: value for key, value in os.environ.items() if not key.startswith("DSYNC_")}
        env.update(DSYNC_DATABASE_URL=f"sqlite+aiosqlite:///{self.database}", DSYNC_PUBLIC_URL=self.url)
        with stdout.open("wb") as out, (self.directory / f"stderr-{self._starts}.txt").open("wb") as err:
            command = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
            self._process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"dsync serve exited: {self._stderr()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return stdout.read_text()
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"dsync serve did not start: {self._stderr()}")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _stderr(self) -> str:
        return (self.directory / f"stderr-{self._starts}.txt").read_text()[-2000:]


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


LIVE_MS = 2_000  # a change must be on the page this soon after its SCIM request returns
RESUME_MS = 15_000  # reconnecting backs off up to 5 s between attempts


class Scim:
    def __init__(self, endpoint: str, token: str) -> None:
        self.endpoint = endpoint
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *statuses: int) -> Any:
        response = self.http.request(method, f"{self.endpoint}{path}", json=body)
        assert response.status_code in (statuses or (200,)), response.text
        return response.json() if response.content else None

    def create_user(self, name: str, **extra: Any) -> str:
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"{name}@acme.com",
            "name": {"givenName": name.title(), "familyName": "Lovelace"},
            "emails": [{"value": f"{name}@acme.com", "type": "work", "primary": True}],
            "active": True,
            **extra,
        }
        return str(self.request("POST", "/Users", body, 201)["id"])

    def patch(self, path: str, *operations: dict[str, Any]) -> None:
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(operations)}
        self.request("PATCH", path, body, 200, 204)  # with or without the resource


def sign_in(page: Page, gateway: Gateway, key: str) -> None:
    page.goto(f"{gateway.url}/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Organizations", level=1)).to_be_visible()


def graphql(gateway: Gateway, key: str, query: str, **variables: Any) -> Any:
    response = httpx.post(
        f"{gateway.url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]
