"""SCIM requests sharing one grouped batch (SQLite and PostgreSQL alike): a request that fails (bad token, unknown
resource, failed precondition, unparsable body, uniqueness conflict) is answered alone and the others commit in the
same batch, never run again one by one (a job that raises has its batch run again once, a savepoint per job); and
what another job of the batch changed about the directory (its token, its existence, its deprovisioning policy)
holds for the very next job."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway.ops import directories
from gateway.settings import Settings
from gateway.store import batch_driver, grouped_writer
from scim.backend import auth
from tests.conftest import PUBLIC_URL, DirectoryFixture, recorded_events

pytestmark = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No background jobs of their own (webhook delivery, retention) beside the ones counted here."""
    return dataclasses.replace(settings, webhook_worker=False, event_retention_days=0)


@pytest.fixture(autouse=True)
async def _quiet_request_log(app: Any) -> None:
    """The request log writes its buffer every second as a job of its own: one landing in a counted batch would
    change its size. Stopped here (what it holds is written at shutdown)."""
    await app.state.request_log.stop()


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The size of every batch the writer runs; a batch run again job by job shows up as more batches of one."""
    sizes: list[int] = []
    original = grouped_writer.run_batch

    def counting(sessions: Any, jobs: list[Any], careful: grouped_writer.Careful, *more: Any) -> list[Any]:
        sizes.append(len(jobs))
        return original(sessions, jobs, careful, *more)

    monkeypatch.setattr(grouped_writer, "run_batch", counting)
    yield sizes


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many jobs' calls of one statement went to PostgreSQL together, each time some did (``rows_together``)."""
    runs: list[int] = []
    settle = batch_driver.AsyncpgStatements.settle

    def counted(statements: batch_driver.AsyncpgStatements) -> None:
        if statements._together is not None:
            runs.append(len(statements._together.calls))
        settle(statements)

    monkeypatch.setattr(batch_driver.AsyncpgStatements, "settle", counted)
    return runs


def _hold_the_writer(session: Session) -> None:
    """Half a second in the writer. PostgreSQL's batches run on the event loop, which a sleeping job would stop (no
    request would arrive meanwhile): there a statement waits in the database instead."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_sleep(0.5)"))
    else:
        time.sleep(0.5)


async def _in_one_batch(app: Any, calls: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run ``calls`` while the writer is busy, so that their write jobs queue up and run as one batch."""
    busy = asyncio.ensure_future(app.state.database.transaction(_hold_the_writer))
    await asyncio.sleep(0.05)
    tasks = [asyncio.ensure_future(call) for call in calls]
    await busy
    return await asyncio.gather(*tasks)


def _user(name: str) -> dict[str, Any]:
    return {"userName": name, "emails": [{"value": name, "primary": True}]}


async def test_a_bad_token_among_good_posts_leaves_the_batch_alone(
    app: Any,
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    batches: list[int],
    in_savepoints: list[object],
) -> None:
    await client.get(f"{directory.path}/Users", headers=directory.headers)  # linked before the batch
    batches.clear()
    wrong = {**directory.headers, "Authorization": "Bearer dsync_scim_wrong"}
    calls = [
        client.post(f"{directory.path}/Users", json=_user(f"u{i}@acme.test"), headers=directory.headers)
        for i in range(40)
    ]
    calls.insert(20, client.post(f"{directory.path}/Users", json=_user("intruder@acme.test"), headers=wrong))
    responses = await _in_one_batch(app, calls)
    assert [r.status_code for r in responses].count(201) == 40
    assert responses[20].status_code == 401
    assert batches == [1, 41]  # the busy job, then every request's job together, none run again
    assert in_savepoints == []  # the refusal read only: the batch was not rolled back and run again with savepoints


