"""Crash consistency: a real ``dsync serve`` is killed with SIGKILL in the middle of a bulk SCIM ingest, restarted
on the same database, and the store must hold exactly what the clients were told.

Several concurrent IdP clients create users, create groups with members, add and remove members and deactivate a
few users (plus requests that must fail: a duplicate userName, a rename onto another user's userName, a group PATCH
that adds a member and renames the group to a JSON number). Every request is recorded with its outcome: acknowledged
(2xx), refused with an error status, or unanswered (the kill dropped the connection). The server is killed after a
seeded number of acknowledged responses (at once, or a seeded few milliseconds later), three times per database
(SQLite file, then a fresh PostgreSQL database), and after each restart:

- every acknowledged request is there: its rows and memberships, and its events (the right names, for the right
  ids), unless a later acknowledged request on the same resource superseded it;
- nothing that failed is applied;
- an unanswered request is applied whole (rows and events) or not at all: a user row without its
  ``dsync.user.created``, a membership without its ``user_added`` or a deactivation without its ``updated`` fails;
- the shared invariants (``tests/robustness/invariants.py``) hold: memberships join live rows, the log replays to
  the tables;
- a GraphQL subscriber that was following the log before the kill resumes with its last cursor and ends up having
  seen exactly the log: every acknowledged change, in cursor order, with no duplicate.

Then the IdP retries every unanswered request as JumpCloud would (a POST of a userName that exists answers 409, so it
looks the user up by filter and PUTs it; a group it looks up by its displayName before posting it) and carries on;
no retry may answer 5xx or change anything twice.

Each client owns the groups it creates and sends its next request only after the previous answer, so requests on
one group (and on one user's state) are totally ordered, and at most one per client is unanswered at a kill.
``DSYNC_CRASH_SEED`` picks other kill points and request mixes.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from tests.conftest import make_directory
from tests.redis_server import free_port
from tests.robustness.invariants import Store, check_event_log, check_invariants, check_memberships, read_store
from tests.waiting import eventually

pytestmark = [pytest.mark.slow]

POSTGRES_URL = os.environ.get("DSYNC_TEST_POSTGRES_URL")
DSYNC = str(Path(sys.executable).with_name("dsync"))
ADMIN_KEY = "dsync_admin_crash_test_key"
SEED = int(os.environ.get("DSYNC_CRASH_SEED") or 20240607)
KILLS = 3
CLIENTS = 6
KILL_AFTER = (60, 260)  # acknowledged responses in a cycle before the SIGKILL, drawn per cycle

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SUBSCRIBE = (
    "subscription($dir: ID, $after: String) { directoryEvents(directoryId: $dir, after: $after) { cursor event data } }"
)
ADDED, REMOVED = "dsync.group.user_added", "dsync.group.user_removed"
# The changes a kind of request makes; the other kinds must fail and change nothing.
CHANGING = frozenset({"create_user", "deactivate", "create_group", "add_members", "remove_members"})

FIGURES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_figures(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if FIGURES:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        text = (
            f"crash consistency: {FIGURES['crashes']} SIGKILL crash runs survived, "
            f"{FIGURES['acknowledged']} acknowledged requests verified, {FIGURES['unknown']} unknown-outcome "
            f"requests checked ({FIGURES['unknown_applied']} found applied whole, {FIGURES['unknown_absent']} not "
            f"at all), {FIGURES['errors']} failed requests found not applied, {FIGURES['retries']} IdP retries "
            f"({FIGURES['retry_conflicts']} found already applied), {FIGURES['subscriber_events']} events "
            f"seen by resuming subscribers"
        )
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"\n{text}")


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _admin_sql(statement: str) -> None:
    assert POSTGRES_URL

    async def run() -> None:
        connection = await asyncpg.connect(_libpq(POSTGRES_URL))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def crash_database(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A fresh database for the test: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        path = tmp_path / "dsync.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if not POSTGRES_URL:
        pytest.skip("DSYNC_TEST_POSTGRES_URL is not set")
    name = f"dsync_crash_{uuid.uuid4().hex[:10]}"
    _admin_sql(f'CREATE DATABASE "{name}"')
    try:
        url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        upgrade(url)
        yield url
    finally:
        _admin_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


# -- the server ---------------------------------------------------------------------------------------------------


class _Server:
    """``dsync serve`` as a subprocess that can be SIGKILLed and started again on the same database."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.env = {
            **os.environ,
            "DSYNC_DATABASE_URL": database_url,
            "DSYNC_ADMIN_KEY": ADMIN_KEY,
            "DSYNC_PUBLIC_URL": "http://127.0.0.1",
            # The ingest runs as fast as the server goes: the rate limit has its own tests.
            "DSYNC_SCIM_RATE_LIMIT": "0",
        }
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.base = ""

    async def start(self) -> str:
        port = free_port()
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                DSYNC, "serve", "--port", str(port), env=self.env, stdout=log, stderr=log
            )
        self.base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=self.base) as http:
            for _ in range(600):  # up to 60 s on a busy machine
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return self.base
                except httpx.TransportError:
                    pass
                assert self.process.returncode is None, f"dsync serve exited: {self.log.read_text()[-2000:]}"
                await asyncio.sleep(0.1)
        raise AssertionError(f"dsync serve did not become ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def wait_killed(self) -> None:
        assert self.process is not None
        assert await asyncio.wait_for(self.process.wait(), 30) == -signal.SIGKILL

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 30)


