"""Concurrent SCIM writes on SQLite and PostgreSQL: no lost update, no duplicate membership, no "database is
locked" or 5xx reaching a client, and an event log that replays to exactly the final state.

``tests/gateway/test_writes.py`` covers grouped commits (concurrent creates with conflicts, each member added twice);
this module attacks the same paths harder: several requests on one row, mixed PUT and PATCH, and writers spread
over many directories and two app instances sharing one database (two ``dsync serve`` processes on PostgreSQL; on
SQLite, a second writer on the same file, as the CLI is next to a running server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from gateway.app import create_app
from gateway.events.payloads import group_payload, user_payload
from gateway.ops import directories
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, GroupMembership
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory, recorded_events

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_NOT_COMPARED = {"updated_at", "previous_attributes"}

# Every request sent inside an asyncio.gather below, by test: the figure reported for issue 7.
_TALLY: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_tally() -> Iterator[None]:
    yield
    print(f"\nconcurrent SCIM operations checked: {sum(_TALLY.values())} ({_TALLY})")


def _count(request: pytest.FixtureRequest, operations: int) -> None:
    _TALLY[request.node.name] = _TALLY.get(request.node.name, 0) + operations


async def _gather(request: pytest.FixtureRequest, calls: Sequence[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """Send ``calls`` at once; none may fail on the server or mention a locked database."""
    responses = await asyncio.gather(*calls)
    _count(request, len(responses))
    for response in responses:
        assert response.status_code < 500, response.text
        assert "locked" not in response.text.lower(), response.text
    return list(responses)


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


# -- the event log replayed against the tables --------------------------------------------------------------------


@dataclass
class _Replay:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)
    updates: int = 0


def _check_previous_attributes(before: dict[str, Any], after: dict[str, Any]) -> None:
    """``previous_attributes`` names every field that changed, with the value it had in the replayed state."""
    previous = after["previous_attributes"]
    assert previous, after
    for key, old in previous.items():
        if isinstance(old, dict) and isinstance(before.get(key), dict):
            for sub, value in old.items():
                assert before[key].get(sub) == value, (key, sub, before[key], previous)
        else:
            assert before.get(key) == old, (key, before, previous)
    for key, value in after.items():
        if key not in _NOT_COMPARED and key != "created_at" and before.get(key) != value:
            assert key in previous, (key, before.get(key), value, previous)


def _replay(log: list[tuple[str, dict[str, Any]]]) -> _Replay:
    state = _Replay()
    for name, data in log:
        if name == "dsync.user.created":
            assert data["id"] not in state.users
            state.users[data["id"]] = data
        elif name == "dsync.user.updated":
            _check_previous_attributes(state.users[data["id"]], data)
            state.users[data["id"]] = data
            state.updates += 1
        elif name == "dsync.user.deleted":
            del state.users[data["id"]]
            state.edges = {(g, u) for g, u in state.edges if u != data["id"]}
        elif name == "dsync.group.created":
            assert data["id"] not in state.groups
            state.groups[data["id"]] = data
        elif name == "dsync.group.updated":
            _check_previous_attributes(state.groups[data["id"]], data)
            state.groups[data["id"]] = data
        elif name == "dsync.group.deleted":
            del state.groups[data["id"]]
            state.edges = {(g, u) for g, u in state.edges if g != data["id"]}
        elif name == "dsync.group.user_added":
            edge = (data["group"]["id"], data["user"]["id"])
            assert edge not in state.edges, f"{edge} added twice"
            state.edges.add(edge)
        elif name == "dsync.group.user_removed":
            edge = (data["group"]["id"], data["user"]["id"])
            assert edge in state.edges, f"{edge} removed while absent"
            state.edges.remove(edge)
    return state


def _comparable(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in _NOT_COMPARED}


async def assert_log_matches_state(database: Database, directory_id: str) -> _Replay:
    """Replaying the directory's events in cursor order gives exactly its users, groups and memberships."""
    replayed = _replay(await recorded_events(database, directory_id))
    async with database.read() as session:
        directory = await session.get(Directory, directory_id)
        assert directory is not None
        org = directory.organization_id
        users = (
            await session.scalars(select(DirectoryUser).where(col(DirectoryUser.directory_id) == directory_id))
        ).all()
        groups = (
            await session.scalars(select(DirectoryGroup).where(col(DirectoryGroup.directory_id) == directory_id))
        ).all()
        edges = [
            (group_id, user_id)
            for group_id, user_id in await session.execute(
                select(col(GroupMembership.group_id), col(GroupMembership.user_id)).where(
                    col(GroupMembership.directory_id) == directory_id
                )
            )
        ]
    assert {u.id: _comparable(user_payload(u, organization_id=org)) for u in users} == {
        i: _comparable(p) for i, p in replayed.users.items()
    }
    assert {g.id: _comparable(group_payload(g, organization_id=org)) for g in groups} == {
        i: _comparable(p) for i, p in replayed.groups.items()
    }
    assert len(edges) == len(set(edges)) and set(edges) == replayed.edges
    return replayed