async def test_refusals_and_a_conflict_inside_a_batch_touch_only_their_own_request(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, batches: list[int]
) -> None:
    path, headers = directory.path, directory.headers
    taken = await client.post(f"{path}/Users", json=_user("taken@acme.test"), headers=headers)
    user_id = taken.json()["id"]
    batches.clear()
    bad_patch = {"schemas": [PATCH], "Operations": [{"op": "jump", "path": "title"}]}
    title = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "T"}]}
    failing = [
        client.post(f"{path}/Users", json=_user("TAKEN@acme.test"), headers=headers),  # 409 (case-insensitive)
        client.put(f"{path}/Users/directory_user_missing", json=_user("x@acme.test"), headers=headers),  # 404
        client.put(f"{path}/Users/{user_id}", json=_user("y@acme.test"), headers={**headers, "If-Match": 'W/"9"'}),
        client.put(f"{path}/Users/{user_id}", json={"displayName": "no userName"}, headers=headers),  # 400
        client.patch(f"{path}/Users/{user_id}", json=bad_patch, headers=headers),  # 400, read before the write
    ]
    good = [client.post(f"{path}/Users", json=_user(f"g{i}@acme.test"), headers=headers) for i in range(10)]
    responses = await _in_one_batch(
        app,
        [
            *failing[:4],
            *good[:5],
            client.patch(f"{path}/Users/{user_id}", json=title, headers=headers),
            *good[5:],
            failing[4],
        ],
    )
    statuses = [r.status_code for r in responses]
    assert statuses[:4] == [409, 404, 412, 400]
    assert statuses[4:-1] == [201] * 5 + [200] + [201] * 5
    assert statuses[-1] == 400
    assert batches == [1, 15]  # the busy job, then every write job together (the bad PATCH ends at its read)
    events = [name for name, _ in await recorded_events(app.state.database, directory.id)]
    assert events.count("dsync.user.created") == 11 and events.count("dsync.user.updated") == 1


async def test_a_rotation_deletion_or_policy_change_holds_for_the_next_job_of_the_batch(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, batches: list[int]
) -> None:
    database = app.state.database
    path, headers = directory.path, directory.headers
    user = (await client.post(f"{path}/Users", json=_user("leaver@acme.test"), headers=headers)).json()["id"]

    def rotate(session: Session) -> str:
        issued = directories.rotate_directory_token(session, directory_id=directory.id, public_url=PUBLIC_URL)
        return issued.bearer_token

    def delete_inactive(session: Session) -> None:
        directories.set_deprovision_policy(session, directory_id=directory.id, policy="delete_inactive")

    deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    batches.clear()
    before, token, policy_changed, after, deactivated = await _in_one_batch(
        app,
        [
            client.post(f"{path}/Users", json=_user("before@acme.test"), headers=headers),
            database.transaction(rotate),
            database.transaction(delete_inactive),
            client.post(f"{path}/Users", json=_user("after@acme.test"), headers=headers),
            client.patch(f"{path}/Users/{user}", json=deactivate, headers={**headers, "Authorization": "Bearer x"}),
        ],
    )
    assert before.status_code == 201 and after.status_code == 401 and deactivated.status_code == 401
    assert batches == [1, 4]  # the PATCH's read was refused before its write
    fresh = {**headers, "Authorization": f"Bearer {token}"}
    gone = await client.patch(f"{path}/Users/{user}", json=deactivate, headers=fresh)
    assert gone.status_code == 200
    assert (await client.get(f"{path}/Users/{user}", headers=fresh)).status_code == 404  # deleted by the policy

    batches.clear()
    created, _deleted, orphan = await _in_one_batch(
        app,
        [
            client.post(f"{path}/Users", json=_user("last@acme.test"), headers=fresh),
            database.transaction(lambda s: directories.delete_directory(s, directory_id=directory.id)),
            client.post(f"{path}/Users", json=_user("orphan@acme.test"), headers=fresh),
        ],
    )
    assert created.status_code == 201 and orphan.status_code == 401
    assert batches == [1, 3]


