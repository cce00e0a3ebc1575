"""What must hold of the store after any sequence of requests, good or bad; ``check_invariants`` asserts it all
(call it when no request is in flight: it compares reads made one after another).

1. Memberships: every edge joins a user and a group that exist, all three in the same directory.
2. The event log, replayed in cursor order, gives the live state: ``created`` / ``updated`` / ``deleted`` events
   per user and group id give exactly the live rows (the last payload equal to the row, each
   ``previous_attributes`` equal to what the previous payload said), ``user_added`` / ``user_removed`` give exactly
   the membership table, and nothing happens to an id before its ``created`` or after its ``deleted``.
3. SCIM reach: every user and group row answers ``GET /Users/{id}`` (``/Groups/{id}``) with its own userName
   (displayName) and its memberships, shows up in the listing, and in filtered listings by ``id`` and by
   ``userName`` (``displayName``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.payloads import MAX_EVENT_BYTES, group_payload, user_payload
from gateway.ops import directories
from gateway.store.database import Database
from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, Event, GroupMembership
from gateway.store.serialization import dumps_bytes
from scim.protocol.filters import MAX_LENGTH

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
_IGNORED = frozenset({"updated_at", "previous_attributes"})  # updated_at moves on membership changes, silently
_NESTED = frozenset({"raw_attributes", "custom_attributes"})


@dataclass
class Store:
    """The store's rows, read in one transaction."""

    organization_of: dict[str, str]  # live directory id -> organization id
    users: dict[str, dict[str, Any]]  # id -> the payload its events carry
    groups: dict[str, dict[str, Any]]
    edges: dict[tuple[str, str], str]  # (group id, user id) -> the membership row's directory id
    events: list[Event] = field(repr=False)


def _read_store(session: Session) -> Store:
    organization_of = {d.id: d.organization_id for d in session.scalars(select(Directory))}
    users = {
        u.id: dict(user_payload(u, organization_id=organization_of.get(u.directory_id, "?")))
        for u in session.scalars(select(DirectoryUser))
    }
    groups = {
        g.id: dict(group_payload(g, organization_id=organization_of.get(g.directory_id, "?")))
        for g in session.scalars(select(DirectoryGroup))
    }
    edges = {(m.group_id, m.user_id): m.directory_id for m in session.scalars(select(GroupMembership))}
    events = list(session.scalars(select(Event).order_by(col(Event.cursor))))
    return Store(organization_of, users, groups, edges, events)


async def read_store(database: Database) -> Store:
    return await database.query(_read_store)


def check_memberships(store: Store) -> None:
    for (group_id, user_id), directory_id in store.edges.items():
        assert user_id in store.users, f"membership ({group_id}, {user_id}) points at a missing user"
        assert group_id in store.groups, f"membership ({group_id}, {user_id}) points at a missing group"
        user, group = store.users[user_id], store.groups[group_id]
        assert user["directory_id"] == group["directory_id"] == directory_id, (
            f"membership ({group_id}, {user_id}) crosses directories"
        )
    for row in (*store.users.values(), *store.groups.values()):
        assert row["directory_id"] in store.organization_of, f"{row['id']} outlived its directory"


def _compared(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in _IGNORED}