# -- what the clients sent and were told --------------------------------------------------------------------------


@dataclass(eq=False)
class _Sent:
    seq: int
    cycle: int
    kind: str
    method: str
    path: str
    body: dict[str, Any]
    expect: int
    user: _User | None = None
    group: _Group | None = None
    delta: tuple[str, tuple[str, ...]] = ("", ())  # a membership change: (event name, user ids)
    outcome: str = "pending"  # acknowledged | error | unknown (no answer) | refused (never connected)
    status: int | None = None
    # applied | not_applied | uncertain (unanswered, until the restart shows which; the retry then applies it)
    state: str = "pending"
    observed: bool | None = None
    answer: dict[str, Any] | None = None  # the acknowledged response's body
    retried: bool = False

    def __repr__(self) -> str:
        return f"<{self.kind} #{self.seq} cycle {self.cycle} {self.method} {self.path}: {self.outcome} {self.status}>"

    @property
    def events(self) -> int:
        if self.kind in ("create_user", "deactivate"):
            return 1
        return (self.kind == "create_group") + len(self.delta[1])

    @property
    def effective(self) -> bool:
        return self.state == "applied" or (self.state == "uncertain" and bool(self.observed))


@dataclass(eq=False)
class _User:
    user_name: str
    body: dict[str, Any]
    create: _Sent | None = None
    id: str | None = None
    deactivation: _Sent | None = None


@dataclass(eq=False)
class _Group:
    name: str
    external_id: str
    body: dict[str, Any]
    create: _Sent | None = None
    id: str | None = None
    members: set[str] = field(default_factory=set)  # once every request sent on it so far is applied
    ops: list[_Sent] = field(default_factory=list)  # the requests that may change its memberships, in order


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


