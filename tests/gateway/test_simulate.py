"""`dsync simulate` against a real uvicorn on 127.0.0.1 serving the gateway: each provider's session lands in the
expected rows and events, and a wrong token, an unreachable endpoint or bad options fail clearly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlmodel import col

from gateway.app import create_app
from gateway.cli import main
from gateway.settings import Settings
from gateway.simulate.report import Progress
from gateway.simulate.roster import build_roster
from gateway.store.database import Database
from gateway.store.models import DirectoryGroup, DirectoryUser, GroupMembership
from tests.conftest import DirectoryFixture, make_directory, recorded_events

DSYNC = str(Path(sys.executable).with_name("dsync"))
SEED, USERS, GROUPS = 3, 6, 2
# With 6 users and 2 groups: group 0 holds users 0, 2, 4 and group 1 users 0, 1, 3, 4, 5 (users 0 and 4 are in
# both); users 0 and 5 are updated (5 also renamed), group 0 renamed, user 5 deactivated, user 0 leaves group 0 and
# user 4 is removed in the provider's way.
ROSTER = build_roster(seed=SEED, users=USERS, groups=GROUPS)
NAMES = [person.user_name for person in ROSTER.people]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Gateway:
    port: int
    database: Database

    async def directory(self, type: str) -> tuple[DirectoryFixture, str]:
        directory = await make_directory(self.database, type=type, name=type)
        return directory, f"http://127.0.0.1:{self.port}{directory.path}"


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """``app`` under a real uvicorn on 127.0.0.1, on this event loop; yields the port."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # up to 10 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    app = create_app(settings)
    async with serving(app) as port:
        yield Gateway(port=port, database=app.state.database)


async def simulate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`dsync simulate` in-process, on a thread, so the server keeps answering on this event loop."""
    code = await asyncio.to_thread(main, ["simulate", *args])
    out, err = capsys.readouterr()
    return code, out, err


async def state(database: Database, directory_id: str) -> dict[str, Any]:
    """The directory's rows, by userName and group name."""
    async with database.read() as session:
        users = {
            u.id: u
            for u in await session.scalars(select(DirectoryUser).where(col(DirectoryUser.directory_id) == directory_id))
        }
        groups = {
            g.id: g
            for g in await session.scalars(
                select(DirectoryGroup).where(col(DirectoryGroup.directory_id) == directory_id)
            )
        }
        edges = await session.execute(select(col(GroupMembership.group_id), col(GroupMembership.user_id)))
        members: dict[str, set[str]] = {g.name: set() for g in groups.values()}
        for group_id, user_id in edges:
            if group_id in groups:
                members[groups[group_id].name].add(users[user_id].user_name)
    return {
        "users": {u.user_name: u for u in users.values()},
        "inactive": {u.user_name for u in users.values() if u.state == "inactive"},
        "members": members,
    }


def names(*indexes: int) -> set[str]:
    return {NAMES[i] for i in indexes}


def check_summary(summary: dict[str, Any], provider: str) -> None:
    assert summary["ok"] is True and summary["provider"] == provider
    assert summary["failed"] == 0 and summary["failures"] == []
    assert summary["skipped"] == 0 and summary["linked"] == 0
    assert summary["requests"] == sum(r["count"] for r in summary["responses"])
    assert summary["domain"] == ROSTER.domain and summary["seed"] == SEED
    assert summary["elapsed_seconds"] > 0 and summary["requests_per_second"] > 0
    assert all(r["status"] < 300 for r in summary["responses"])


def run_args(endpoint: str, token: str, provider: str) -> list[str]:
    sizes = ["--users", str(USERS), "--groups", str(GROUPS), "--seed", str(SEED)]
    return ["--endpoint", endpoint, "--token", token, "--provider", provider, *sizes]


