"""GraphQL read benchmark: the admin dashboard's queries on a 100,000-user directory, against a hand-written floor.

Run with the project's venv, e.g. ``.venv/bin/python bench/graphql_queries.py`` (``--users 10000`` for a quick run);
``--help`` lists the options and bench/README.md explains what is measured. This is a benchmark that prints figures,
not a test: it asserts nothing about absolute times.

1. Seeds a fresh SQLite database (temp dir, ``dsync migrate`` first) with one organization, one directory, N users
   and G groups with memberships: the organization, directory and admin API key through ``gateway.ops``, the users
   and groups as bulk Core inserts into the real tables, their columns derived by the store's own SCIM code
   (``normalize_resource`` + ``user_columns`` / ``group_columns``) from JumpCloud-shaped bodies.
2. Starts ``dsync serve`` on a free 127.0.0.1 port against it, and a "floor": a bare Starlette app under uvicorn (this
   script with ``--serve-floor``) whose one route answers the same pages with hand-written SQL (stdlib ``sqlite3`` on
   a thread), in exactly the JSON the GraphQL API returns (checked before measuring).
3. Measures p50/p99 latency of each page, sequentially over one keep-alive ``http.client`` connection per server,
   GraphQL and floor alternated (A B, then B A) request by request, after a warm-up.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import harness

EMAIL_DOMAIN = "acme.example"
PAGE_SIZE = 50
BATCH_ROWS = 5000  # rows per executemany while seeding

FIRST_NAMES = [
    "Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Edsger", "Radia", "Donald",
    "John", "Katherine", "Tim", "Vint", "Shafi", "Leslie", "Niklaus", "Guido", "Bjarne", "Hedy", "Annie", "Jean",
    "Sophie", "Adele", "Claude", "Marvin", "Judea", "Yukihiro", "Anita", "Carol", "Whitfield", "Robert", "Ivan",
    "Butler", "Fran", "Martin", "Mary", "Evelyn", "Joan", "Lynn", "Ruth", "Tony", "Peter", "Rasmus", "James", "Amir",
]  # fmt: skip
LAST_NAMES = [
    "Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen", "Dijkstra",
    "Perlman", "Knuth", "McCarthy", "Johnson", "Berners-Lee", "Cerf", "Goldwasser", "Lamport", "Wirth", "van Rossum",
    "Stroustrup", "Lamarr", "Easley", "Bartik", "Wilson", "Goldberg", "Shannon", "Minsky", "Pearl", "Matsumoto",
    "Borg", "Shaw", "Diffie", "Kahn", "Sutherland", "Lampson", "Fowler", "Keller", "Boyd", "Clarke", "Conway",
    "Hoare", "Naur", "Lerdorf", "Gosling", "Pnueli", "Rivest", "Shamir", "Adleman", "Hellman", "Backus", "Kay",
]  # fmt: skip
DEPARTMENTS = ["Engineering", "Sales", "Support", "Finance", "Marketing", "People", "Legal", "Operations", "Product"]
TITLES = ["Engineer", "Account Executive", "Support Specialist", "Analyst", "Manager", "Designer", "Counsel", "Lead"]
TEAMS = ["Platform", "Payments", "Identity", "Growth", "EMEA", "APAC", "Americas", "Enterprise", "Core", "Mobile"]
CITIES = [
    ("Denver", "CO", "80202"), ("Boulder", "CO", "80301"), ("Austin", "TX", "78701"), ("Seattle", "WA", "98101"),
    ("New York", "NY", "10001"), ("Chicago", "IL", "60601"), ("Portland", "OR", "97201"), ("Boston", "MA", "02108"),
]  # fmt: skip
POOLS = harness.NamePools(FIRST_NAMES, LAST_NAMES, DEPARTMENTS, TITLES, CITIES)

USER_FIELDS = "id userName email firstName lastName displayName state groups { id name }"
DASHBOARD_QUERY = (
    "query Dashboard($id: ID!, $first: Int!) { directory(id: $id) { id name userCount activeUserCount "
    "inactiveUserCount groupCount users(first: $first) { edges { cursor node { " + USER_FIELDS + " } } "
    "pageInfo { endCursor hasNextPage } } } }"
)
USERS_QUERY = (
    "query Users($id: ID!, $first: Int!, $after: String, $search: String) { directory(id: $id) { "
    "users(first: $first, after: $after, search: $search) { edges { cursor node { " + USER_FIELDS + " } } "
    "pageInfo { endCursor hasNextPage } } } }"
)


# --------------------------------------------------------------------------------------------------------------------
# Small helpers


def cursor_of(key: str) -> str:
    """The API's cursor format (base64url of ``k:<id>`` without padding), written out for the floor."""
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode().rstrip("=")