class _Ingest:
    """The IdP side: the requests, their outcomes, and the state they should have left."""

    def __init__(self, directory_id: str, token: str) -> None:
        self.directory_id = directory_id
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        self.sent: list[_Sent] = []
        self.users: list[_User] = []
        self.groups: list[_Group] = []
        self.owned: dict[int, list[_Group]] = defaultdict(list)
        self.active: list[_User] = []  # known users not deactivated yet
        self.known: list[_User] = []  # users whose id the IdP knows
        self.unexpected: list[str] = []
        self.cycle = 0
        self.acks = 0
        self.kill_at = 0
        self.kill_delay = 0.0
        self.killed = False
        self.server: _Server | None = None

    # -- requests ---------------------------------------------------------------------------------------------

    def _sent(self, kind: str, method: str, path: str, body: dict[str, Any], expect: int, **links: Any) -> _Sent:
        sent = _Sent(len(self.sent), self.cycle, kind, method, path, body, expect, **links)
        self.sent.append(sent)
        return sent

    def _create_user(self, client: int, rng: random.Random) -> _Sent:
        n = len(self.users)
        name = f"c{self.cycle}-w{client}-u{n}@acme.test"
        body = {
            "schemas": [USER, ENTERPRISE],
            "userName": name,
            "externalId": f"ext-u{n}",
            "name": {"givenName": f"Given{n}", "familyName": rng.choice(["Lovelace", "Hopper", "Turing"])},
            "displayName": f"User {n}",
            "emails": [{"value": name, "type": "work", "primary": True}],
            "title": rng.choice(["Engineer", "Designer", "Analyst"]),
            "active": True,
            ENTERPRISE: {"department": rng.choice(["R&D", "Sales"])},
        }
        user = _User(name, body)
        self.users.append(user)
        user.create = self._sent("create_user", "POST", "/Users", body, 201, user=user)
        return user.create

    def _create_group(self, client: int, rng: random.Random) -> _Sent:
        n = len(self.groups)
        members = tuple(u.id for u in rng.sample(self.known, min(len(self.known), rng.randint(0, 4))) if u.id)
        name, external_id = f"Group {n} of client {client}", f"ext-g{n}"
        body: dict[str, Any] = {"schemas": [GROUP], "displayName": name, "externalId": external_id}
        body["members"] = [{"value": m} for m in members]
        group = _Group(name, external_id, body, members=set(members))
        self.groups.append(group)
        self.owned[client].append(group)
        group.create = self._sent("create_group", "POST", "/Groups", body, 201, group=group, delta=(ADDED, members))
        group.ops.append(group.create)
        return group.create

    def _change_members(self, group: _Group, rng: random.Random) -> _Sent | None:
        assert group.id is not None
        outside = [u.id for u in self.known if u.id and u.id not in group.members]
        if group.members and (not outside or rng.random() < 0.35):
            ids = tuple(rng.sample(sorted(group.members), min(len(group.members), rng.randint(1, 2))))
            group.members -= set(ids)
            if len(ids) == 1 and rng.random() < 0.5:
                body = _patch({"op": "remove", "path": f'members[value eq "{ids[0]}"]'})
            else:
                body = _patch({"op": "Remove", "path": "members", "value": [{"value": i} for i in ids]})
            kind, delta = "remove_members", (REMOVED, ids)
        elif outside:
            ids = tuple(rng.sample(outside, min(len(outside), rng.randint(1, 3))))
            group.members |= set(ids)
            body = _patch({"op": "add", "path": "members", "value": [{"value": i} for i in ids]})
            kind, delta = "add_members", (ADDED, ids)
        else:
            return None
        sent = self._sent(kind, "PATCH", f"/Groups/{group.id}", body, 204, group=group, delta=delta)
        group.ops.append(sent)
        return sent

    def _deactivate(self, rng: random.Random) -> _Sent:
        user = self.active.pop(rng.randrange(len(self.active)))
        body = _patch({"op": "replace", "value": {"active": False}})
        user.deactivation = self._sent("deactivate", "PATCH", f"/Users/{user.id}", body, 200, user=user)
        return user.deactivation

    def _duplicate_user(self, rng: random.Random) -> _Sent:
        """POST of an existing userName (another case): 409, and the original untouched."""
        original = rng.choice(self.known)
        body = {**original.body, "userName": original.user_name.upper(), "externalId": f"dup-{len(self.sent)}"}
        body["name"] = {"givenName": "MustNotLand", "familyName": "Duplicate"}
        return self._sent("duplicate_user", "POST", "/Users", body, 409)

    def _rename_onto_another(self, rng: random.Random) -> _Sent:
        """A PATCH whose UPDATE hits the unique index inside the (grouped) transaction: 409, nothing written."""
        user, other = rng.sample(self.known, 2)
        body = _patch({"op": "replace", "path": "userName", "value": other.user_name.upper()})
        return self._sent("rename_conflict", "PATCH", f"/Users/{user.id}", body, 409)

    def _group_refused(self, group: _Group, rng: random.Random) -> _Sent:
        """Adds a member and renames the group to a JSON number, refused inside the (grouped) write transaction:
        400, and the member is not added. (Taking another group's externalId was the 409 here: externalId is not
        unique, RFC 7643 §3.1.)"""
        newcomer = rng.choice([u.id for u in self.known if u.id])
        body = _patch(
            {"op": "add", "path": "members", "value": [{"value": newcomer}]},
            {"op": "replace", "value": {"displayName": 404}},
        )
        sent = self._sent("group_refused", "PATCH", f"/Groups/{group.id}", body, 400, group=group)
        group.ops.append(sent)
        return sent

    def _next(self, client: int, rng: random.Random) -> _Sent:
        mine = [g for g in self.owned[client] if g.id is not None]
        roll = rng.random()
        if len(self.known) < 8 or roll < 0.42:
            return self._create_user(client, rng)
        if roll < 0.52 or not mine:
            return self._create_group(client, rng)
        if roll < 0.80:
            return self._change_members(rng.choice(mine), rng) or self._create_user(client, rng)
        if roll < 0.88 and self.active:
            return self._deactivate(rng)
        if roll < 0.92:
            return self._duplicate_user(rng)
        if roll < 0.96:
            return self._rename_onto_another(rng)
        if len([g for g in self.groups if g.id]) > 1:
            return self._group_refused(rng.choice(mine), rng)
        return self._create_user(client, rng)

    # -- sending ----------------------------------------------------------------------------------------------

    async def _send(self, http: httpx.AsyncClient, sent: _Sent) -> httpx.Response | None:
        try:
            response = await http.request(sent.method, self._url(sent.path), json=sent.body)
        except httpx.ConnectError:
            sent.outcome, sent.state = "refused", "not_applied"
            return None
        except httpx.TransportError:
            sent.outcome = "unknown"
            sent.state = "uncertain" if sent.kind in CHANGING else "not_applied"
            return None
        sent.status = response.status_code
        if response.status_code != sent.expect:
            self.unexpected.append(f"{sent!r}: {response.status_code} {response.text[:300]}")
        if response.is_success:
            sent.outcome, sent.state = "acknowledged", "applied" if sent.kind in CHANGING else "wrongly_applied"
            sent.answer = response.json() if response.content else None
            self._learn(sent, response)
        else:
            sent.outcome, sent.state = "error", "not_applied"
        return response

    def _url(self, path: str) -> str:
        return f"/scim/v2/{self.directory_id}{path}"

    def _learn(self, sent: _Sent, response: httpx.Response) -> None:
        if sent.kind == "create_user" and sent.user is not None:
            sent.user.id = response.json()["id"]
            self.known.append(sent.user)
            self.active.append(sent.user)
        elif sent.kind == "create_group" and sent.group is not None:
            sent.group.id = response.json()["id"]

    async def _client(self, client: int, base: str) -> None:
        rng = random.Random(f"{SEED}-{self.cycle}-{client}")
        async with httpx.AsyncClient(base_url=base, headers=self.headers, timeout=30) as http:
            while not self.killed:
                sent = self._next(client, rng)
                response = await self._send(http, sent)
                if response is None:
                    return
                if response.is_success:
                    self.acks += 1
                    if self.acks == self.kill_at:
                        # At once (the other clients' requests in flight) or a moment later: wherever the server
                        # then is, between reading requests, running a batch and committing it, answering.
                        if self.kill_delay:
                            asyncio.get_running_loop().call_later(self.kill_delay, self._kill)
                        else:
                            self._kill()

    def _kill(self) -> None:
        if not self.killed and self.server is not None:
            self.server.kill()
            self.killed = True

    async def run_until_killed(self, server: _Server, rng: random.Random) -> None:
        self.server, self.acks, self.killed = server, 0, False
        self.kill_at = rng.randint(*KILL_AFTER)
        self.kill_delay = rng.choice([0.0, rng.uniform(0.001, 0.03)])
        async with asyncio.timeout(120):
            await asyncio.gather(*(self._client(client, server.base) for client in range(CLIENTS)))
        await server.wait_killed()
        assert not self.unexpected, "\n".join(self.unexpected)

    # -- after the restart: the IdP retries what it got no answer for ----------------------------------------

    async def retry_unanswered(self, base: str) -> None:
        unanswered = [s for s in self.sent if s.outcome in ("unknown", "refused") and not s.retried]
        async with httpx.AsyncClient(base_url=base, headers=self.headers, timeout=30) as http:
            for sent in unanswered:
                FIGURES["retries"] += 1
                sent.retried = True
                # JumpCloud looks a group up by its displayName before it creates one: no group attribute is unique
                # (externalId is not, RFC 7643 §3.1), so a blind re-POST of an applied create would add a second.
                found = await self._look_up_group(http, sent) if sent.kind == "create_group" else None
                if found is not None:
                    FIGURES["retry_conflicts"] += 1
                    response = found
                else:
                    response = await http.request(sent.method, self._url(sent.path), json=sent.body)
                assert response.status_code < 500, f"retry of {sent!r}: {response.status_code} {response.text}"
                if sent.kind == "create_user" and response.status_code == 409:
                    FIGURES["retry_conflicts"] += 1
                    response = await self._look_up_and_update(http, sent)
                elif found is None:
                    assert response.status_code == sent.expect, f"retry of {sent!r}: {response.text}"
                if response.is_success:
                    self._learn(sent, response)
                if sent.kind in CHANGING:
                    sent.state = "applied"

    async def _look_up_and_update(self, http: httpx.AsyncClient, sent: _Sent) -> httpx.Response:
        assert sent.user is not None
        found = await http.get(self._url("/Users"), params={"filter": f'userName eq "{sent.user.user_name}"'})
        assert found.status_code == 200, found.text
        [resource] = found.json()["Resources"]
        updated = await http.put(self._url(f"/Users/{resource['id']}"), json=sent.body)
        assert updated.status_code == 200, updated.text
        return updated

    async def _look_up_group(self, http: httpx.AsyncClient, sent: _Sent) -> httpx.Response | None:
        assert sent.group is not None
        found = await http.get(self._url("/Groups"), params={"filter": f'displayName eq "{sent.group.name}"'})
        assert found.status_code == 200, found.text
        if not found.json()["Resources"]:
            return None
        [resource] = found.json()["Resources"]
        fetched = await http.get(self._url(f"/Groups/{resource['id']}"))
        assert fetched.status_code == 200, fetched.text
        return fetched