@pytest.mark.slow
async def test_jumpcloud_session(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    directory, endpoint = await gateway.directory("jumpcloud")
    code, out, err = await simulate(capsys, *run_args(endpoint, directory.token, "jumpcloud"), "--json")
    assert code == 0, (out, err)
    summary = json.loads(out)
    check_summary(summary, "jumpcloud")
    responses = {(r["method"], r["resource"], r["status"]): r["count"] for r in summary["responses"]}
    assert responses[("GET", "ServiceProviderConfig", 200)] == 1
    assert responses[("PATCH", "Groups", 204)] == 8 + 1 + 1  # one member per request, one removal, one rename
    assert responses[("PUT", "Users", 200)] == 2

    rows = await state(gateway.database, directory.id)
    assert set(rows["users"]) == names(0, 1, 2, 3, 5)
    assert rows["inactive"] == names(5)
    assert rows["members"] == {"Engineering Team": names(2), "Sales": names(0, 1, 3, 5)}
    ada, renamed = rows["users"][NAMES[0]], rows["users"][NAMES[5]]
    assert ada.job_title.startswith("Senior ") and ada.email == NAMES[0]
    assert ada.custom_attributes["department"] == "Engineering"
    assert renamed.last_name == ROSTER.updated(ROSTER.people[5]).last_name != ROSTER.people[5].last_name  # type: ignore[union-attr]

    log = [name for name, _ in await recorded_events(gateway.database, directory.id)]
    assert log == [
        "dsync.activated",
        *["dsync.user.created", "dsync.group.created", "dsync.user.deleted", "dsync.group.deleted"],  # Test Connection
        *["dsync.user.created"] * 6,
        *["dsync.group.created"] * 2,
        *["dsync.group.user_added"] * 8,
        *["dsync.user.updated"] * 2,
        "dsync.group.updated",
        "dsync.user.updated",  # deactivated
        "dsync.group.user_removed",
        "dsync.user.deleted",
    ]

    # The same seed again: every lookup finds its user or group and links to it, but for the renamed group, which
    # JumpCloud looks up by its old name: externalId is not unique (RFC 7643 §3.1), so it is created again, as a
    # real JumpCloud would have it. Nothing fails.
    code, out, err = await simulate(capsys, *run_args(endpoint, directory.token, "jumpcloud"), "--json")
    assert code == 0, (out, err)
    again = json.loads(out)
    assert again["failed"] == 0 and again["skipped"] == 0
    assert again["linked"] == 5 + 1  # every user but the deleted one; the group that kept its name
    statuses = {(r["method"], r["resource"], r["status"]) for r in again["responses"]}
    assert ("POST", "Groups", 201) in statuses and ("POST", "Users", 201) in statuses  # only the deleted user
    assert not any(status == 409 for _, _, status in statuses)
    rows = await state(gateway.database, directory.id)
    assert set(rows["users"]) == names(0, 1, 2, 3, 5) and len(rows["members"]) == 2
    async with gateway.database.read() as session:
        groups = await session.scalars(select(DirectoryGroup).where(col(DirectoryGroup.directory_id) == directory.id))
        # Two groups now share the renamed group's name and externalId; the other group was linked, not created.
        assert sorted(g.name for g in groups) == sorted([*rows["members"], ROSTER.renamed(ROSTER.teams[0])])


@pytest.mark.slow
async def test_okta_session_as_a_subprocess(gateway: Gateway) -> None:
    directory, endpoint = await gateway.directory("okta")
    process = await asyncio.create_subprocess_exec(
        DSYNC,
        "simulate",
        *run_args(endpoint, directory.token, "okta"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    out, err = stdout.decode(), stderr.decode()
    assert process.returncode == 0, (out, err)
    assert "Played Okta's provisioning session" in out and ", 0 failed" in out
    assert "POST    Users                      201      6" in out
    # stderr is not a terminal: one plain line per phase, no bar.
    assert err.splitlines()[0] == "test connection: done (1/26)" and "\r" not in err
    assert err.splitlines()[-1] == "removal: done (26/26)"

    rows = await state(gateway.database, directory.id)
    assert set(rows["users"]) == names(0, 1, 2, 3, 4, 5)  # Okta never deletes users
    assert rows["inactive"] == names(4, 5)
    assert rows["members"] == {"Engineering Team": names(2, 4)}  # group 1 was unpushed
    for user in rows["users"].values():
        assert "password" not in user.raw_attributes
    async with gateway.database.read() as session:
        [group] = await session.scalars(select(DirectoryGroup).where(col(DirectoryGroup.directory_id) == directory.id))
        assert group.idp_id == "Engineering Team"

    log = [name for name, _ in await recorded_events(gateway.database, directory.id)]
    assert log == [
        "dsync.activated",
        *["dsync.user.created"] * 6,
        *["dsync.group.created"] * 2,
        *["dsync.group.user_added"] * 8,
        *["dsync.user.updated"] * 2,
        "dsync.group.updated",
        "dsync.user.updated",  # deactivated
        "dsync.group.user_removed",
        "dsync.user.updated",  # unassigned: deactivated too
        "dsync.group.deleted",
    ]


@pytest.mark.slow
async def test_entra_session(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    directory, endpoint = await gateway.directory("azure")
    code, out, err = await simulate(capsys, *run_args(endpoint, directory.token, "entra"), "--json")
    assert code == 0, (out, err)
    check_summary(json.loads(out), "entra")

    rows = await state(gateway.database, directory.id)
    assert set(rows["users"]) == names(0, 1, 2, 3, 5)
    assert rows["inactive"] == names(5)
    assert rows["members"] == {"Engineering Team": names(2), "Sales": names(0, 1, 3, 5)}
    users = rows["users"]
    # Each user's manager is the first person of their department (0 for Engineering, 1 for Sales).
    assert users[NAMES[2]].custom_attributes["manager_id"] == users[NAMES[0]].id
    assert users[NAMES[3]].custom_attributes["manager_id"] == users[NAMES[1]].id
    assert "manager_id" not in users[NAMES[0]].custom_attributes
    assert users[NAMES[0]].idp_id == NAMES[0].partition("@")[0]
    assert users[NAMES[5]].display_name == ROSTER.updated(ROSTER.people[5]).display_name  # type: ignore[union-attr]

    log = [name for name, _ in await recorded_events(gateway.database, directory.id)]
    assert log == [
        "dsync.activated",
        *["dsync.user.created"] * 6,
        *["dsync.user.updated"] * 4,  # managers linked
        *["dsync.group.created"] * 2,
        *["dsync.group.user_added"] * 8,
        *["dsync.user.updated"] * 2,
        "dsync.group.updated",
        "dsync.user.updated",  # deactivated
        "dsync.group.user_removed",
        "dsync.user.updated",  # soft delete
        "dsync.user.deleted",
    ]


@pytest.mark.slow
async def test_wrong_token_and_unknown_directory(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    directory, endpoint = await gateway.directory("jumpcloud")
    code, out, err = await simulate(capsys, "--endpoint", endpoint, "--token", "dsync_scim_wrong")
    assert code == 1 and out == ""
    assert "refused the bearer token (401" in err and "Traceback" not in err and "done" not in err
    code, out, err = await simulate(capsys, "--endpoint", endpoint, "--token", "dsync_scim_wrong", "--json")
    assert code == 1 and json.loads(out)["ok"] is False and "401" in json.loads(out)["error"]

    missing = endpoint.rsplit("/", 1)[0] + "/directory_01NOTTHERE"
    code, out, err = await simulate(capsys, "--endpoint", missing, "--token", directory.token, "--provider", "okta")
    assert code == 1 and "refused the bearer token (401" in err  # an unknown directory answers like a wrong token
    assert [name for name, _ in await recorded_events(gateway.database, directory.id)] == []


@pytest.mark.slow
async def test_rate_limited_requests_are_retried(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """Answers of 429 are sent again once ``Retry-After`` has passed (1 s here), and are not failures."""
    # A slow refill: the session's 13 requests meet an empty bucket even when a loaded machine delays its start by a
    # second or two (at 15/s the bucket refilled before the first request and the test flaked under load).
    app = create_app(dataclasses.replace(settings, scim_rate_limit=4.0, scim_rate_burst=15))
    async with serving(app) as port:
        directory = await make_directory(app.state.database, type="okta")
        endpoint = f"http://127.0.0.1:{port}{directory.path}"
        # Empty the directory's bucket, so the session is limited early on and waits as Retry-After says.
        async with httpx.AsyncClient(headers=directory.headers) as http:
            for _ in range(100):
                if (await http.get(f"{endpoint}/Users", params={"count": "0"})).status_code == 429:
                    break
            else:
                pytest.fail("the rate limit never answered 429")
        args = ["--endpoint", endpoint, "--token", directory.token, "--provider", "okta", "--users", "2"]
        code, out, err = await simulate(capsys, *args, "--groups", "1", "--json")
    assert code == 0, (out, err)
    summary = json.loads(out)
    assert summary["failed"] == 0 and any(r["status"] == 429 for r in summary["responses"])
    assert sum(r["count"] for r in summary["responses"] if r["status"] != 429) == 13


@pytest.mark.slow
async def test_another_scim_server(capsys: pytest.CaptureFixture[str]) -> None:
    """python-scim's scim2-server (in memory): JumpCloud's and Okta's sessions go through; Entra's default dialect
    (a bare manager id, the ADSCIM group schema, member removal by value) is refused, and each refusal is reported
    with the server's SCIM error."""
    asgi = pytest.importorskip("scim2_server.applications.asgi")
    from scim2_server.memory import AsyncInMemoryStorage
    from scim2_server.utils import load_default_provider

    async with serving(asgi.ASGIApplication(AsyncInMemoryStorage(), load_default_provider())) as port:
        endpoint = f"http://127.0.0.1:{port}/v2"
        # Small runs, each under its own domain (one seed each): the server keeps every run in one store.
        for seed, provider in enumerate(("jumpcloud", "okta", "entra")):
            args = ["--endpoint", endpoint, "--token", "any", "--provider", provider, "--seed", str(seed)]
            code, out, err = await simulate(capsys, *args, "--users", "3", "--groups", "1")
            assert code == (1 if provider == "entra" else 0), (out, err)
            assert (", 0 failed" in out) == (provider != "entra")
    failures = out.split("Failures:\n", 1)[1].splitlines()
    assert failures and all(" -> 400 " in line and line.split(": ", 1)[1] for line in failures)
    assert any(line.startswith("  [managers] PATCH Users/") for line in failures)


async def test_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}/scim/v2/directory_x"
    code, out, err = await simulate(capsys, "--endpoint", endpoint, "--token", "t", "--json")
    assert code == 1 and "cannot reach" in err and "Traceback" not in err
    assert json.loads(out) == {
        "ok": False,
        "provider": "jumpcloud",
        "endpoint": endpoint,
        "error": json.loads(out)["error"],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "ftp://host/scim", "--token", "t"], "expected an http(s) URL"),
        (["--endpoint", "http://host/scim?x=1", "--token", "t"], "no query or fragment"),
        (["--endpoint", "http://host/scim", "--token", " "], "one non-empty word of ASCII"),
        (["--endpoint", "http://host/scim", "--token", "t", "--users", "0"], "from 1 to 100000"),
        (["--endpoint", "http://host/scim", "--token", "t", "--groups", "-1"], "from 0 to 10000"),
        (["--endpoint", "http://host/scim", "--token", "t", "--users", "ten"], "expected a whole number"),
        (["--endpoint", "http://host/scim", "--token", "t", "--provider", "onelogin"], "invalid choice"),
        (["--endpoint", "http://host/scim", "--token", "t", "--delay", "-1"], "seconds"),
    ],
)
def test_options_are_validated(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_roster_is_reproducible() -> None:
    again = build_roster(seed=SEED, users=USERS, groups=GROUPS)
    assert again == ROSTER and build_roster(seed=SEED + 1, users=USERS, groups=GROUPS).domain != ROSTER.domain
    assert len(set(NAMES)) == USERS and all(name.endswith(f"@{ROSTER.domain}") for name in NAMES)
    assert ROSTER.memberships == ((0, (0, 2, 4)), (1, (0, 1, 3, 4, 5)))
    big = build_roster(seed=1, users=500, groups=25)
    assert len({p.user_name for p in big.people}) == 500 and len({t.name for t in big.teams}) == 25


def test_progress_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(stream=stream)
    progress.start(2)
    progress.advance("users")
    progress.advance("groups")
    progress.close()
    drawn = stream.getvalue()
    assert drawn.startswith("\r[") and "2/2 groups" in drawn and "#" * 30 in drawn
    assert drawn.endswith("\r\x1b[K") and "\n" not in drawn
