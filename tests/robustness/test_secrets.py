"""Secrets are never stored, logged or echoed in clear, and rotation and revocation act on the very next request.

One realistic session against a real ``dsync serve`` (JSON logs at debug level, access log on, stdout and stderr
captured): admin commands on the CLI, an identity provider's SCIM traffic (with a password, as Okta sends one, and a
wrong token), GraphQL over HTTP and WebSocket, API keys and a directory made through GraphQL, token rotations
through GraphQL and the CLI, a key revocation. Then every secret of the session is looked for in the SQLite database
file and its WAL (only their SHA-256 hashes may be there), in the captured logs, and in every response, where only the
one-time answers that issue a secret may hold it.

An open WebSocket of a revoked key being closed at once is tested in
tests/gateway/test_websocket_protocol.py::test_revoking_a_key_closes_its_open_connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from gateway.store.credentials import hash_secret
from tests.redis_server import free_port

pytestmark = pytest.mark.slow

DSYNC = str(Path(sys.executable).with_name("dsync"))
SUBSCRIBE = "subscription($dir: ID) { directoryEvents(directoryId: $dir) { cursor event data } }"


@dataclass
class Transcript:
    """Every response of the session, and which of them may show which secret (the one they issued)."""

    responses: list[tuple[str, str]] = field(default_factory=list)  # (what was asked, headers and body)
    issued_by: dict[str, str] = field(default_factory=dict)  # what was asked -> the secret its answer issued

    def record(self, label: str, text: str) -> None:
        self.responses.append((label, text))


def _pieces(secret: str) -> list[str]:
    """The secret and every 12 characters of its random tail: a log line that elides the middle of a long value (as
    the websockets library does with frames) must not leave a recognisable piece of one either."""
    tail = secret[-16:]
    return [secret, *(tail[i : i + 12] for i in range(len(tail) - 11))]


def _leaks(secret: str, text: str) -> bool:
    return any(piece in text for piece in _pieces(secret))


def _cli(env: dict[str, str], transcript: Transcript, *args: str) -> dict[str, Any]:
    done = subprocess.run([DSYNC, *args, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    transcript.record(f"cli {' '.join(args)} (stderr)", done.stderr)
    answer: dict[str, Any] = json.loads(done.stdout)
    secret = answer.get("key") or answer.get("bearer_token")
    label = f"cli {' '.join(args)}"
    transcript.record(label, done.stdout)
    if secret:
        transcript.issued_by[label] = secret
    return answer


@asynccontextmanager
async def _serve(env: dict[str, str], port: int, log_dir: Path) -> AsyncIterator[None]:
    """``dsync serve`` with its stdout and stderr captured in ``log_dir``, until it is ready."""
    with (log_dir / "stdout").open("wb") as out, (log_dir / "stderr").open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            DSYNC, "serve", "--port", str(port), env=env, stdout=out, stderr=err
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(300):
                assert process.returncode is None, "dsync serve exited"
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("dsync serve did not become ready")
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


class Client:
    """HTTP through httpx, every answer recorded with its headers."""

    def __init__(self, http: httpx.AsyncClient, transcript: Transcript) -> None:
        self.http, self.transcript = http, transcript

    async def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        label = f"{method} {path} {kwargs.get('json', '')}"
        self.transcript.record(label, f"{response.headers}\n{response.text}")
        return response

    async def graphql(self, key: str, query: str, *, issues: str | None = None, **variables: Any) -> dict[str, Any]:
        response = await self.request("POST", "/graphql", token=key, json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if issues is not None:  # the one answer allowed to show this secret
            label, _ = self.transcript.responses[-1]
            self.transcript.issued_by[label] = _dig(body, issues)
        return body


def _dig(body: dict[str, Any], path: str) -> str:
    value: Any = body["data"]
    for part in path.split("."):
        value = value[part]
    assert isinstance(value, str)
    return value


def _error_code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


async def _idp_session(api: Client, directory_id: str, token: str, password: str) -> None:
    scim = f"/scim/v2/{directory_id}"
    assert (await api.request("GET", f"{scim}/ServiceProviderConfig", token=token)).status_code == 200
    found = await api.request("GET", f"{scim}/Users", token=token, params={"filter": 'userName eq "ada@acme.test"'})
    assert found.json()["totalResults"] == 0
    user = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada@acme.test",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@acme.test", "type": "work", "primary": True}],
        "password": password,
        "active": True,
    }
    created = await api.request("POST", f"{scim}/Users", token=token, json=user)
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    group: dict[str, Any] = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering"}
    group["members"] = [{"value": user_id}]
    assert (await api.request("POST", f"{scim}/Groups", token=token, json=group)).status_code == 201
    patch = {"Operations": [{"op": "replace", "value": {"name.givenName": "Augusta", "password": password}}]}
    assert (await api.request("PATCH", f"{scim}/Users/{user_id}", token=token, json=patch)).status_code == 200
    assert (await api.request("PUT", f"{scim}/Users/{user_id}", token=token, json=user)).status_code == 200
    assert (await api.request("GET", f"{scim}/Users/{user_id}", token=token)).status_code == 200
    second = await api.request("POST", f"{scim}/Users", token=token, json={"userName": "bob@acme.test"})
    assert (await api.request("DELETE", f"{scim}/Users/{second.json()['id']}", token=token)).status_code == 204


async def _websocket_session(port: int, key: str, directory_id: str, api: Client, token: str) -> None:
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {key}"},  # not how the protocol authenticates: must not leak
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}}))
        ack = await ws.recv()
        api.transcript.record("websocket connection_ack", str(ack))
        assert json.loads(ack)["type"] == "connection_ack"
        payload = {"query": SUBSCRIBE, "variables": {"dir": directory_id}}
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        await asyncio.sleep(0.2)  # subscribed before the write
        created = await api.request("POST", f"/scim/v2/{directory_id}/Users", token=token, json={"userName": "cy@a.t"})
        assert created.status_code == 201
        message = await asyncio.wait_for(ws.recv(), 10)
        api.transcript.record("websocket next", str(message))
        assert json.loads(message)["payload"]["data"]["directoryEvents"]["event"] == "dsync.user.created"
        await ws.send(json.dumps({"type": "complete", "id": "1"}))


async def test_no_secret_is_stored_logged_or_echoed_and_changes_act_at_once(tmp_path: Path) -> None:
    port = free_port()
    database = tmp_path / "dsync.db"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DSYNC_")}
    metrics_token = f"metrics-{secrets.token_urlsafe(24)}"
    env.update(
        DSYNC_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        DSYNC_PUBLIC_URL=f"http://127.0.0.1:{port}",
        DSYNC_LOG_FORMAT="json",
        DSYNC_LOG_LEVEL="debug",
        DSYNC_ACCESS_LOG="1",
        DSYNC_METRICS_TOKEN=metrics_token,
    )
    transcript = Transcript()
    password = f"Okta-Pa55-{secrets.token_urlsafe(12)}"
    wrong_token = f"dsync_scim_{secrets.token_urlsafe(32)}"  # well-formed, but no directory's

    admin_key = _cli(env, transcript, "api-keys", "create", "--create-database")["key"]
    organization = _cli(env, transcript, "organizations", "create", "Acme", "--domain", "acme.test")
    directory = _cli(env, transcript, "directories", "create", "--organization", organization["id"], "--name", "JC")
    first_token = directory["bearer_token"]

    async with (
        _serve(env, port, tmp_path),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        api = Client(http, transcript)
        await _idp_session(api, directory["id"], first_token, password)
        scim_users = f"/scim/v2/{directory['id']}/Users"
        assert (await api.request("GET", scim_users, token=wrong_token)).status_code == 401
        assert (await api.request("GET", scim_users, token=admin_key)).status_code == 401  # an API key is no token

        organization_key_answer = await api.graphql(
            admin_key,
            "mutation($org: ID) { createApiKey(organizationId: $org) { apiKey { id } key } }",
            issues="createApiKey.key",
            org=organization["id"],
        )
        organization_key = _dig(organization_key_answer, "createApiKey.key")
        organization_key_id = _dig(organization_key_answer, "createApiKey.apiKey.id")
        okta = await api.graphql(
            organization_key,
            'mutation($org: ID!) { createDirectory(organizationId: $org, name: "Okta", type: OKTA) '
            "{ directory { id } bearerToken } }",
            issues="createDirectory.bearerToken",
            org=organization["id"],
        )
        okta_token = _dig(okta, "createDirectory.bearerToken")
        await _idp_session(api, _dig(okta, "createDirectory.directory.id"), okta_token, password)
        listing = await api.graphql(
            organization_key,
            "query($id: ID!) { directory(id: $id) { name endpoint users(first: 10) { edges { node { email } } } } "
            "events(directoryId: $id, first: 50) { edges { node { event data } } } }",
            id=directory["id"],
        )
        assert listing["data"]["directory"]["users"]["edges"]
        await _websocket_session(port, organization_key, directory["id"], api, first_token)

        # Rotation through GraphQL: the old token is refused on the very next request.
        rotated = await api.graphql(
            admin_key,
            "mutation($id: ID!) { rotateDirectoryToken(id: $id) { bearerToken } }",
            issues="rotateDirectoryToken.bearerToken",
            id=directory["id"],
        )
        second_token = _dig(rotated, "rotateDirectoryToken.bearerToken")
        assert (await api.request("GET", scim_users, token=first_token)).status_code == 401
        assert (await api.request("GET", scim_users, token=second_token)).status_code == 200
        # Rotation through the CLI, next to the running server: the same.
        third_token = (await asyncio.to_thread(_cli, env, transcript, "directories", "rotate-token", directory["id"]))[
            "bearer_token"
        ]
        assert (await api.request("GET", scim_users, token=second_token)).status_code == 401
        assert (await api.request("GET", scim_users, token=third_token)).status_code == 200

        # Revocation: the key is refused on the very next request.
        query = "{ organizations(first: 1) { totalCount } }"
        assert "errors" not in await api.graphql(organization_key, query)
        revoked = await api.graphql(
            admin_key, "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }", id=organization_key_id
        )
        assert revoked["data"]["revokeApiKey"]["revokedAt"]
        assert _error_code(await api.graphql(organization_key, query)) == "UNAUTHENTICATED"
        assert _error_code(await api.graphql(wrong_token, query)) == "UNAUTHENTICATED"

        metrics = await api.request("GET", "/metrics", token=metrics_token)
        assert metrics.status_code == 200 and "dsync_http_requests_total" in metrics.text
        assert (await api.request("GET", "/metrics", token=admin_key)).status_code == 401
        request_id = (await api.request("GET", "/readyz")).headers["x-request-id"]

        # The WAL as the running server left it (a clean shutdown folds it into the database file).
        wal_while_running = await asyncio.to_thread(Path(f"{database}-wal").read_bytes)

    _check(
        transcript,
        database,
        wal_while_running,
        tmp_path,
        request_id=request_id,
        secrets_in_play={
            "admin API key": admin_key,
            "organization API key": organization_key,
            "first SCIM token": first_token,
            "second SCIM token": second_token,
            "third SCIM token": third_token,
            "Okta directory token": okta_token,
            "wrong SCIM token": wrong_token,
            "password sent by the IdP": password,
            "metrics token": metrics_token,
        },
        active=[admin_key, third_token, okta_token],
    )


def _check(
    transcript: Transcript,
    database: Path,
    wal_while_running: bytes,
    log_dir: Path,
    *,
    request_id: str,
    secrets_in_play: dict[str, str],
    active: list[str],
) -> None:
    stored = database.read_bytes() + wal_while_running
    for extra in ("-wal", "-shm"):
        if Path(f"{database}{extra}").exists():
            stored += Path(f"{database}{extra}").read_bytes()
    for name, secret in secrets_in_play.items():
        assert not any(piece.encode() in stored for piece in _pieces(secret)), f"the {name} is stored in clear"
    for secret in active:  # what authenticates is there, as its SHA-256 hash
        assert hash_secret(secret).encode() in stored

    stdout, stderr = (log_dir / "stdout").read_text(), (log_dir / "stderr").read_text()
    for name, secret in secrets_in_play.items():
        assert not _leaks(secret, stdout + stderr), f"the {name} is in the logs"
    records = [json.loads(line) for line in stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert stdout == ""
    access = [record for record in records if record["logger"] == "uvicorn.access"]
    http_responses = [label for label, _ in transcript.responses if not label.startswith(("cli ", "websocket "))]
    assert len(access) >= len(http_responses) and all(record.get("request_id") for record in access)
    assert any(record["request_id"] == request_id and record["path"] == "/readyz" for record in access)
    # Debug logging was really on, down to the WebSocket frames (whose connection_init was redacted).
    assert any(record["level"] == "debug" and "[redacted]" in record["message"] for record in records)

    for label, text in transcript.responses:
        allowed = transcript.issued_by.get(label)
        for name, secret in secrets_in_play.items():
            if secret != allowed:
                assert not _leaks(secret, text), f"the {name} is echoed by: {label}"
    assert len(transcript.issued_by) == 6  # 2 CLI creations + 1 CLI rotation + key, directory, rotation on GraphQL