# -- checking the store against the ledger --------------------------------------------------------------------


def _settle(sent: _Sent, present: bool, what: str) -> None:
    if sent.state == "applied":
        assert present, f"acknowledged {sent!r} is not in the store ({what})"
    elif sent.state == "uncertain":
        sent.observed = present
    else:
        assert not present, f"{sent!r} (not acknowledged, must not apply) is in the store ({what})"


def _matches(actual: list[tuple[str, str]], chunks: list[tuple[str, tuple[str, ...]]]) -> bool:
    """Whether the membership events are exactly these requests' changes, request by request."""
    position = 0
    for name, ids in chunks:
        part = actual[position : position + len(ids)]
        if sorted(part) != sorted((name, i) for i in ids):
            return False
        position += len(ids)
    return position == len(actual)


def _members_after(chunks: list[tuple[str, tuple[str, ...]]]) -> set[str]:
    members: set[str] = set()
    for name, ids in chunks:
        members = members | set(ids) if name == ADDED else members - set(ids)
    return members


class _Log:
    """The directory's events, indexed the ways the checks look them up."""

    def __init__(self, store: Store, directory_id: str) -> None:
        self.events = [e for e in store.events if e.directory_id == directory_id]
        self.users = {u["username"].lower(): u for u in store.users.values() if u["directory_id"] == directory_id}
        self.groups = {g["idp_id"]: g for g in store.groups.values() if g["directory_id"] == directory_id}
        self.members: dict[str, set[str]] = defaultdict(set)
        for group_id, user_id in store.edges:
            self.members[group_id].add(user_id)
        self.names: Counter[str] = Counter(e.event for e in self.events)
        self.users_created: dict[str, list[str]] = defaultdict(list)  # lower(userName) -> ids
        self.user_updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.groups_created: dict[str, list[str]] = defaultdict(list)  # idp_id -> ids
        self.group_updates: Counter[str] = Counter()
        self.memberships: dict[str, list[tuple[str, str]]] = defaultdict(list)  # group idp_id -> (event, user id)
        for event in self.events:
            data = event.data
            if event.event == "dsync.user.created":
                self.users_created[data["username"].lower()].append(data["id"])
            elif event.event == "dsync.user.updated":
                self.user_updates[data["id"]].append(data)
            elif event.event == "dsync.group.created":
                self.groups_created[data["idp_id"]].append(data["id"])
            elif event.event == "dsync.group.updated":
                self.group_updates[data["id"]] += 1
            elif event.event in (ADDED, REMOVED):
                self.memberships[data["group"]["idp_id"]].append((event.event, data["user"]["id"]))