async def test_a_directory_changed_since_the_last_batch_holds_for_the_next_write(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PostgreSQL batch's jobs start from the directory as this process last locked it, and take its lock at the end
    # (``AsyncpgStatements.lock_later``): a change committed meanwhile elsewhere (here in a transaction of its own,
    # as another instance's would be) must hold all the same, the job answered from the directory as it now is.
    database = app.state.database
    path, headers = directory.path, directory.headers
    await client.get(f"{path}/Users", headers=headers)  # linked: the next write's snapshot is one to start from
    leaver = (await client.post(f"{path}/Users", json=_user("leaver@acme.test"), headers=headers)).json()["id"]

    def rotate(session: Session) -> str:
        issued = directories.rotate_directory_token(session, directory_id=directory.id, public_url=PUBLIC_URL)
        return issued.bearer_token

    fresh = {**headers, "Authorization": f"Bearer {await database.transaction(rotate)}"}
    stale = await client.post(f"{path}/Users", json=_user("stale@acme.test"), headers=headers)
    assert stale.status_code == 401
    # The old token, refused once, is not taken down the path that fails at the end again.
    deferred: list[str] = []
    lock_later = batch_driver.AsyncpgStatements.lock_later

    def counted(statements: batch_driver.AsyncpgStatements, *args: Any, **kwargs: Any) -> bool:
        taken = lock_later(statements, *args, **kwargs)
        deferred.extend([kwargs["key"]] if taken else [])
        return taken

    monkeypatch.setattr(batch_driver.AsyncpgStatements, "lock_later", counted)
    again = await client.post(f"{path}/Users", json=_user("stale@acme.test"), headers=headers)
    assert again.status_code == 401 and deferred == []
    assert (await client.post(f"{path}/Users", json=_user("new@acme.test"), headers=fresh)).status_code == 201

    await database.transaction(
        lambda s: directories.set_deprovision_policy(s, directory_id=directory.id, policy="delete_inactive")
    )
    deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    assert (await client.patch(f"{path}/Users/{leaver}", json=deactivate, headers=fresh)).status_code == 200
    assert (await client.get(f"{path}/Users/{leaver}", headers=fresh)).status_code == 404  # deleted by the policy

    await database.transaction(lambda s: directories.delete_directory(s, directory_id=directory.id))
    orphan = await client.post(f"{path}/Users", json=_user("orphan@acme.test"), headers=fresh)
    assert orphan.status_code == 401
    names = [data.get("username") for name, data in await recorded_events(database, directory.id)]
    assert "stale@acme.test" not in names and "orphan@acme.test" not in names


async def test_a_member_add_with_a_token_rotated_since_the_snapshot_adds_nothing(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    # On PostgreSQL a one-member add (the statement that reads no group first) takes the directory's lock kept for
    # later in its round trip, as its run's first execution: a token rotated since the snapshot must still refuse
    # it, adding nothing.
    database = app.state.database
    path, headers = directory.path, directory.headers
    await client.get(f"{path}/Users", headers=headers)  # linked
    user = (await client.post(f"{path}/Users", json=_user("member@acme.test"), headers=headers)).json()["id"]
    group = (await client.post(f"{path}/Groups", json={"displayName": "Team"}, headers=headers)).json()["id"]
    add = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]}

    def rotate(session: Session) -> str:
        issued = directories.rotate_directory_token(session, directory_id=directory.id, public_url=PUBLIC_URL)
        return issued.bearer_token

    fresh = {**headers, "Authorization": f"Bearer {await database.transaction(rotate)}"}
    assert (await client.patch(f"{path}/Groups/{group}", json=add, headers=headers)).status_code == 401
    read = await client.get(f"{path}/Groups/{group}", headers=fresh)
    assert read.json().get("members", []) == []
    assert (await client.patch(f"{path}/Groups/{group}", json=add, headers=fresh)).status_code in (200, 204)
    read = await client.get(f"{path}/Groups/{group}", headers=fresh)
    assert [member["value"] for member in read.json()["members"]] == [user]


async def test_the_writes_of_one_directory_in_a_batch_read_it_once(
    app: Any,
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    batches: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await client.get(f"{directory.path}/Users", headers=directory.headers)  # linked before the batch
    # Counted where it is read, whichever way the statement goes (SQLite's batches run it on the DBAPI connection).
    reads: list[str] = []
    read_directory = auth._read_directory

    def counted(session: Any, **kwargs: Any) -> Any:
        reads.append(kwargs["directory_id"])
        return read_directory(session, **kwargs)

    monkeypatch.setattr(auth, "_read_directory", counted)
    calls = [
        client.post(f"{directory.path}/Users", json=_user(f"once{i}@acme.test"), headers=directory.headers)
        for i in range(10)
    ]
    responses = await _in_one_batch(app, calls)
    assert [r.status_code for r in responses] == [201] * 10
    assert batches[-1] == 10 and len(reads) == 1


async def test_a_member_only_group_patch_is_one_write_job_without_a_read(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, headers = directory.path, directory.headers
    user = (await client.post(f"{path}/Users", json=_user("member@acme.test"), headers=headers)).json()["id"]
    group = (await client.post(f"{path}/Groups", json={"displayName": "G"}, headers=headers)).json()["id"]
    database = app.state.database
    reads: list[Any] = []
    original = database.query

    async def counting(job: Any) -> Any:
        reads.append(job)
        return await original(job)

    monkeypatch.setattr(database, "query", counting)
    add = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]}
    assert (await client.patch(f"{path}/Groups/{group}", json=add, headers=headers)).status_code == 204
    assert reads == []
    wrong = {**headers, "Authorization": "Bearer dsync_scim_wrong"}
    assert (await client.patch(f"{path}/Groups/{group}", json=add, headers=wrong)).status_code == 401
    filtered = {"schemas": [PATCH], "Operations": [{"op": "add", "path": 'members[value eq "x"]', "value": []}]}
    refused = await client.patch(f"{path}/Groups/{group}", json=filtered, headers=headers)
    assert refused.status_code == 400  # refused by the general path, after authentication
    members = (await client.get(f"{path}/Groups/{group}", headers=headers)).json()["members"]
    assert [m["value"] for m in members] == [user]