def _check_previous_attributes(name: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    previous = after.get("previous_attributes")
    assert isinstance(previous, dict), f"{name} for {after['id']} has no previous_attributes"
    for key in before.keys() | after.keys():
        if key in _IGNORED or key == "created_at":
            continue
        old, new = before.get(key), after.get(key)
        if key in _NESTED and isinstance(old, dict) and isinstance(new, dict):
            changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
            reported = previous.get(key, {})
            assert set(reported) == changed, f"{name} for {after['id']}: previous {key} keys {set(reported)}"
            assert all(reported[k] == old.get(k) for k in changed), f"{name} for {after['id']}: previous {key}"
        elif old != new:
            assert key in previous and previous[key] == old, f"{name} for {after['id']}: previous {key} is wrong"
        else:
            assert key not in previous, f"{name} for {after['id']} reports unchanged {key} as changed"


class _Replay:
    """The live state the event log describes."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"user": {}, "group": {}}
        self.gone: set[str] = set()
        self.edges: set[tuple[str, str]] = set()

    def apply(self, event: Event) -> None:
        name, data = event.event, event.data
        where = f"event {event.cursor} ({name})"
        if name == "dsync.activated":
            return
        if name == "dsync.deleted":
            for live in self.objects.values():
                for object_id in [i for i, o in live.items() if o["directory_id"] == event.directory_id]:
                    self.gone.add(live.pop(object_id)["id"])
            self.edges = {(g, u) for g, u in self.edges if g not in self.gone}
            return
        _, kind, action = name.split(".")
        if kind == "group" and action in ("user_added", "user_removed"):
            user, group = data["user"], data["group"]
            assert data["directory_id"] == event.directory_id, where
            assert user["id"] in self.objects["user"] and group["id"] in self.objects["group"], (
                f"{where}: a membership of an unknown user or group"
            )
            assert user["directory_id"] == group["directory_id"] == event.directory_id, f"{where} crosses directories"
            edge = (group["id"], user["id"])
            if action == "user_added":
                assert edge not in self.edges, f"{where}: {edge} added twice"
                self.edges.add(edge)
            else:
                assert edge in self.edges, f"{where}: {edge} removed but absent"
                self.edges.discard(edge)
            return
        live = self.objects[kind]
        object_id = data["id"]
        assert data["directory_id"] == event.directory_id, f"{where}: payload of another directory"
        assert data["organization_id"] == event.organization_id, f"{where}: payload of another organization"
        if action == "created":
            assert object_id not in live and object_id not in self.gone, f"{where}: {object_id} created twice"
            live[object_id] = data
        elif action == "updated":
            assert object_id in live, f"{where}: {object_id} updated before created or after deleted"
            _check_previous_attributes(name, live[object_id], data)
            live[object_id] = data
        elif action == "deleted":
            assert object_id in live, f"{where}: {object_id} deleted before created or twice"
            del live[object_id]
            self.gone.add(object_id)
            position = 1 if kind == "user" else 0
            self.edges = {edge for edge in self.edges if edge[position] != object_id}
        else:
            raise AssertionError(f"{where}: unknown event")


def _as_logged(logged: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The row as its last event may hold it: an event over ``MAX_EVENT_BYTES`` is stored without ``raw_attributes``
    (then ``custom_attributes``), which read ``{}``. Only a row big enough to make its event that big may differ so;
    an event holds at most a user, a group and the previous values, hence the quarter."""
    if len(dumps_bytes(row)) <= MAX_EVENT_BYTES // 4:
        return row
    trimmed: dict[str, Any] = {
        key: {} for key in ("raw_attributes", "custom_attributes") if logged.get(key) == {} and row.get(key)
    }
    return {**row, **trimmed}


def check_event_log(store: Store) -> None:
    replay = _Replay()
    cursors = [event.cursor or 0 for event in store.events]
    assert cursors == sorted(set(cursors)), "event cursors are not strictly increasing"
    for event in store.events:
        organization_id = store.organization_of.get(event.directory_id or "")
        assert organization_id in (None, event.organization_id), f"event {event.cursor} names another organization"
        replay.apply(event)
    for kind, rows in (("user", store.users), ("group", store.groups)):
        replayed = replay.objects[kind]
        assert set(replayed) == set(rows), (
            f"{kind}s: the log says {sorted(set(replayed) - set(rows))} live, "
            f"the table has {sorted(set(rows) - set(replayed))} without events"
        )
        for object_id, row in rows.items():
            expected = _as_logged(replayed[object_id], row)
            assert _compared(replayed[object_id]) == _compared(expected), (
                f"{object_id}: last event differs from the row"
            )
    assert replay.edges == set(store.edges), (
        f"memberships: log-only {sorted(replay.edges - set(store.edges))}, "
        f"table-only {sorted(set(store.edges) - replay.edges)}"
    )


# -- SCIM reach -------------------------------------------------------------------------------------------------


def _filter_batches(attribute: str, values: dict[str, str]) -> Iterator[tuple[str, set[str], bool]]:
    """``attr eq "v1" or attr eq "v2" …`` filters within the filter length limit, with the ids each should find;
    a value too long for any filter is looked up by a prefix (``sw``, the third item True: others may match too)."""
    clauses: list[str] = []
    ids: set[str] = set()
    for object_id, value in values.items():
        clause = f"{attribute} eq {json.dumps(value, ensure_ascii=False)}"
        if len(clause) > MAX_LENGTH // 2:
            yield f"{attribute} sw {json.dumps(value[:500], ensure_ascii=False)}", {object_id}, True
            continue
        if clauses and len(" or ".join([*clauses, clause])) > MAX_LENGTH:
            yield " or ".join(clauses), ids, False
            clauses, ids = [], set()
        clauses.append(clause)
        ids.add(object_id)
    if clauses:
        yield " or ".join(clauses), ids, False


class _Scim:
    def __init__(self, client: httpx.AsyncClient, directory_id: str, token: str) -> None:
        self.client, self.base = client, f"/scim/v2/{directory_id}"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(self.base + path, params=params, headers=self.headers)
        assert response.status_code == 200, f"GET {path} {params}: {response.status_code} {response.text[:500]}"
        body: dict[str, Any] = response.json()
        return body

    async def listing(self, resource: str, **params: Any) -> tuple[int, set[str]]:
        found: set[str] = set()
        start = 1
        while True:
            page = await self.get(f"/{resource}", startIndex=start, count=1000, attributes="id", **params)
            ids = {r["id"] for r in page["Resources"]}
            assert not ids & found, f"{resource} listing repeats {ids & found}"
            found |= ids
            start += len(page["Resources"])
            if not page["Resources"] or start > page["totalResults"]:
                assert page["totalResults"] == len(found), f"{resource}: totalResults {page['totalResults']}"
                return page["totalResults"], found


async def _token(database: Database, client: httpx.AsyncClient, directory_id: str, token: str | None) -> str:
    """The given token if it still opens the directory, else a fresh one (the run may have rotated it)."""
    if token is not None:
        probe = await client.get(
            f"/scim/v2/{directory_id}/ServiceProviderConfig", headers={"Authorization": f"Bearer {token}"}
        )
        if probe.status_code == 200:
            return token
    issued = await database.transaction(
        lambda session: directories.rotate_directory_token(session, directory_id=directory_id, public_url="")
    )
    return issued.bearer_token


async def check_scim_reach(client: httpx.AsyncClient, store: Store, directory_id: str, token: str) -> None:
    scim = _Scim(client, directory_id, token)
    users = {i: u for i, u in store.users.items() if u["directory_id"] == directory_id}
    groups = {i: g for i, g in store.groups.items() if g["directory_id"] == directory_id}
    groups_of: dict[str, set[str]] = defaultdict(set)
    members_of: dict[str, set[str]] = defaultdict(set)
    for group_id, user_id in store.edges:
        groups_of[user_id].add(group_id)
        members_of[group_id].add(user_id)

    assert (await scim.listing("Users"))[1] == set(users), "the Users listing differs from the table"
    assert (await scim.listing("Groups"))[1] == set(groups), "the Groups listing differs from the table"
    for user_id, user in users.items():
        body = await scim.get(f"/Users/{user_id}")
        assert body["id"] == user_id and body["userName"] == user["username"], f"GET /Users/{user_id}"
        assert {g["value"] for g in body.get("groups", [])} == groups_of[user_id], f"groups of {user_id}"
    for group_id, group in groups.items():
        body = await scim.get(f"/Groups/{group_id}")
        assert body["id"] == group_id and body["displayName"] == group["name"], f"GET /Groups/{group_id}"
        assert {m["value"] for m in body.get("members", [])} == members_of[group_id], f"members of {group_id}"

    for resource, attribute, values, exact in (
        ("Users", "id", {i: i for i in users}, True),
        ("Users", "userName", {i: u["username"] for i, u in users.items()}, True),
        ("Groups", "id", {i: i for i in groups}, True),
        # displayName is not unique: other groups may share a name.
        ("Groups", "displayName", {i: g["name"] for i, g in groups.items()}, False),
    ):
        for text, expected, prefix in _filter_batches(attribute, values):
            _total, found = await scim.listing(resource, filter=text)
            where = f"{resource}?filter={text[:200]!r}"
            if exact and not prefix:
                assert found == expected, f"{where} found {sorted(found - expected)}, missed {sorted(expected - found)}"
            else:
                assert expected <= found, f"{where} missed {sorted(expected - found)}"


async def check_invariants(
    database: Database,
    client: httpx.AsyncClient,
    *,
    tokens: dict[str, str] | None = None,
    directory_ids: Collection[str] | None = None,
) -> Store:
    """Assert every invariant above. SCIM reach is checked in ``directory_ids`` (default: every live directory),
    with the bearer tokens in ``tokens`` (a directory without a working one gets a fresh token, added to it)."""
    store = await read_store(database)
    check_memberships(store)
    check_event_log(store)
    tokens = {} if tokens is None else tokens
    for directory_id in store.organization_of if directory_ids is None else directory_ids:
        if directory_id not in store.organization_of:
            continue
        tokens[directory_id] = await _token(database, client, directory_id, tokens.get(directory_id))
        await check_scim_reach(client, store, directory_id, tokens[directory_id])
    return store