def _check_user(user: _User, log: _Log) -> None:
    row = log.users.get(user.user_name.lower())
    created = log.users_created.get(user.user_name.lower(), [])
    assert len(created) <= 1, f"{user.user_name}: {len(created)} dsync.user.created events"
    assert (row is None) == (not created), (
        f"{user.user_name} half applied: row {row is not None}, dsync.user.created events {len(created)}"
    )
    assert user.create is not None
    _settle(user.create, row is not None, f"user {user.user_name}")
    if row is None:
        return
    assert row["id"] == created[0] and user.id in (None, row["id"]), f"{user.user_name}: ids differ"
    given, title = user.body["name"]["givenName"], user.body["title"]
    assert (row["first_name"], row["email"], row["job_title"]) == (given, user.user_name, title), row
    if user.create.answer is not None:
        answer = user.create.answer
        assert (answer["id"], answer["userName"], answer["active"]) == (row["id"], user.user_name, True), answer
    assert row["first_name"] != "MustNotLand", f"a duplicate POST overwrote {user.user_name}"
    updates = log.user_updates.get(row["id"], [])
    inactive = row["state"] == "inactive"
    assert len(updates) == int(inactive), f"{user.user_name}: state {row['state']} with {len(updates)} updated events"
    if updates:
        assert updates[0]["state"] == "inactive" and updates[0]["previous_attributes"]["state"] == "active"
    if user.deactivation is None:
        assert not inactive, f"{user.user_name} is inactive but was never deactivated"
    else:
        _settle(user.deactivation, inactive, f"deactivation of {user.user_name}")
        deactivated = user.deactivation.answer
        assert deactivated is None or (deactivated["id"], deactivated["active"]) == (row["id"], False), deactivated