async def test_two_new_users_with_one_user_name_in_a_batch_give_one_201_and_one_409(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture, batches: list[int]
) -> None:
    """New users are inserted together at the end of a batch without savepoints: a conflict between two of them
    shows only there, and the batch run again with savepoints gives it to the later one alone."""
    await client.get(f"{directory.path}/Users", headers=directory.headers)  # linked before the batch
    batches.clear()
    calls = [
        client.post(f"{directory.path}/Users", json=_user(name), headers=directory.headers)
        for name in ("a@acme.test", "twin@acme.test", "b@acme.test", "TWIN@acme.test", "c@acme.test")
    ]
    responses = await _in_one_batch(app, calls)
    assert [r.status_code for r in responses] == [201, 201, 201, 409, 201]
    assert batches == [1, 5]
    events = [name for name, _ in await recorded_events(app.state.database, directory.id)]
    assert events.count("dsync.user.created") == 4
    listed = await client.get(f"{directory.path}/Users", headers=directory.headers)
    assert sorted(u["userName"] for u in listed.json()["Resources"]) == [
        "a@acme.test",
        "b@acme.test",
        "c@acme.test",
        "twin@acme.test",
    ]


async def test_refusals_that_only_read_leave_the_batch_running_without_savepoints(
    app: Any,
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    batches: list[int],
    in_savepoints: list[object],
) -> None:
    path, headers = directory.path, directory.headers
    user_id = (await client.post(f"{path}/Users", json=_user("kept@acme.test"), headers=headers)).json()["id"]
    batches.clear()
    responses = await _in_one_batch(
        app,
        [
            client.post(f"{path}/Users", json=_user("a@acme.test"), headers=headers),
            client.put(f"{path}/Users/directory_user_missing", json=_user("x@acme.test"), headers=headers),  # 404
            client.put(f"{path}/Users/{user_id}", json=_user("y@acme.test"), headers={**headers, "If-Match": 'W/"9"'}),
            client.delete(f"{path}/Users/directory_user_missing", headers=headers),  # 404
            client.post(f"{path}/Users", json=_user("b@acme.test"), headers=headers),
        ],
    )
    assert [r.status_code for r in responses] == [201, 404, 412, 404, 201]
    assert batches == [1, 5]
    assert in_savepoints == []  # the refusals read only: the others were not rolled back and run again
    names = {u["userName"] for u in (await client.get(f"{path}/Users", headers=headers)).json()["Resources"]}
    assert names == {"kept@acme.test", "a@acme.test", "b@acme.test"}


async def test_deletes_and_member_adds_of_one_batch_answer_and_record_in_request_order(
    app: Any,
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    batches: list[int],
    in_savepoints: list[object],
    sent: list[int],
) -> None:
    """On PostgreSQL a batch's DELETEs (and its member adds) go to the database together, one round trip for a run
    of them: each still gets its own answer, a user deleted twice or never there is a 404, an add to a group the
    run already touched waits for it, and the events come out in the requests' order, as if each had run alone."""
    path, headers = directory.path, directory.headers
    ids = [
        (await client.post(f"{path}/Users", json=_user(f"d{i}@acme.test"), headers=headers)).json()["id"]
        for i in range(5)
    ]
    groups = [
        (await client.post(f"{path}/Groups", json={"displayName": f"G{i}"}, headers=headers)).json()["id"]
        for i in range(2)
    ]

    def add(group: str, user: str) -> Any:
        body = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]}
        return client.patch(f"{path}/Groups/{group}", json=body, headers=headers)

    batches.clear()
    before = len(await recorded_events(app.state.database, directory.id))
    responses = await _in_one_batch(
        app,
        [
            client.delete(f"{path}/Users/{ids[0]}", headers=headers),
            client.delete(f"{path}/Users/{ids[1]}", headers=headers),
            client.delete(f"{path}/Users/directory_user_missing", headers=headers),
            client.delete(f"{path}/Users/{ids[0]}", headers=headers),  # the same user again: gone by then
            add(groups[0], ids[2]),
            add(groups[1], ids[2]),
            add(groups[0], ids[3]),  # the same group again
            add("directory_group_missing", ids[3]),
            add(groups[1], ids[0]),  # a user deleted earlier in the batch: nothing to add
            client.delete(f"{path}/Users/{ids[2]}", headers=headers),  # leaves the two groups it just joined
            client.delete(f"{path}/Users/{ids[4]}", headers=headers),
        ],
    )
    assert [r.status_code for r in responses] == [204, 204, 404, 404, 204, 204, 204, 404, 204, 204, 204]
    assert batches == [1, 11] and in_savepoints == []
    # A run ends where another statement or a key already in it comes.
    assert sent == ([3, 1, 2, 3, 2] if app.state.database.dialect == "postgresql" else [])
    events = (await recorded_events(app.state.database, directory.id))[before:]
    named = [(name, data.get("user", data).get("id"), data.get("group", {}).get("id")) for name, data in events]
    assert named == [
        ("dsync.user.deleted", ids[0], None),
        ("dsync.user.deleted", ids[1], None),
        ("dsync.group.user_added", ids[2], groups[0]),
        ("dsync.group.user_added", ids[2], groups[1]),
        ("dsync.group.user_added", ids[3], groups[0]),
        ("dsync.user.deleted", ids[2], None),
        ("dsync.user.deleted", ids[4], None),
    ]
    listed = await client.get(f"{path}/Users", headers=headers)
    assert [u["id"] for u in listed.json()["Resources"]] == [ids[3]]
    members = [(await client.get(f"{path}/Groups/{g}", headers=headers)).json().get("members", []) for g in groups]
    assert [[m["value"] for m in group] for group in members] == [[ids[3]], []]