def key_of(cursor: str) -> str:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    if not raw.startswith("k:"):
        raise ValueError(f"invalid cursor {cursor!r}")
    return raw[2:]


def like_pattern(term: str) -> str:
    escaped = term.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# --------------------------------------------------------------------------------------------------------------------
# Seeding


@dataclass
class Seeded:
    organization_id: str
    directory_id: str
    api_key: str
    users: int
    groups: int
    memberships: int
    inactive: int
    seconds: float
    db_bytes: int
    deep_position: int = 0  # 1-based position (by id) of the user whose cursor starts the deep page
    deep_cursor: str = ""
    common_term: str = ""
    common_matches: int = 0
    rare_term: str = ""
    rare_matches: int = 0


def user_body(i: int, rng: random.Random) -> dict[str, Any]:
    """A JumpCloud-shaped SCIM user (core + enterprise extension); about 5% are inactive."""
    body = harness.jumpcloud_user(
        i,
        rng,
        POOLS,
        user_name=lambda given, family: f"{given.lower()}.{family.lower().replace(' ', '')}{i}@{EMAIL_DOMAIN}",
        external_id=lambda: f"{rng.getrandbits(96):024x}",
        inactive_share=0.05,
        enterprise_extra=lambda: {"costCenter": f"CC-{rng.randrange(100, 1000)}"},
    )
    if rng.random() < 0.3:
        given = body["name"]["givenName"]
        body["emails"].append({"value": f"{given.lower()}{i}@personal.example", "type": "home"})
    return body


def group_name(g: int) -> str:
    return f"{DEPARTMENTS[g % len(DEPARTMENTS)]} {TEAMS[(g // len(DEPARTMENTS)) % len(TEAMS)]} {g + 1:04d}"