def _check_group(group: _Group, log: _Log) -> None:
    row = log.groups.get(group.external_id)
    created = log.groups_created.get(group.external_id, [])
    assert len(created) <= 1, f"{group.name}: {len(created)} dsync.group.created events"
    assert (row is None) == (not created), f"{group.name} half applied: row {row is not None}, events {len(created)}"
    assert group.create is not None
    _settle(group.create, row is not None, f"group {group.name}")
    actual = log.memberships.get(group.external_id, [])
    if row is None:
        assert not actual and len(group.ops) == 1, f"{group.name}: membership events of a group never created"
        return
    assert row["name"] == group.name and group.id in (None, row["id"]), f"{group.name}: the row differs"
    answer = group.create.answer
    if answer is not None:
        assert answer["id"] == row["id"] and answer["externalId"] == group.external_id, answer
        assert {m["value"] for m in answer.get("members", [])} == set(group.create.delta[1]), answer
    assert log.group_updates[row["id"]] == 0, f"{group.name}: dsync.group.updated nobody asked for"
    chunks: list[tuple[str, tuple[str, ...]]] = []
    uncertain: _Sent | None = None
    for sent in group.ops:
        if sent.state == "uncertain" and sent.kind != "create_group":
            assert uncertain is None, f"{group.name}: two unanswered requests on one group"
            uncertain = sent
        elif sent.state == "applied" or sent.kind == "create_group":
            chunks.append(sent.delta)
        else:
            assert uncertain is None, f"{group.name}: a request after an unanswered one"
    edges = log.members[row["id"]]
    candidates = [(chunks, False)] + ([([*chunks, uncertain.delta], True)] if uncertain is not None else [])
    for expected, applied in candidates:
        if _matches(actual, expected):
            assert edges == _members_after(expected), (
                f"{group.name}: members {sorted(edges)} disagree with its events {actual}"
            )
            if uncertain is not None:
                uncertain.observed = applied
            return
    raise AssertionError(
        f"{group.name}: membership events {actual} are not the acknowledged changes {chunks}"
        + (f" with or without the unanswered {uncertain!r} {uncertain.delta}" if uncertain else "")
    )