async def test_puts_of_one_batch_read_together_and_keep_each_requests_answer(
    app: Any,
    client: httpx.AsyncClient,
    directory: DirectoryFixture,
    batches: list[int],
    in_savepoints: list[object],
    sent: list[int],
) -> None:
    """On PostgreSQL a batch's PUTs of users read them together (one round trip for a run): a second PUT of one
    user still starts from the first one's result, a refusal (404, 412) stays with its request, and a rename onto
    another user's userName is that request's 409 only (the batch runs again with savepoints)."""
    path, headers = directory.path, directory.headers
    ids = [
        (await client.post(f"{path}/Users", json=_user(f"p{i}@acme.test"), headers=headers)).json()["id"]
        for i in range(3)
    ]

    def put(user: str, body: dict[str, Any], **extra: str) -> Any:
        return client.put(f"{path}/Users/{user}", json=body, headers={**headers, **extra})

    batches.clear()
    before = len(await recorded_events(app.state.database, directory.id))
    responses = await _in_one_batch(
        app,
        [
            put(ids[0], {**_user("p0@acme.test"), "title": "First"}),
            put(ids[1], {**_user("p1@acme.test"), "title": "Second"}),
            put(ids[0], {**_user("p0@acme.test"), "title": "Third"}),  # after the first one's change
            put("directory_user_missing", _user("x@acme.test")),
            put(ids[2], _user("p2@acme.test"), **{"If-Match": 'W/"9"'}),
            put(ids[2], {**_user("p2@acme.test"), "title": "Fourth"}),
        ],
    )
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 412, 200]
    assert [r.json().get("title") for r in responses if r.status_code == 200] == ["First", "Second", "Third", "Fourth"]
    assert responses[2].json()["meta"]["version"] == 'W/"3"'  # created 1, first PUT 2, this one 3
    assert batches == [1, 6] and in_savepoints == []
    assert sent == ([2, 3, 1] if app.state.database.dialect == "postgresql" else [])
    events = (await recorded_events(app.state.database, directory.id))[before:]
    assert [(name, data["id"], data["previous_attributes"].get("job_title")) for name, data in events] == [
        ("dsync.user.updated", ids[0], None),
        ("dsync.user.updated", ids[1], None),
        ("dsync.user.updated", ids[0], "First"),
        ("dsync.user.updated", ids[2], None),
    ]
    batches.clear()
    responses = await _in_one_batch(
        app,
        [
            put(ids[0], {**_user("p0@acme.test"), "title": "Fifth"}),
            put(ids[1], _user("P2@acme.test")),  # another user's userName (case-insensitive)
            put(ids[2], {**_user("p2@acme.test"), "title": "Sixth"}),
        ],
    )
    assert [r.status_code for r in responses] == [200, 409, 200]
    assert responses[1].json()["scimType"] == "uniqueness"
    titles = {u["id"]: u.get("title") for u in (await client.get(f"{path}/Users", headers=headers)).json()["Resources"]}
    assert titles == {ids[0]: "Fifth", ids[1]: "Second", ids[2]: "Sixth"}