async def _edge_counts(database: Database, group_id: str) -> tuple[int, int]:
    """Rows and distinct members of the group: equal when no membership is stored twice."""
    async with database.read() as session:
        row = (
            await session.execute(
                select(func.count(), func.count(func.distinct(col(GroupMembership.user_id)))).where(
                    col(GroupMembership.group_id) == group_id
                )
            )
        ).one()
    return int(row[0]), int(row[1])


# -- one group, many member adds ----------------------------------------------------------------------------------


async def test_member_adds_to_one_group(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    database: Database = app.state.database
    url, headers = directory.path, directory.headers
    created = await _gather(
        request,
        [client.post(f"{url}/Users", json={"userName": f"m{i}@acme.test"}, headers=headers) for i in range(51)],
    )
    assert {r.status_code for r in created} == {201}
    users = [r.json()["id"] for r in created]
    hot, singles = users[0], users[1:]
    group = (await client.post(f"{url}/Groups", json={"displayName": "All"}, headers=headers)).json()["id"]

    def add(ids: list[str]) -> Awaitable[httpx.Response]:
        body = _patch({"op": "add", "path": "members", "value": [{"value": i} for i in ids]})
        return client.patch(f"{url}/Groups/{group}", json=body, headers=headers)

    # 50 distinct users one per request, one user added by 12 requests at once, and 5 ten-member adds that
    # overlap the single ones.
    calls = [add([u]) for u in singles] + [add([hot]) for _ in range(12)]
    calls += [add(singles[k * 10 : k * 10 + 10]) for k in range(5)]
    assert {r.status_code for r in await _gather(request, calls)} == {204}

    assert await _edge_counts(database, group) == (51, 51)
    replayed = await assert_log_matches_state(database, directory.id)
    assert replayed.edges == {(group, u) for u in users}
    listed = (await client.get(f"{url}/Groups/{group}", headers=headers)).json()
    assert sorted(m["value"] for m in listed["members"]) == sorted(users)
    # Each user really joined once: one version bump each, however many requests named it.
    async with database.read() as session:
        versions = set(
            await session.scalars(select(col(DirectoryUser.version)).where(col(DirectoryUser.id).in_(users)))
        )
    assert versions == {2}

    # Removes and re-adds of the same members racing each other: whichever order they commit in, the log says it.
    racing = users[:20]
    calls = [
        client.patch(
            f"{url}/Groups/{group}",
            json=_patch({"op": "remove", "path": f'members[value eq "{u}"]'}),
            headers=headers,
        )
        for u in racing
    ] + [add([u]) for u in racing]
    assert {r.status_code for r in await _gather(request, calls)} <= {200, 204}
    total, distinct = await _edge_counts(database, group)
    assert total == distinct and 31 <= total <= 51
    await assert_log_matches_state(database, directory.id)


# -- one user, many writers ---------------------------------------------------------------------------------------

# Twenty attributes, each replaced by its own PATCH.
_PATHS = [
    "displayName",
    "nickName",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "externalId",
    "name.formatted",
    "name.familyName",
    "name.givenName",
    "name.middleName",
    "name.honorificPrefix",
    "name.honorificSuffix",
    f"{ENTERPRISE}:employeeNumber",
    f"{ENTERPRISE}:costCenter",
    f"{ENTERPRISE}:organization",
    f"{ENTERPRISE}:division",
    f"{ENTERPRISE}:department",
    'emails[type eq "work"].value',
]


def _value_at(user: dict[str, Any], path: str) -> Any:
    if path.startswith(ENTERPRISE):
        return user.get(ENTERPRISE, {}).get(path.rsplit(":", 1)[1])
    if path.startswith("emails"):
        return next(e["value"] for e in user["emails"] if e.get("type") == "work")
    if path.startswith("name."):
        return user["name"].get(path.split(".", 1)[1])
    return user.get(path)


def _new_value(path: str) -> str:
    if path.startswith("emails"):
        return "patched@acme.test"
    if path == "locale":
        return "fr-FR"
    return f"patched {path.rsplit(':', 1)[-1]}"


async def _user(client: httpx.AsyncClient, directory: DirectoryFixture) -> dict[str, Any]:
    body = {
        "userName": "ada@acme.test",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@acme.test", "type": "work", "primary": True}],
    }
    response = await client.post(f"{directory.path}/Users", json=body, headers=directory.headers)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def test_concurrent_patches_all_apply(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    user = await _user(client, directory)
    url = f"{directory.path}/Users/{user['id']}"
    calls = [
        client.patch(
            url, json=_patch({"op": "replace", "path": path, "value": _new_value(path)}), headers=directory.headers
        )
        for path in _PATHS
    ]
    assert {r.status_code for r in await _gather(request, calls)} == {200}
    final = (await client.get(url, headers=directory.headers)).json()
    lost = [path for path in _PATHS if _value_at(final, path) != _new_value(path)]
    assert lost == [], f"lost updates: {lost}"
    assert final["meta"]["version"] == f'W/"{1 + len(_PATHS)}"'
    replayed = await assert_log_matches_state(app.state.database, directory.id)
    assert replayed.updates == len(_PATHS)


def _put_body(i: int) -> dict[str, Any]:
    tag = f"v{i}"
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": "ada@acme.test",
        "externalId": f"ext-{tag}",
        "displayName": f"Ada {tag}",
        "title": f"Title {tag}",
        "name": {"givenName": f"Ada-{tag}", "familyName": f"Lovelace-{tag}"},
        "emails": [{"value": f"ada-{tag}@acme.test", "type": "work", "primary": True}],
        ENTERPRISE: {"department": f"Dept {tag}", "costCenter": f"CC {tag}"},
        "active": i % 2 == 0,
    }


def _put_view(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "externalId": user.get("externalId"),
        "displayName": user.get("displayName"),
        "title": user.get("title"),
        "name": {k: user["name"].get(k) for k in ("givenName", "familyName")},
        "emails": [e["value"] for e in user["emails"]],
        "department": user.get(ENTERPRISE, {}).get("department"),
        "costCenter": user.get(ENTERPRISE, {}).get("costCenter"),
        "active": user["active"],
    }


async def test_concurrent_puts_leave_one_body(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    user = await _user(client, directory)
    url = f"{directory.path}/Users/{user['id']}"
    bodies = [_put_body(i) for i in range(12)]
    responses = await _gather(request, [client.put(url, json=b, headers=directory.headers) for b in bodies])
    assert {r.status_code for r in responses} == {200}
    # Each response is one body, whole; so is the final state, and it is the last one the log records.
    views = [_put_view(b) for b in bodies]
    assert all(_put_view(r.json()) in views for r in responses)
    final = (await client.get(url, headers=directory.headers)).json()
    assert _put_view(final) in views
    replayed = await assert_log_matches_state(app.state.database, directory.id)
    assert replayed.updates == len(bodies)
    assert final["meta"]["version"] == f'W/"{1 + len(bodies)}"'
    assert _put_view(replayed.users[user["id"]]["raw_attributes"]) == _put_view(final)


async def test_concurrent_puts_and_patches(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    user = await _user(client, directory)
    url = f"{directory.path}/Users/{user['id']}"
    calls = [client.put(url, json=_put_body(i), headers=directory.headers) for i in range(6)]
    calls += [
        client.patch(
            url, json=_patch({"op": "replace", "path": path, "value": _new_value(path)}), headers=directory.headers
        )
        for path in _PATHS[:12]
    ]
    responses = await _gather(request, calls)
    assert {r.status_code for r in responses} == {200}
    # Every request was applied on top of the one before it: one version and one event each.
    final = (await client.get(url, headers=directory.headers)).json()
    replayed = await assert_log_matches_state(app.state.database, directory.id)
    assert final["meta"]["version"] == f'W/"{1 + replayed.updates}"'
    assert replayed.updates == len(calls)
    versions = sorted(int(r.json()["meta"]["version"][3:-1]) for r in responses)
    assert versions == list(range(2, 2 + len(calls)))


# -- many directories at once, through two app instances -----------------------------------------------------------


@pytest.fixture
async def second_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another app on the same database: a second process, as far as the store can tell."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
            yield http


async def _same_organization_directory(database: Database, organization_id: str) -> DirectoryFixture:
    issued = await database.transaction(
        lambda session: directories.create_directory(
            session, organization_id=organization_id, name="Second", type="okta", public_url=PUBLIC_URL
        )
    )
    return DirectoryFixture(
        id=issued.directory.id, organization_id=organization_id, token=issued.bearer_token, endpoint=issued.endpoint
    )


async def _workload(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, directory: DirectoryFixture, n: int
) -> dict[str, Any]:
    """One identity provider's sync, each step's requests sent at once: users, a group, then updates, membership
    changes, a rename, a replacement and a deletion all racing each other."""
    url, headers = directory.path, directory.headers
    created = await _gather(
        request,
        [client.post(f"{url}/Users", json={"userName": f"u{i}@{directory.id}.test"}, headers=headers) for i in range(n)]
        + [client.post(f"{url}/Groups", json={"displayName": f"G{k}"}, headers=headers) for k in range(2)],
    )
    assert {r.status_code for r in created} == {201}, [r.text for r in created]
    users, groups = [r.json()["id"] for r in created[:n]], [r.json()["id"] for r in created[n:]]
    doomed, kept = users[0], users[1:]
    add_all = _patch({"op": "add", "path": "members", "value": [{"value": u} for u in users]})
    calls = [
        client.patch(f"{url}/Users/{u}", json=_patch({"op": "replace", "path": "title", "value": "T"}), headers=headers)
        for u in kept
    ]
    calls += [client.patch(f"{url}/Groups/{g}", json=add_all, headers=headers) for g in groups]
    calls += [
        client.patch(
            f"{url}/Groups/{groups[0]}",
            json=_patch({"op": "replace", "path": "displayName", "value": "Renamed"}),
            headers=headers,
        ),
        client.put(
            f"{url}/Groups/{groups[1]}",
            json={"displayName": "Replaced", "members": [{"value": u} for u in kept[: n // 2]]},
            headers=headers,
        ),
        client.delete(f"{url}/Users/{doomed}", headers=headers),
    ]
    responses = await _gather(request, calls)
    assert all(r.status_code in (200, 204) for r in responses), [r.text for r in responses]
    return {"users": kept, "groups": groups}


async def test_writers_across_directories(
    request: pytest.FixtureRequest,
    client: httpx.AsyncClient,
    second_client: httpx.AsyncClient,
    app: Any,
) -> None:
    database: Database = app.state.database
    directories = [await make_directory(database, name=f"IdP {i}") for i in range(8)]
    # Two more in organizations that already have one: tenants side by side inside one organization.
    directories += [await _same_organization_directory(database, d.organization_id) for d in directories[:2]]
    clients = [client, second_client]
    n = 8
    results = await asyncio.gather(
        *(_workload(request, clients[i % 2], d, n) for i, d in enumerate(directories)),
    )
    for directory, result in zip(directories, results, strict=True):
        replayed = await assert_log_matches_state(database, directory.id)
        assert set(replayed.users) == set(result["users"])
        assert all(u["job_title"] == "T" for u in replayed.users.values())
        renamed, replaced = result["groups"]
        assert replayed.groups[renamed]["name"] == "Renamed" and replayed.groups[replaced]["name"] == "Replaced"
        assert {u for g, u in replayed.edges if g == renamed} == set(result["users"])
        # The replacement raced the add-all: either order is fine, a mix is not.
        in_replaced = {u for g, u in replayed.edges if g == replaced}
        assert in_replaced in (set(result["users"][: n // 2]), set(result["users"]))
        listing = await clients[0].get(f"{directory.path}/Users", headers=directory.headers)
        assert listing.json()["totalResults"] == n - 1
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(DirectoryUser)) == len(directories) * (n - 1)


async def test_directory_deleted_while_its_idp_writes(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, directory: DirectoryFixture, app: Any
) -> None:
    """Deleting a directory (GraphQL, CLI) while its IdP is mid-sync: each SCIM request either lands before the
    deletion or answers 401 after it (a deleted directory answers like a wrong token; 404 for a resource removed
    under a request in flight); none fails on the server or deadlocks with it."""
    database: Database = app.state.database
    url, headers = directory.path, directory.headers
    users = [
        (await client.post(f"{url}/Users", json={"userName": f"d{i}@acme.test"}, headers=headers)).json()["id"]
        for i in range(20)
    ]
    group = (await client.post(f"{url}/Groups", json={"displayName": "G"}, headers=headers)).json()["id"]
    add_all = _patch({"op": "add", "path": "members", "value": [{"value": u} for u in reversed(users)]})
    calls: list[Awaitable[httpx.Response]] = [
        client.patch(f"{url}/Users/{u}", json=_patch({"op": "replace", "path": "title", "value": "T"}), headers=headers)
        for u in users
    ]
    calls.insert(10, client.patch(f"{url}/Groups/{group}", json=add_all, headers=headers))
    calls += [client.post(f"{url}/Users", json={"userName": f"late{i}@acme.test"}, headers=headers) for i in range(10)]
    some_answered, deleted = asyncio.Event(), asyncio.Event()
    answered = 0

    async def staggered(i: int, call: Awaitable[httpx.Response]) -> httpx.Response:
        nonlocal answered
        await asyncio.sleep(i * 0.003)  # a stream of requests, so the deletion lands in the middle of it
        if i >= len(calls) - 5:
            await deleted.wait()  # and the stream goes on after it
        response = await call
        answered += 1
        if answered == 10:
            some_answered.set()
        return response

    async def delete_directory() -> httpx.Response:
        await some_answered.wait()
        await database.transaction(lambda session: directories.delete_directory(session, directory_id=directory.id))
        deleted.set()
        return httpx.Response(204)

    responses = await _gather(request, [*(staggered(i, c) for i, c in enumerate(calls)), delete_directory()])
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 201, 204, 401, 404} and 401 in statuses and 200 in statuses
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(DirectoryUser)) == 0
    log = await recorded_events(database, directory.id)
    assert log[-1][0] == "dsync.deleted"