def check_against_ledger(ingest: _Ingest, store: Store) -> None:
    log = _Log(store, ingest.directory_id)
    assert log.names["dsync.activated"] == 1
    for user in ingest.users:
        _check_user(user, log)
    for group in ingest.groups:
        _check_group(group, log)
    assert not any(e.data.get("first_name") == "MustNotLand" for e in log.events), "a duplicate POST left an event"
    assert not [s for s in ingest.sent if s.state == "wrongly_applied"], "a request that must fail was acknowledged"
    expected = 1 + sum(s.events for s in ingest.sent if s.kind in CHANGING and s.effective)
    assert len(log.events) == expected, f"{len(log.events)} events in the log, the requests explain {expected}"
    assert len(store.users) == len({u.user_name for u in ingest.users if u.create and u.create.effective})
    check_memberships(store)
    check_event_log(store)


def _event_key(name: str, data: dict[str, Any]) -> tuple[str, ...]:
    if name in (ADDED, REMOVED):
        return (name, data["group"]["id"], data["user"]["id"])
    return (name, data.get("id", ""))


def _acknowledged_keys(ingest: _Ingest) -> Counter[tuple[str, ...]]:
    keys: Counter[tuple[str, ...]] = Counter()
    for sent in ingest.sent:
        if sent.outcome != "acknowledged" or sent.kind not in CHANGING:
            continue
        if sent.user is not None and sent.user.id is not None:
            keys[("dsync.user.created" if sent.kind == "create_user" else "dsync.user.updated", sent.user.id)] += 1
        if sent.group is not None and sent.group.id is not None:
            if sent.kind == "create_group":
                keys[("dsync.group.created", sent.group.id)] += 1
            for user_id in sent.delta[1]:
                keys[(sent.delta[0], sent.group.id, user_id)] += 1
    return keys


def _head(store: Store, directory_id: str) -> int:
    return max((e.cursor or 0 for e in store.events if e.directory_id == directory_id), default=0)


# -- the subscriber -----------------------------------------------------------------------------------------------