def seed_database(db: Path, *, users: int, groups: int, seed: int, public_url: str) -> Seeded:
    """Fill the migrated database at ``db``: one organization, one directory, users, groups, memberships, a key."""
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.orm import Session
    from ulid import ULID

    from gateway.ops import api_keys, directories, organizations
    from gateway.store.models import DirectoryGroup, DirectoryType, DirectoryUser, GroupMembership
    from gateway.store.serialization import dumps, loads
    from scim.backend.columns import group_columns, user_columns
    from scim.protocol.normalize import normalize_resource

    t0 = time.perf_counter()
    rng = random.Random(seed)
    engine = create_engine(f"sqlite+pysqlite:///{db}", json_serializer=dumps, json_deserializer=loads)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=OFF")  # a throw-away benchmark database: durability buys nothing here
        cursor.execute("PRAGMA cache_size=-262144")  # 256 MiB: index inserts stay in memory
        cursor.close()

    try:
        with Session(engine) as session:
            organization = organizations.create_organization(session, name="Acme Corp", domains=[EMAIL_DOMAIN])
            issued = directories.create_directory(
                session, organization_id=organization.id, name="Acme JumpCloud", type="jumpcloud", public_url=public_url
            )
            key = api_keys.create_api_key(session)  # admin key: sees every organization
            session.commit()
            organization_id, directory_id, api_key = organization.id, issued.directory.id, key.key

        # Users joined over the last two years, so ids (ULIDs: time first) sort like creation times, as in real life.
        now = datetime.now(UTC)
        start = now - timedelta(days=730)
        step = timedelta(days=729) / max(users, 1)
        group_rows: list[dict[str, Any]] = []
        group_created: list[datetime] = []
        for g in range(groups):
            created = start + timedelta(minutes=g)
            raw = normalize_resource(
                {
                    "schemas": [harness.GROUP_URN],
                    "displayName": group_name(g),
                    "externalId": f"{rng.getrandbits(96):024x}",
                },
                resource="Group",
            )
            group_rows.append(
                {
                    "id": f"directory_group_{ULID.from_datetime(created)}",
                    "directory_id": directory_id,
                    "created_at": created,
                    "updated_at": created,
                    "version": 1,
                    **group_columns(raw, directory_type=DirectoryType.JUMPCLOUD.value),
                }
            )
            group_created.append(created)
        group_ids = [row["id"] for row in group_rows]
        # Group sizes are skewed like a real directory's: a few large groups, many small ones.
        weights = [1.0 / (1 + g) ** 0.6 for g in range(groups)]
        cumulative = list(_accumulate(weights))

        inactive = 0
        memberships = 0
        insert_users = DirectoryUser.__table__.insert()  # type: ignore[attr-defined]
        insert_groups = DirectoryGroup.__table__.insert()  # type: ignore[attr-defined]
        insert_memberships = GroupMembership.__table__.insert()  # type: ignore[attr-defined]
        with engine.begin() as conn:
            if group_rows:
                conn.execute(insert_groups, group_rows)
            user_batch: list[dict[str, Any]] = []
            member_batch: list[dict[str, Any]] = []
            for i in range(users):
                created = start + step * i + timedelta(milliseconds=rng.randrange(1000))
                updated = created + (now - created) * rng.random() * rng.random()
                row = {
                    "id": f"directory_user_{ULID.from_datetime(created)}",
                    "directory_id": directory_id,
                    "created_at": created,
                    "updated_at": updated,
                    "version": 1 if updated == created else 1 + rng.randrange(1, 4),
                    **user_columns(normalize_resource(user_body(i, rng), resource="User")),
                }
                inactive += row["state"] == "inactive"
                user_batch.append(row)
                if groups:
                    count = min(groups, rng.choice((1, 1, 2, 2, 2, 3)))
                    chosen: set[int] = set()
                    while len(chosen) < count:
                        chosen.add(_pick(cumulative, rng))
                    for g in chosen:
                        member_batch.append(
                            {
                                "group_id": group_ids[g],
                                "user_id": row["id"],
                                "directory_id": directory_id,
                                "display": None,
                                "created_at": max(created, group_created[g]),
                            }
                        )
                if len(user_batch) >= BATCH_ROWS:
                    conn.execute(insert_users, user_batch)
                    user_batch.clear()
                if len(member_batch) >= BATCH_ROWS:
                    conn.execute(insert_memberships, member_batch)
                    memberships += len(member_batch)
                    member_batch.clear()
            if user_batch:
                conn.execute(insert_users, user_batch)
            if member_batch:
                conn.execute(insert_memberships, member_batch)
                memberships += len(member_batch)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            # A surname and one user's exact userName: a common and a one-hit search term.
            common_term = LAST_NAMES[1].lower()
            rare_term = f"{FIRST_NAMES[0].lower()}.{LAST_NAMES[0].lower()}"  # replaced below by a real user's name
            mid = conn.execute(
                text("SELECT user_name FROM directory_users WHERE directory_id = :d ORDER BY id LIMIT 1 OFFSET :o"),
                {"d": directory_id, "o": max(0, users // 2 - 1)},
            ).scalar()
            if mid is not None:
                rare_term = str(mid)
        seconds = time.perf_counter() - t0
    finally:
        engine.dispose()
    db_bytes = sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())
    return Seeded(
        organization_id=organization_id,
        directory_id=directory_id,
        api_key=api_key,
        users=users,
        groups=groups,
        memberships=memberships,
        inactive=inactive,
        seconds=seconds,
        db_bytes=db_bytes,
        common_term=common_term,
        rare_term=rare_term,
    )


def _accumulate(values: Sequence[float]) -> list[float]:
    total = 0.0
    out = []
    for v in values:
        total += v
        out.append(total)
    return out


def _pick(cumulative: Sequence[float], rng: random.Random) -> int:
    import bisect

    return min(bisect.bisect_left(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def describe_data(db: Path, seeded: Seeded, deep_fraction: float) -> None:
    """The deep page's cursor (keyset: the id of the user at that position) and the search terms' hit counts."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        position = max(1, min(seeded.users, round(seeded.users * deep_fraction)))
        row = conn.execute(
            "SELECT id FROM directory_users WHERE directory_id = ? ORDER BY id LIMIT 1 OFFSET ?",
            (seeded.directory_id, position - 1),
        ).fetchone()
        if row is None:
            raise RuntimeError("the directory has no users: nothing to page through")
        seeded.deep_position, seeded.deep_cursor = position, cursor_of(str(row[0]))
        for attr, term in (("common_matches", seeded.common_term), ("rare_matches", seeded.rare_term)):
            pattern = like_pattern(term)
            (count,) = conn.execute(
                f"SELECT count(*) FROM directory_users WHERE directory_id = ? AND ({FLOOR_SEARCH_SQL})",
                (seeded.directory_id, *([pattern] * 5)),
            ).fetchone()
            setattr(seeded, attr, int(count))
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------------------------
# The floor: a bare Starlette route answering the same pages with hand-written SQL


FLOOR_SEARCH_SQL = " OR ".join(
    f"lower({c}) LIKE ? ESCAPE '\\'" for c in ("user_name", "email", "first_name", "last_name", "display_name")
)
FLOOR_AUTH_SQL = "SELECT id, organization_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
FLOOR_DIRECTORY_SQL = "SELECT id, name, organization_id FROM directories WHERE id = ?"
FLOOR_USER_COUNTS_SQL = (
    "SELECT count(*), coalesce(sum(state = 'active'), 0) FROM directory_users WHERE directory_id = ?"
)
FLOOR_GROUP_COUNT_SQL = "SELECT count(*) FROM directory_groups WHERE directory_id = ?"
FLOOR_USERS_SQL = (
    "SELECT id, user_name, email, first_name, last_name, display_name, state FROM directory_users "
    "WHERE directory_id = ?{after}{search} ORDER BY id LIMIT ?"
)
FLOOR_GROUPS_SQL = (
    "SELECT m.user_id, g.id, g.name FROM group_memberships AS m JOIN directory_groups AS g ON g.id = m.group_id "
    "WHERE m.user_id IN ({marks}) ORDER BY g.id"
)


def floor_page(
    conn: Any, *, key: str, directory_id: str, counts: bool, first: int, after: str | None, search: str | None
) -> tuple[int, dict[str, Any]]:
    """One page as the GraphQL API would answer it: ``(status, body)``. Runs on a database thread."""
    principal = conn.execute(FLOOR_AUTH_SQL, (hashlib.sha256(key.encode()).hexdigest(),)).fetchone()
    if principal is None:
        return 401, {"errors": [{"message": "Unknown or revoked API key"}]}
    directory = conn.execute(FLOOR_DIRECTORY_SQL, (directory_id,)).fetchone()
    if directory is None or (principal[1] is not None and principal[1] != directory[2]):
        return 404, {"errors": [{"message": f"Directory {directory_id} not found"}]}
    params: list[Any] = [directory_id]
    after_sql = search_sql = ""
    if after:
        after_sql = " AND id > ?"
        params.append(key_of(after))
    if search:
        search_sql = f" AND ({FLOOR_SEARCH_SQL})"
        params.extend([like_pattern(search)] * 5)
    params.append(first + 1)
    rows = conn.execute(FLOOR_USERS_SQL.format(after=after_sql, search=search_sql), params).fetchall()
    has_next = len(rows) > first
    rows = rows[:first]
    groups: dict[str, list[dict[str, str]]] = {row[0]: [] for row in rows}
    if rows:
        marks = ",".join("?" * len(rows))
        for user_id, group_id, name in conn.execute(FLOOR_GROUPS_SQL.format(marks=marks), list(groups)):
            groups[user_id].append({"id": group_id, "name": name})
    edges = [
        {
            "cursor": cursor_of(row[0]),
            "node": {
                "id": row[0],
                "userName": row[1],
                "email": row[2],
                "firstName": row[3],
                "lastName": row[4],
                "displayName": row[5],
                "state": str(row[6]).upper(),
                "groups": groups[row[0]],
            },
        }
        for row in rows
    ]
    users = {"edges": edges, "pageInfo": {"endCursor": edges[-1]["cursor"] if edges else None, "hasNextPage": has_next}}
    body: dict[str, Any]
    if counts:
        total, active = conn.execute(FLOOR_USER_COUNTS_SQL, (directory_id,)).fetchone()
        (group_count,) = conn.execute(FLOOR_GROUP_COUNT_SQL, (directory_id,)).fetchone()
        body = {
            "id": directory[0],
            "name": directory[1],
            "userCount": total,
            "activeUserCount": active,
            "inactiveUserCount": total - active,
            "groupCount": group_count,
            "users": users,
        }
    else:
        body = {"users": users}
    return 200, {"data": {"directory": body}}


def serve_floor(port: int, database: str) -> None:
    """Run the floor server (``--serve-floor``): one route, the page's SQL on a small thread pool, orjson out."""
    import asyncio
    import gc
    import sqlite3
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA query_only=ON")
            local.conn = conn
        return conn

    readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="floor-reader")

    async def page(request: Request) -> Response:
        q = request.query_params
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return Response(b'{"errors":[{"message":"Send an API key"}]}', 401, media_type="application/json")

        def job() -> tuple[int, dict[str, Any]]:
            return floor_page(
                connection(),
                key=key.strip(),
                directory_id=q["directory"],
                counts=q.get("counts") == "1",
                first=int(q.get("first", PAGE_SIZE)),
                after=q.get("after") or None,
                search=q.get("search") or None,
            )

        status, body = await asyncio.get_running_loop().run_in_executor(readers, job)
        return Response(orjson.dumps(body), status, media_type="application/json")

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/healthz", healthz), Route("/page", page)])
    # As `dsync serve` does: fewer cyclic collections, start-up objects out of them.
    gc.set_threshold(100_000, 50, 100)
    gc.freeze()
    uvicorn.run(app, host=harness.LOOPBACK, port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------------------------------------------------
# Servers


@dataclass
class Server:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 30) -> str:
        return harness.log_tail(self.log_path, lines)


def start(server: Server, cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> None:
    server.proc = harness.start_server(
        server.name, cmd, env, cwd, server.log_path, port=server.port, ready_path="/healthz", timeout=timeout
    )


# --------------------------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Probe:
    label: str
    target: str  # "graphql" or "floor"
    conn: harness.Conn
    server_pid: int
    method: str
    path: str
    body: bytes | None
    latencies_ms: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    response_bytes: int = 0

    def send(self) -> tuple[int, bytes, float]:
        return self.conn.request(self.method, self.path, self.body)

    def run(self, counted: bool) -> None:
        cpu0 = harness.proc_cpu_seconds(self.server_pid)
        status, data, elapsed = self.send()
        cpu = harness.proc_cpu_seconds(self.server_pid) - cpu0
        if status != 200 or b'"errors"' in data:
            self.errors += 1
            if len(self.error_samples) < 3:
                self.error_samples.append(f"HTTP {status} {data[:300]!r}")
            return
        if counted:
            self.latencies_ms.append(elapsed * 1e3)
            self.server_cpu_s += cpu
            self.response_bytes = len(data)

    def p(self, q: float) -> float:
        return harness.percentile(sorted(self.latencies_ms), q)

    @property
    def cpu_ms(self) -> float:
        return 1e3 * self.server_cpu_s / len(self.latencies_ms) if self.latencies_ms else math.nan


@dataclass
class Pair:
    """A page asked of GraphQL and of the floor, alternated request by request."""

    name: str
    graphql: Probe
    floor: Probe


def graphql_probe(label: str, conn: harness.Conn, pid: int, query: str, variables: dict[str, Any]) -> Probe:
    body = json.dumps({"query": query, "variables": variables}, separators=(",", ":")).encode()
    return Probe(label, "graphql", conn, pid, "POST", "/graphql", body)


def floor_probe(label: str, conn: harness.Conn, pid: int, params: dict[str, str]) -> Probe:
    return Probe(label, "floor", conn, pid, "GET", "/page?" + urlencode(params), None)


def build_pairs(seeded: Seeded, gql: harness.Conn, gql_pid: int, floor: harness.Conn, floor_pid: int) -> list[Pair]:
    d = seeded.directory_id
    base = {"directory": d, "first": str(PAGE_SIZE)}

    def users(name: str, variables: dict[str, Any], params: dict[str, str]) -> Pair:
        return Pair(
            name,
            graphql_probe(name, gql, gql_pid, USERS_QUERY, {"id": d, "first": PAGE_SIZE, **variables}),
            floor_probe(name, floor, floor_pid, {**base, **params}),
        )

    return [
        Pair(
            "dashboard",
            graphql_probe("dashboard", gql, gql_pid, DASHBOARD_QUERY, {"id": d, "first": PAGE_SIZE}),
            floor_probe("dashboard", floor, floor_pid, {**base, "counts": "1"}),
        ),
        users("first page", {}, {}),
        users(
            f"deep page (after #{seeded.deep_position})", {"after": seeded.deep_cursor}, {"after": seeded.deep_cursor}
        ),
        users(f"search {seeded.common_term!r}", {"search": seeded.common_term}, {"search": seeded.common_term}),
        users(f"search {seeded.rare_term!r}", {"search": seeded.rare_term}, {"search": seeded.rare_term}),
    ]


def check_same_answers(pairs: Sequence[Pair]) -> list[str]:
    """Each floor answer must equal the GraphQL one (same JSON), or the comparison means nothing."""
    problems: list[str] = []
    for pair in pairs:
        status, data, _ = pair.graphql.send()
        try:
            ours = json.loads(data)
        except ValueError:
            ours = None
        if status != 200 or not isinstance(ours, dict) or ours.get("errors") or not ours.get("data"):
            problems.append(f"{pair.name}: GraphQL answered HTTP {status}: {data[:500]!r}")
            continue
        edges = ours["data"]["directory"]["users"]["edges"]
        if not edges:
            problems.append(f"{pair.name}: GraphQL returned no users")
        status, fdata, _ = pair.floor.send()
        theirs = json.loads(fdata) if status == 200 else None
        if theirs != ours:
            problems.append(f"{pair.name}: the floor's answer differs from GraphQL's (HTTP {status}): {fdata[:300]!r}")
    return problems


def measure(pairs: Sequence[Pair], repeats: int, warmup: int, progress: Callable[[str], None]) -> float:
    """Warm up, then ``repeats`` rounds; each round asks every page of GraphQL and the floor, A B then B A."""
    probes = [p for pair in pairs for p in (pair.graphql, pair.floor)]
    for _ in range(warmup):
        for probe in probes:
            probe.run(counted=False)
    for probe in probes:
        probe.errors, probe.error_samples = 0, []
    cpu0, t0 = time.process_time(), time.perf_counter()
    last_report = t0
    for r in range(repeats):
        for pair in pairs:
            order = (pair.graphql, pair.floor) if r % 2 == 0 else (pair.floor, pair.graphql)
            for probe in order:
                probe.run(counted=True)
        now = time.perf_counter()
        if now - last_report > 10:
            progress(f"  ... round {r + 1}/{repeats} ({now - t0:.0f}s)")
            last_report = now
    wall = time.perf_counter() - t0
    return 100.0 * (time.process_time() - cpu0) / wall if wall > 0 else math.nan


def summary_table(pairs: Sequence[Pair]) -> str:
    head = (
        f"{'page':<44} {'server':<8} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'srv CPU ms':>10} "
        f"{'bytes':>7} {'errors':>6}"
    )
    rows: list[str] = []
    for pair in pairs:
        for probe in (pair.graphql, pair.floor):
            mean = statistics.fmean(probe.latencies_ms) if probe.latencies_ms else math.nan
            rows.append(
                f"{pair.name[:44]:<44} {probe.target:<8} {len(probe.latencies_ms):>4} {probe.p(50):>8.2f} "
                f"{probe.p(99):>8.2f} {mean:>8.2f} {probe.cpu_ms:>10.2f} {probe.response_bytes:>7} {probe.errors:>6}"
            )
    return harness.table(head, rows)


# --------------------------------------------------------------------------------------------------------------------
# Optional profile of the GraphQL server (py-spy)


def start_profiler(pid: int, out: Path, log: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` on the server, only samples holding the GIL (where the Python CPU goes), raw format."""
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if py_spy is None:
        raise RuntimeError("py-spy not found (pip install py-spy), needed by --profile")
    cmd = [py_spy, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", "200", "--gil"]
    with log.open("wb") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    time.sleep(1.0)  # attached before the first measured request
    if proc.poll() is not None:
        raise RuntimeError(f"py-spy exited with code {proc.returncode}: {log.read_text(errors='replace')[-500:]}")
    return proc


def stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# Where a GIL sample goes: the deepest frame naming one of these (server code may move: unmatched samples are "other").
PROFILE_BUCKETS: list[tuple[str, str]] = [
    ("parse query (graphql-core)", "_parse_operation_document"),
    ("validate query (graphql-core)", "validate_document"),
    ("auth: API key lookup", "authenticate"),
    ("read plan: narrow rows -> response dicts (store job)", "gateway/graphql/plans/"),
    ("groups of users loader: SQL + ORM rows", "Loaders._groups_of_users"),
    ("directory counts loader", "Loaders._directory_counts"),
    ("directory loader", "Loaders._directories"),
    ("users page: SQL + ORM rows", "keyset_page"),
    ("rows -> GraphQL objects (from_row, cursors)", "from_row"),
    ("rows -> GraphQL objects (from_row, cursors)", "connection (gateway/"),
    ("response JSON encoding", "encode_json"),
    ("request parsing", "parse_http_body"),
    ("DataLoader dispatch", "strawberry/dataloader.py"),
    ("graphql-core execution (resolving, completing fields)", "graphql/execution/"),
    ("graphql-core execution (resolving, completing fields)", "Schema.execute"),
    ("uvicorn / starlette HTTP", "uvicorn/"),
    ("uvicorn / starlette HTTP", "starlette/"),
    ("thread pool hand-off", "concurrent/futures/"),
]


def profile_summary(path: Path) -> list[str]:
    """Share of GIL samples per part of the request, from a py-spy raw file (``frame;frame;... count`` lines)."""
    buckets: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        name = "other (event loop, asyncio, ...)"
        for frame in reversed(frames):
            match = next((label for label, pattern in PROFILE_BUCKETS if pattern in frame), None)
            if match is not None:
                name = match
                break
        buckets[name] = buckets.get(name, 0) + count
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
    if total == 0:
        return ["(no samples)"]
    lines = [f"{100.0 * n / total:5.1f}%  {name}" for name, n in sorted(buckets.items(), key=lambda kv: -kv[1])]
    lines.append("top functions by own samples:")
    lines += [f"{100.0 * n / total:5.1f}%  {frame}" for frame, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:8]]
    return lines


# --------------------------------------------------------------------------------------------------------------------
# Main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="GraphQL read benchmark: dashboard pages on a large directory vs a floor.")
    p.add_argument("--users", type=int, default=100_000, help="users to seed (default 100000)")
    p.add_argument("--groups", type=int, default=1000, help="groups to seed; each user joins 1-3 (default 1000)")
    p.add_argument("--repeats", type=int, default=200, help="measured requests per page and server (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests per page and server first (default 20)")
    p.add_argument(
        "--deep-fraction",
        type=float,
        default=0.9,
        help="the deep page starts after the user at this fraction of the directory, by id (default 0.9)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed of the data (default: random)")
    p.add_argument("--port", type=int, default=None, help="port of dsync serve (the floor uses PORT+1); default free")
    harness.add_run_options(p, keep_temp_help="keep the temp dir (database, server logs)")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="record the GraphQL server with py-spy (GIL samples, raw format) into FILE during the measurement",
    )
    p.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--database", default=None, help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = build_parser().parse_args()
    if args.serve_floor:
        if args.port is None or args.database is None:
            print("--serve-floor needs --port and --database", file=sys.stderr)
            return 2
        serve_floor(args.port, args.database)
        return 0
    if not harness.at_least_one(args, ("users", "repeats")):
        return 2
    if args.groups < 0 or args.warmup < 0 or not 0 < args.deep_fraction <= 1:
        print("--groups and --warmup must be >= 0, --deep-fraction in (0, 1]", file=sys.stderr)
        return 2

    harness.exit_on_sigterm()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    tmp = Path(tempfile.mkdtemp(prefix="dsync-gql-bench-"))
    servers: list[Server] = []
    conns: list[harness.Conn] = []
    pairs: list[Pair] = []
    client_cpu_pct = math.nan
    problems: list[str] = []
    profiler: subprocess.Popen[bytes] | None = None
    try:
        idle_busy_pct = harness.machine_busy_pct()
        print(
            f"GraphQL read benchmark  seed {seed}  cpus {os.cpu_count()}  "
            f"machine CPU busy before start {idle_busy_pct:.0f}% of one core"
        )
        if idle_busy_pct > 15:
            print("WARNING: the machine is busy before the benchmark starts: figures will be noisy; quote the ratios")

        dsync = harness.find_dsync(args.dsync)
        gql_port = args.port or harness.free_port()
        floor_port = args.port + 1 if args.port else harness.free_port()
        db = tmp / "dsync.db"
        env = harness.dsync_env(f"sqlite+aiosqlite:///{db}", gql_port)
        # One client asking page after page measures latency, not the per-key limits (which would refuse it).
        env.update({"DSYNC_GRAPHQL_RATE_LIMIT": "0", "DSYNC_GRAPHQL_COST_RATE": "0"})
        harness.run_migrate(dsync, env, tmp)
        print(f"seeding {db}: {args.users} users, {args.groups} groups ...", flush=True)
        seeded = seed_database(db, users=args.users, groups=args.groups, seed=seed, public_url=env["DSYNC_PUBLIC_URL"])
        describe_data(db, seeded, args.deep_fraction)
        print(
            f"  seeded in {seeded.seconds:.1f}s: {seeded.users} users ({seeded.inactive} inactive), {seeded.groups} "
            f"groups, {seeded.memberships} memberships; database {seeded.db_bytes / 2**20:.0f} MiB"
        )
        print(
            f"  deep page: after the user at position {seeded.deep_position} by id; search terms "
            f"{seeded.common_term!r} ({seeded.common_matches} matches), {seeded.rare_term!r} "
            f"({seeded.rare_matches} match{'es' if seeded.rare_matches != 1 else ''})"
        )

        gql = Server("dsync serve", gql_port, tmp / "dsync.log")
        servers.append(gql)
        start(
            gql, [dsync, "serve", "--host", harness.LOOPBACK, "--port", str(gql_port)], env, tmp, args.startup_timeout
        )
        floor = Server("floor", floor_port, tmp / "floor.log")
        servers.append(floor)
        floor_cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-floor",
            "--port",
            str(floor_port),
            "--database",
            str(db),
        ]
        start(floor, floor_cmd, dict(os.environ), tmp, args.startup_timeout)
        assert gql.proc is not None and floor.proc is not None
        print(f"graphql: dsync serve on {harness.LOOPBACK}:{gql_port} (pid {gql.proc.pid})")
        print(
            f"floor:   bare Starlette + uvicorn on {harness.LOOPBACK}:{floor_port} (pid {floor.proc.pid}), "
            "hand-written SQL over stdlib sqlite3 on a 4-thread pool, orjson"
        )
        headers = {"Authorization": f"Bearer {seeded.api_key}", "Accept": "application/json"}
        gql_conn = harness.Conn(gql_port, {**headers, "Content-Type": "application/json"})
        floor_conn = harness.Conn(floor_port, headers)
        conns.extend([gql_conn, floor_conn])
        pairs = build_pairs(seeded, gql_conn, gql.proc.pid, floor_conn, floor.proc.pid)
        problems = check_same_answers(pairs)
        for problem in problems:
            print(f"  CHECK FAILED: {problem}")
        if not problems:
            print("  check: every floor answer equals the GraphQL answer (same JSON)")
        print(
            f"measuring: {args.warmup} warm-up + {args.repeats} measured requests per page and server, sequential, "
            "one keep-alive http.client connection per server, GraphQL and floor alternated (A B, B A)",
            flush=True,
        )
        if args.profile is not None:
            profiler = start_profiler(gql.proc.pid, args.profile.resolve(), tmp / "py-spy.log")
            print(f"profiling dsync serve with py-spy into {args.profile}")
        client_cpu_pct = measure(pairs, args.repeats, args.warmup, lambda line: print(line, flush=True))
        if profiler is not None:
            stop_profiler(profiler)
            profiler = None
    except Exception as exc:  # report what happened, with the servers' logs, and still clean up
        harness.report_failure(str(exc), [(f"the {server.name} log", server.log_tail()) for server in servers])
        return 1
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        for c in conns:
            c.close()
        harness.end_run([server.proc for server in servers], tmp, args.keep_temp)

    print(
        harness.summary_heading(
            108,
            f"SUMMARY ({args.repeats} sequential requests per row; 'srv CPU ms' is the server process's CPU per "
            f"request; client CPU {client_cpu_pct:.0f}% of one core)",
        )
    )
    print(summary_table(pairs))
    print()
    by_name = {pair.name: pair for pair in pairs}
    dashboard, first, deep = by_name["dashboard"], by_name["first page"], pairs[2]
    ratio = dashboard.graphql.p(50) / dashboard.floor.p(50)
    print(
        f"dashboard (counts + first {PAGE_SIZE} users with groups): GraphQL p50 {dashboard.graphql.p(50):.2f} ms / "
        f"floor p50 {dashboard.floor.p(50):.2f} ms = {ratio:.2f}x "
        f"(target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})"
    )
    counts_ms = dashboard.floor.p(50) - first.floor.p(50)
    first_ratio = first.graphql.p(50) / first.floor.p(50)
    print(
        f"  of which the four counts: ~{counts_ms:.1f} ms (floor dashboard p50 - floor first page p50) on both servers"
    )
    print(
        f"first page of {PAGE_SIZE} users with groups (no counts): GraphQL p50 {first.graphql.p(50):.2f} ms / floor "
        f"p50 {first.floor.p(50):.2f} ms = {first_ratio:.2f}x (GraphQL's own overhead; target <= 3x: "
        f"{'met' if first_ratio <= 3 else 'NOT met'})"
    )
    depth = deep.graphql.p(50) / first.graphql.p(50)
    print(
        f"deep page (after user #{seeded.deep_position}) p50 / first page p50, GraphQL: {depth:.2f} "
        f"(target ~1: {'met' if 0.67 <= depth <= 1.5 else 'NOT met'}); deep page p50 / dashboard p50 "
        f"(which also counts): {deep.graphql.p(50) / dashboard.graphql.p(50):.2f}"
    )
    for pair in pairs[3:]:
        print(f"{pair.name}: GraphQL / floor p50 = {pair.graphql.p(50) / pair.floor.p(50):.2f}x")
    if args.profile is not None and args.profile.exists():
        print(f"\npy-spy profile of dsync serve ({args.profile}), share of GIL samples:")
        for line in profile_summary(args.profile):
            print(f"  {line}")
    if problems:
        print("WARNING: the floor's answers differ from GraphQL's (see CHECK FAILED above): the ratios are not fair")
        return 1
    errors = sum(p.errors for pair in pairs for p in (pair.graphql, pair.floor))
    if errors:
        for pair in pairs:
            for probe in (pair.graphql, pair.floor):
                for sample in probe.error_samples:
                    print(f"  error sample ({pair.name}, {probe.target}): {sample}")
        print(f"WARNING: {errors} failed requests: figures with errors are not comparable")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