class _Subscriber:
    """A GraphQL subscriber that keeps what it saw and resumes after its last cursor on each new connection."""

    def __init__(self, directory_id: str) -> None:
        self.directory_id = directory_id
        self.seen: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self.dropped: BaseException | None = None

    def connect(self, base: str) -> None:
        after = self.seen[-1]["cursor"] if self.seen else "0"
        self.task = asyncio.create_task(self._follow(base, after))

    async def _follow(self, base: str, after: str) -> None:
        transport = WebsocketsTransport(
            url=base.replace("http://", "ws://") + "/graphql",
            init_payload={"authorization": f"Bearer {ADMIN_KEY}"},
            subprotocols=["graphql-transport-ws"],
        )
        try:
            async with Client(transport=transport) as session:
                request = GraphQLRequest(SUBSCRIBE, variable_values={"dir": self.directory_id, "after": after})
                async for result in session.subscribe(request):
                    self.seen.append(result["directoryEvents"])
        except TransportQueryError as exc:  # the server refused the subscription: a real failure
            self.failure = exc
        except Exception as exc:  # the kill dropped the connection: the next one resumes after the last cursor
            self.dropped = exc

    async def caught_up(self, store: Store) -> None:
        head = _head(store, self.directory_id)
        await eventually(lambda: self._done() or self._last() >= head, within=30)
        assert self._last() >= head, f"the subscription ended at {self._last()} before {head}: {self.dropped!r}"
        assert self.failure is None, f"the subscription failed: {self.failure!r}"

    def _done(self) -> bool:
        return self.task is None or self.task.done()

    def _last(self) -> int:
        return int(self.seen[-1]["cursor"]) if self.seen else 0

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def check(self, store: Store, ingest: _Ingest) -> None:
        cursors = [int(e["cursor"]) for e in self.seen]
        assert cursors == sorted(set(cursors)), "the subscriber saw events out of order or twice"
        head = _head(store, self.directory_id)
        log = [(e.cursor, e.event) for e in store.events if e.directory_id == self.directory_id]
        upto = [e for e in self.seen if int(e["cursor"]) <= head]
        assert [(int(e["cursor"]), e["event"]) for e in upto] == log, "the subscriber's events differ from the log"
        seen = Counter(_event_key(e["event"], e["data"]) for e in upto)
        missing = _acknowledged_keys(ingest) - seen
        assert not missing, f"acknowledged changes the subscriber never saw: {list(missing)[:10]}"


# -- the test -----------------------------------------------------------------------------------------------------


@pytest.fixture
async def local_database(crash_database: str) -> AsyncIterator[Database]:
    database = Database(Settings(database_url=crash_database))
    yield database
    await database.dispose()


async def _after_restart(server: _Server, ingest: _Ingest, subscriber: _Subscriber, database: Database) -> str:
    """Start the server again on the killed one's database and check everything against the ledger."""
    base = await server.start()
    subscriber.connect(base)
    store = await read_store(database)
    check_against_ledger(ingest, store)
    await subscriber.caught_up(store)
    subscriber.check(store, ingest)
    return base


async def test_sigkill_mid_ingest_keeps_every_acknowledged_change(
    local_database: Database, crash_database: str, tmp_path: Path
) -> None:
    database = local_database
    directory = await make_directory(database)
    ingest = _Ingest(directory.id, directory.token)
    subscriber = _Subscriber(directory.id)
    server = _Server(crash_database, tmp_path / "dsync-serve.log")
    rng = random.Random(SEED)
    try:
        base = await server.start()
        subscriber.connect(base)
        for _cycle in range(KILLS):
            await ingest.run_until_killed(server, rng)
            await subscriber.close()
            base = await _after_restart(server, ingest, subscriber, database)
            FIGURES["crashes"] += 1
            await ingest.retry_unanswered(base)
            check_against_ledger(ingest, await read_store(database))
            ingest.cycle += 1
        async with httpx.AsyncClient(base_url=base) as http:
            store = await check_invariants(database, http, tokens={directory.id: directory.token})
        check_against_ledger(ingest, store)
        await subscriber.caught_up(store)
        subscriber.check(store, ingest)
    finally:
        await subscriber.close()
        await server.stop()
    unanswered = [s for s in ingest.sent if s.outcome == "unknown"]
    FIGURES["acknowledged"] += sum(s.outcome == "acknowledged" for s in ingest.sent)
    FIGURES["unknown"] += len(unanswered)
    FIGURES["unknown_applied"] += sum(s.observed is True for s in unanswered)
    FIGURES["unknown_absent"] += sum(s.observed is False for s in unanswered)
    FIGURES["errors"] += sum(s.outcome == "error" for s in ingest.sent)
    FIGURES["subscriber_events"] += len(subscriber.seen)
