"""Subscription fan-out benchmark: many live subscribers on one ``dsync serve``, then bursts of SCIM changes.

Run with the project's venv, e.g. ``.venv/bin/python bench/subscriptions.py --subscribers 50 --changes 100`` (quick)
or without options for the full run (1,000 subscribers, 1,000 changes per burst); ``--help`` lists the options and
bench/README.md explains what is measured. A benchmark that prints figures, not a test: it asserts nothing about
absolute times, but it checks that every subscriber received every event exactly once and in log order (exit code 3
when one did not, or when a SCIM request failed).

With ``--scenario a|b|c``: the scenarios of bench/subscription_scenarios.py (deliveries/s, latency, ingest with and
without subscribers, memory per subscriber; ``--roles split`` for an ingest and a realtime process). Without it:

1. Creates an organization, a directory and an admin API key with the ``dsync`` CLI on a fresh database (SQLite in a
   temp dir, or with ``--database-url`` a PostgreSQL database created and dropped here), then starts ``dsync serve``
   on a free 127.0.0.1 port.
2. Starts client processes (this script with ``--worker``) that open the subscribers: ``directoryEvents`` over
   graphql-transport-ws with the plain ``websockets`` library, ``--per-connection`` subscriptions per connection,
   plus (unless ``--no-slow``) one slow subscriber on a connection of its own.
3. Sends bursts of ``--changes`` SCIM ``POST /Users`` at concurrency 8 (httpx) and records when each response came
   back; the clients record when each event arrived. Both use ``time.monotonic`` (CLOCK_MONOTONIC: one clock for
   every process of the machine). With the slow subscriber there are two bursts: a control one in which it reads
   normally, then one in which it stops reading until everybody else has everything.
4. Checks completeness and order per subscriber against the log (read back over GraphQL), and prints end-to-end
   latency (SCIM response -> client receipt), events/s delivered, the server's RSS per subscriber and during the
   bursts, and what the slow subscriber did to the others and to the server's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import harness
import orjson
import subscription_scenarios

SUBPROTOCOL = "graphql-transport-ws"
FIELDS = {
    "full": "cursor event occurredAt data",  # what the README's example (and the dashboard) asks for
    "light": "cursor event user { id }",
}
SUBSCRIPTION = (
    "subscription Bench($dir: ID!, $after: String) { directoryEvents(directoryId: $dir, after: $after) { %s } }"
)
LOG_QUERY = (
    "query Log($dir: ID!, $after: String) { events(directoryId: $dir, first: 100, after: $after) { "
    "edges { node { cursor event occurredAt data } } pageInfo { hasNextPage endCursor } } }"
)
SERVER_QUEUE_BOUND = 1000  # gateway/events/hub.py: Subscriber.queue maxsize (_QUEUE_SIZE)
MIB = 1024 * 1024
SCRIPT = str(Path(__file__).resolve())


def event_user_id(node: dict[str, Any]) -> str | None:
    """The user id an event carries (``user { id }`` or the WorkOS payload in ``data``), None for other events."""
    user = node.get("user")
    if isinstance(user, dict):
        uid = user.get("id")
        return str(uid) if uid is not None else None
    payload = node.get("data")
    if isinstance(payload, dict):
        inner = payload.get("user", payload)
        if isinstance(inner, dict) and inner.get("object") == "directory_user" and inner.get("id") is not None:
            return str(inner["id"])
    return None


# --------------------------------------------------------------------------------------------------------------------
# Client processes (this script with --worker): the subscribers


@dataclass(eq=False)
class SubRecord:
    index: int
    slow: bool
    last: int  # cursor of the last event received: where a reconnect resumes
    cursors: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    completed: bool = False


class ClientWorker:
    """Subscribers over a few WebSocket connections, driven by one-line commands on stdin (replies on stdout)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.url = f"ws://{harness.LOOPBACK}:{spec['port']}/graphql"
        self.init = orjson.dumps(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {spec['key']}"}}
        ).decode()
        self.query = str(spec["query"])
        self.directory = str(spec["directory"])
        self.compression: str | None = "deflate" if spec["compression"] else None
        after = int(spec["after"])
        self.connections = [[SubRecord(int(i), False, after) for i in indices] for indices in spec["connections"]]
        self.slow_connection = [SubRecord(int(spec["slow"]), True, after)] if spec["slow"] is not None else None
        self.subs = [s for conn in self.connections for s in conn] + (self.slow_connection or [])
        self.fast = [s for s in self.subs if not s.slow]
        self.ids: dict[int, str | None] = {}  # cursor -> user id, as first received (checked against the log)
        self.mismatches = 0  # events whose user id differed between two subscribers
        self.failures: list[str] = []
        self.gate = asyncio.Event()  # the slow subscriber reads only while it is set
        self.gate.set()
        self.slow_delay = 0.0
        self.stopping = False
        self.opened = 0
        self.all_opened = asyncio.Event()
        self.sockets: set[Any] = set()

    def subscribe_message(self, sub: SubRecord) -> str:
        payload = {"query": self.query, "variables": {"dir": self.directory, "after": str(sub.last)}}
        return orjson.dumps({"id": str(sub.index), "type": "subscribe", "payload": payload}).decode()

    def _opened_once(self) -> None:
        self.opened += 1
        if self.opened == len(self.connections) + (1 if self.slow_connection else 0):
            self.all_opened.set()

    async def run_connection(self, subs: list[SubRecord], slow: bool, opening: asyncio.Semaphore) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
        from websockets.typing import Subprotocol

        first, failed_attempts = True, 0
        while not self.stopping:
            try:
                async with opening:
                    ws = await connect(
                        self.url,
                        subprotocols=[Subprotocol(SUBPROTOCOL)],
                        compression=self.compression,
                        ping_interval=None,  # the server pings at the graphql-transport-ws level; we answer those
                        open_timeout=60,
                        close_timeout=2,
                        proxy=None,
                        max_size=None,
                    )
                    try:
                        await ws.send(self.init)
                        ack = orjson.loads(await asyncio.wait_for(ws.recv(decode=False), 60))
                        if ack.get("type") != "connection_ack":
                            raise RuntimeError(f"expected connection_ack, got {ack!r}")
                        for sub in subs:
                            if not sub.completed:
                                await ws.send(self.subscribe_message(sub))
                    except BaseException:
                        await ws.close()
                        raise
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, RuntimeError) as exc:
                if self.stopping:
                    return
                failed_attempts += 1
                if failed_attempts >= 5:
                    self.failures.append(f"subscribers {[s.index for s in subs]}: {type(exc).__name__}: {exc}")
                    if first:
                        self._opened_once()
                    return
                await asyncio.sleep(0.5 * failed_attempts)
                continue
            failed_attempts = 0
            if first:
                first = False
                self._opened_once()
            self.sockets.add(ws)
            try:
                await self.read(ws, subs, slow)
                return  # every subscription on it completed
            except ConnectionClosed as exc:
                if self.stopping:
                    return
                for sub in subs:
                    sub.reconnects += 1
                print(
                    f"connection of subscribers {[s.index for s in subs][:5]} closed ({exc}); resuming after their "
                    "last cursors",
                    file=sys.stderr,
                    flush=True,
                )
                await asyncio.sleep(0.2)
            finally:
                self.sockets.discard(ws)

    async def read(self, ws: Any, subs: list[SubRecord], slow: bool) -> None:
        by_id = {str(s.index): s for s in subs}
        ids = self.ids
        pong = orjson.dumps({"type": "pong"}).decode()
        while not all(s.completed for s in subs):
            if slow:
                await self.gate.wait()
            raw = await ws.recv(decode=False)
            now = time.monotonic()
            msg = orjson.loads(raw)
            kind = msg.get("type")
            if kind == "next":
                sub = by_id.get(msg.get("id", ""))
                payload = msg.get("payload") or {}
                node = (payload.get("data") or {}).get("directoryEvents")
                if sub is None or not isinstance(node, dict):
                    target = sub or subs[0]
                    target.errors.append(f"unexpected next message: {str(msg)[:300]}")
                    continue
                cursor = int(node["cursor"])
                sub.cursors.append(cursor)
                sub.times.append(now)
                if cursor > sub.last:
                    sub.last = cursor
                uid = event_user_id(node)
                if ids.setdefault(cursor, uid) != uid:
                    self.mismatches += 1
                if slow and self.slow_delay > 0:
                    await asyncio.sleep(self.slow_delay)
            elif kind == "ping":
                await ws.send(pong)
            elif kind in ("error", "complete"):
                sub = by_id.get(msg.get("id", ""))
                if sub is not None:
                    sub.completed = True
                    if kind == "error":
                        sub.errors.append(f"error message: {str(msg.get('payload'))[:300]}")

    def reply(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    async def wait_until(self, subs: Sequence[SubRecord], cursor: int, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            if all(s.last >= cursor for s in subs):
                break
            await asyncio.sleep(0.02)
        reached = sum(1 for s in subs if s.last >= cursor)
        self.reply(f"reached {reached} {len(subs)} {time.monotonic() - t0:.3f}")

    def dump(self, path: Path) -> None:
        record = {
            "subs": [
                {
                    "index": s.index,
                    "slow": s.slow,
                    "cursors": s.cursors.tolist(),
                    "times": s.times.tolist(),
                    "reconnects": s.reconnects,
                    "errors": s.errors,
                }
                for s in self.subs
            ],
            "ids": {str(k): v for k, v in self.ids.items()},
            "mismatches": self.mismatches,
            "failures": self.failures,
            "cpu_seconds": time.process_time(),
        }
        path.write_bytes(orjson.dumps(record))

    async def commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return  # the orchestrator is gone
            words = line.decode().split()
            if not words:
                continue
            cmd = words[0]
            if cmd == "expect":  # expect fast|slow|all CURSOR TIMEOUT
                who = {"fast": self.fast, "slow": self.slow_connection or [], "all": self.subs}[words[1]]
                await self.wait_until(who, int(words[2]), float(words[3]))
            elif cmd == "slow":  # slow pause | slow delay MS | slow normal
                if words[1] == "pause":
                    self.gate.clear()
                else:
                    self.slow_delay = float(words[2]) / 1000 if words[1] == "delay" else 0.0
                    self.gate.set()
                self.reply("ok")
            elif cmd == "status":
                slow = self.slow_connection[0] if self.slow_connection else None
                self.reply(
                    json.dumps(
                        {
                            "slow_last": slow.last if slow else None,
                            "fast_min_last": min((s.last for s in self.fast), default=None),
                            "reconnects": sum(s.reconnects for s in self.subs),
                        }
                    )
                )
            elif cmd == "dump":
                self.dump(Path(words[1]))
                self.reply("dumped")
            elif cmd == "quit":
                self.stopping = True
                self.gate.set()
                sockets = list(self.sockets)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 10)
                self.reply("bye")
                return
            else:
                self.reply(f"unknown command {cmd!r}")


async def worker_async(spec: dict[str, Any]) -> None:
    worker = ClientWorker(spec)
    opening = asyncio.Semaphore(int(spec.get("open_concurrency", 16)))
    tasks = [asyncio.create_task(worker.run_connection(conn, False, opening)) for conn in worker.connections]
    if worker.slow_connection is not None:
        tasks.append(asyncio.create_task(worker.run_connection(worker.slow_connection, True, opening)))
    await worker.all_opened.wait()
    for failure in worker.failures:
        print(f"failed: {failure}", file=sys.stderr, flush=True)
    worker.reply(f"ready {len(worker.failures)}")
    try:
        await worker.commands()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(worker_async(spec))
    return 0


# --------------------------------------------------------------------------------------------------------------------
# The orchestrator: server, database, client processes, SCIM bursts, figures


@dataclass
class LogEvent:
    cursor: int
    event: str
    user_id: str | None
    occurred_at: float  # the event row's created_at (server clock, written in the SCIM request's transaction)


class LogReader:
    """The directory's event log, read incrementally over GraphQL (``events`` with ``first``/``after``)."""

    def __init__(self, directory_id: str) -> None:
        self.directory_id = directory_id
        self.after: str | None = None
        self.events: list[LogEvent] = []

    @property
    def last_cursor(self) -> int:
        return self.events[-1].cursor if self.events else 0

    async def refresh(self, client: Any) -> None:
        while True:
            resp = await client.post(
                "/graphql", json={"query": LOG_QUERY, "variables": {"dir": self.directory_id, "after": self.after}}
            )
            body = resp.json()
            if resp.status_code != 200 or body.get("errors"):
                raise RuntimeError(f"reading the event log failed: HTTP {resp.status_code} {str(body)[:500]}")
            page = body["data"]["events"]
            for edge in page["edges"]:
                node = edge["node"]
                occurred = datetime.fromisoformat(str(node["occurredAt"])).timestamp()
                self.events.append(LogEvent(int(node["cursor"]), str(node["event"]), event_user_id(node), occurred))
            if page["pageInfo"]["endCursor"]:
                self.after = page["pageInfo"]["endCursor"]
            if not page["pageInfo"]["hasNextPage"]:
                return


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds on a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), harness.rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), harness.rss_bytes(self.pid)))

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


@dataclass
class CpuMark:
    t: float
    server: float
    clients: float
    bench: float
    machine: float


def cpu_mark(server_pid: int, client_pids: Sequence[int]) -> CpuMark:
    return CpuMark(
        time.monotonic(),
        harness.proc_cpu_seconds(server_pid),
        sum(harness.proc_cpu_seconds(p) for p in client_pids),
        time.process_time(),
        harness.machine_busy_seconds(),
    )


def cpu_shares(a: CpuMark, b: CpuMark) -> dict[str, float]:
    """% of one core over the window: the server, the client processes, this process (SCIM client), the rest."""
    wall = b.t - a.t
    if wall <= 0:
        return {"server": math.nan, "clients": math.nan, "bench": math.nan, "other": math.nan}
    server, clients, bench = b.server - a.server, b.clients - a.clients, b.bench - a.bench
    other = max(0.0, (b.machine - a.machine) - server - clients - bench)
    return {
        k: 100.0 * v / wall for k, v in (("server", server), ("clients", clients), ("bench", bench), ("other", other))
    }


@dataclass
class Burst:
    name: str
    lagging: bool  # the slow subscriber stopped reading during this burst
    responses: dict[str, float] = field(default_factory=dict)  # user id -> monotonic time its 201 arrived
    scim_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    t_start: float = 0.0
    t_first_response: float = math.nan
    t_last_response: float = math.nan
    first_cursor: int = 0
    last_cursor: int = 0
    delivered_s: float = math.nan  # from the first SCIM request until every fast subscriber had the burst
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    rss_peak_catchup: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    slow_received_at_end: int | None = None  # burst events the slow subscriber had when the others had them all
    slow_catchup_s: float = math.nan
    # filled by the analysis
    latencies: list[float] = field(default_factory=list)
    fanout: list[float] = field(default_factory=list)  # per event: SCIM response -> its last fast subscriber
    since_write: list[float] = field(default_factory=list)  # event row written (occurredAt) -> client receipt
    last_receipt: float = math.nan


@dataclass
class WorkerProc:
    index: int
    proc: asyncio.subprocess.Process
    log_path: Path
    subscribers: int
    connections: int

    async def ask(self, line: str, limit_s: float) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()
        raw = await asyncio.wait_for(self.proc.stdout.readline(), limit_s)
        if not raw:
            raise RuntimeError(f"client process {self.index} exited:\n{harness.log_tail(self.log_path)}")
        return raw.decode().strip()


def fmt_mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if not math.isnan(seconds) else "n/a"


def latency_summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "count": float(len(s)),
        "p50_ms": harness.percentile(s, 50) * 1e3,
        "p99_ms": harness.percentile(s, 99) * 1e3,
        "max_ms": (s[-1] * 1e3) if s else math.nan,
        "min_ms": (s[0] * 1e3) if s else math.nan,
    }


class Bench:
    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.run_id = secrets.token_hex(4)
        self.tmp = Path(tempfile.mkdtemp(prefix="dsync-bench-subs-"))
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = self.tmp / "server.log"
        self.workers: list[WorkerProc] = []
        self.pg_admin_url: str | None = None
        self.pg_database: str | None = None
        self.port = args.port or harness.free_port()
        self.results: dict[str, Any] = {}
        self.rng = random.Random(secrets.randbits(32))
        self.user_counter = 0

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # Setup -----------------------------------------------------------------------------------------------------------
    async def create_database(self) -> str:
        if not self.args.database_url:
            return f"sqlite+aiosqlite:///{self.tmp / 'dsync.db'}"
        from sqlalchemy.engine import make_url

        url = make_url(self.args.database_url)
        if not url.drivername.startswith("postgresql"):
            raise RuntimeError("--database-url must be a PostgreSQL URL (postgresql+asyncpg://user@host:port/db)")
        name = f"dsync_bench_subs_{self.run_id}"
        await _admin_execute(self.args.database_url, f'CREATE DATABASE "{name}"')
        self.pg_admin_url, self.pg_database = self.args.database_url, name
        return url.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)

    async def drop_database(self) -> None:
        if self.pg_admin_url is None or self.pg_database is None:
            return
        await _admin_execute(self.pg_admin_url, f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')

    def server_env(self, database_url: str) -> dict[str, str]:
        env = harness.dsync_env(database_url, self.port)
        if self.args.per_connection > 20:  # the server's default cap on subscriptions per connection
            env["DSYNC_WS_MAX_SUBSCRIPTIONS"] = str(self.args.per_connection)
        return env

    def setup_server(self, env: dict[str, str]) -> tuple[str, str, str, str]:
        """Migrate, create organization, directory and admin key (CLI, --json), start the server: (directory id,
        SCIM path, SCIM token, API key)."""
        dsync = harness.find_dsync(self.args.dsync)
        harness.run_migrate(dsync, env, self.tmp, timeout=300)
        directory = harness.create_jumpcloud_directory(
            dsync, env, self.tmp, organization=f"bench-{self.run_id}", directory=f"subs-{self.run_id}"
        )
        key = harness.run_cli_json([dsync, "api-keys", "create", "--json"], env, self.tmp)
        self.server = harness.start_server(
            "dsync serve",
            [dsync, "serve", "--host", harness.LOOPBACK, "--port", str(self.port)],
            env,
            self.tmp,
            self.server_log,
            port=self.port,
            ready_path="/healthz",
            timeout=self.args.startup_timeout,
        )
        path = urlsplit(str(directory["endpoint"])).path.rstrip("/")
        return str(directory["id"]), path, str(directory["bearer_token"]), str(key["key"])

    async def start_workers(self, directory_id: str, api_key: str, after: int) -> None:
        n, per = self.args.subscribers, self.args.per_connection
        conns = [list(range(i, min(i + per, n))) for i in range(0, n, per)]
        processes = max(1, min(self.args.client_processes, len(conns)))
        query = SUBSCRIPTION % FIELDS[self.args.fields]
        for w in range(processes):
            mine = conns[w::processes]
            spec = {
                "port": self.port,
                "key": api_key,
                "directory": directory_id,
                "query": query,
                "after": after,
                "compression": self.args.compression,
                "connections": mine,
                "slow": n if (self.args.slow and w == 0) else None,  # the slow subscriber's index is n
            }
            log_path = self.tmp / f"client{w}.log"
            with log_path.open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    SCRIPT,
                    "--worker",
                    json.dumps(spec),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                    limit=1 << 20,
                )
            self.workers.append(WorkerProc(w, proc, log_path, sum(len(c) for c in mine), len(mine)))

    async def expect(self, who: str, cursor: int, limit_s: float) -> tuple[int, int]:
        workers = self.workers if who != "slow" else self.workers[:1]
        replies = await asyncio.gather(*(w.ask(f"expect {who} {cursor} {limit_s}", limit_s + 30) for w in workers))
        reached = total = 0
        for reply in replies:
            _, ok, count, _ = reply.split()
            reached, total = reached + int(ok), total + int(count)
        return reached, total

    async def stop_workers(self) -> None:
        for w in self.workers:
            if w.proc.returncode is None:
                with contextlib.suppress(Exception):
                    await w.ask("quit", 20)
        for w in self.workers:
            try:
                await asyncio.wait_for(w.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.proc.pid, signal.SIGKILL)
                await w.proc.wait()

    # SCIM -----------------------------------------------------------------------------------------------------------
    def bodies(self, count: int, tag: str) -> list[bytes]:
        start = self.user_counter
        self.user_counter += count
        return [
            orjson.dumps(harness.tagged_user(i, f"{self.run_id}{tag}", self.rng)) for i in range(start, start + count)
        ]

    async def post_users(self, scim: Any, path: str, bodies: list[bytes], burst: Burst, concurrency: int) -> None:
        next_index = 0

        async def one_worker() -> None:
            nonlocal next_index
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                t0 = time.monotonic()
                try:
                    resp = await scim.post(f"{path}/Users", content=body)
                except Exception as exc:  # httpx errors: count them, keep going
                    burst.errors += 1
                    if len(burst.error_samples) < 3:
                        burst.error_samples.append(f"{type(exc).__name__}: {exc}")
                    continue
                now = time.monotonic()
                if resp.status_code != 201:
                    burst.errors += 1
                    if len(burst.error_samples) < 3:
                        burst.error_samples.append(f"HTTP {resp.status_code} {resp.text[:300]}")
                    continue
                burst.responses[str(resp.json()["id"])] = now
                burst.scim_ms.append((now - t0) * 1e3)
                if math.isnan(burst.t_first_response):
                    burst.t_first_response = now
                burst.t_last_response = now

        await asyncio.gather(*(one_worker() for _ in range(concurrency)))

    # The run ---------------------------------------------------------------------------------------------------------
    async def run(self) -> int:
        import httpx

        args = self.args
        idle_busy = await asyncio.to_thread(harness.machine_busy_pct)
        self.say(
            f"Subscription fan-out benchmark  run id {self.run_id}  cpus {os.cpu_count()}  machine CPU busy before "
            f"start {idle_busy:.0f}% of one core"
        )
        if idle_busy > 15:
            self.say("WARNING: the machine is busy before the benchmark starts: figures will be noisy")
        database_url = await self.create_database()
        env = self.server_env(database_url)
        loop = asyncio.get_running_loop()
        directory_id, scim_path, scim_token, api_key = await loop.run_in_executor(None, self.setup_server, env)
        assert self.server is not None
        server_pid = self.server.pid
        store = f"PostgreSQL database {self.pg_database}" if self.pg_database else f"SQLite {self.tmp / 'dsync.db'}"
        conns = math.ceil(args.subscribers / args.per_connection)
        self.say(f"server: dsync serve (pid {server_pid}) on {harness.LOOPBACK}:{self.port}, {store}")
        self.say(
            f"subscribers: {args.subscribers} over {conns} connections ({args.per_connection} per connection"
            + (f", DSYNC_WS_MAX_SUBSCRIPTIONS={env['DSYNC_WS_MAX_SUBSCRIPTIONS']}" if args.per_connection > 20 else "")
            + f") in {min(args.client_processes, conns)} client processes"
            + (", plus 1 slow subscriber on its own connection" if args.slow else "")
        )
        self.say(
            f"selection: {{ {FIELDS[args.fields]} }}; permessage-deflate {'on' if args.compression else 'off'}; "
            f"bursts of {args.changes} POST /Users at concurrency {args.concurrency}"
        )
        self.results["config"] = {
            "subscribers": args.subscribers,
            "per_connection": args.per_connection,
            "connections": conns,
            "client_processes": min(args.client_processes, conns),
            "slow": args.slow,
            "slow_mode": args.slow_mode,
            "changes": args.changes,
            "concurrency": args.concurrency,
            "fields": FIELDS[args.fields],
            "compression": args.compression,
            "database": "postgresql" if self.pg_database else "sqlite",
            "machine_busy_before_pct": idle_busy,
        }

        log = LogReader(directory_id)
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        base_url = f"http://{harness.LOOPBACK}:{self.port}"
        async with (
            httpx.AsyncClient(
                base_url=base_url, headers=harness.scim_headers(scim_token), limits=limits, timeout=120
            ) as scim,
            httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=120
            ) as graphql,
        ):
            # Warm-up (links the directory: dsync.activated), then the log's head: the subscribers start after it.
            warm = Burst("warm-up", False)
            await self.post_users(scim, scim_path, self.bodies(args.warmup, "w"), warm, args.concurrency)
            if warm.errors:
                raise RuntimeError(f"warm-up SCIM requests failed: {warm.error_samples}")
            await log.refresh(graphql)
            start_cursor = log.last_cursor
            await asyncio.sleep(1.0)
            rss_before = harness.rss_bytes(server_pid)
            self.say(f"server RSS after {args.warmup} warm-up users, before subscribers: {fmt_mib(rss_before)}")

            t_open = time.monotonic()
            await self.start_workers(directory_id, api_key, start_cursor)
            readies = await asyncio.gather(*(asyncio.wait_for(self._ready(w), args.timeout) for w in self.workers))
            failed = sum(readies)
            if failed:
                raise RuntimeError(f"{failed} connections could not be opened (see the client logs)")
            client_pids = [w.proc.pid for w in self.workers]
            # A barrier: one change that every subscriber must receive, so all of them are live before measuring.
            marker = Burst("marker", False)
            await self.post_users(scim, scim_path, self.bodies(1, "m"), marker, 1)
            await log.refresh(graphql)
            reached, total = await self.expect("all", log.last_cursor, args.timeout)
            t_live = time.monotonic()
            if reached != total:
                raise RuntimeError(f"only {reached} of {total} subscribers received the first event")
            self.say(
                f"{total} subscribers connected and live in {t_live - t_open:.1f}s (the first event reached all of "
                f"them {t_live - marker.t_first_response:.2f}s after its SCIM response)"
            )
            await asyncio.sleep(2.0)
            rss_idle = harness.rss_bytes(server_pid)
            per_sub = (rss_idle - rss_before) / max(1, total)
            self.say(
                f"server RSS with {total} idle subscribers: {fmt_mib(rss_idle)} "
                f"(+{fmt_mib(rss_idle - rss_before)}, {per_sub / 1024:.1f} KiB per subscriber)"
            )
            self.results["rss"] = {
                "before_subscribers": rss_before,
                "idle_subscribers": rss_idle,
                "per_subscriber": per_sub,
            }

            plan = [("control", False), ("slow lagging", True)] if args.slow else [("burst", False)]
            bursts: list[Burst] = []
            for name, lagging in plan:
                bursts.append(await self.burst(name, lagging, scim, graphql, scim_path, log, server_pid, client_pids))

            # Every event of the run, from the log: what each subscriber should have received, in this order.
            await log.refresh(graphql)
            dumps = []
            for w in self.workers:
                path = self.tmp / f"client{w.index}.json"
                await w.ask(f"dump {path}", args.timeout)
                dumps.append(orjson.loads(path.read_bytes()))
            await self.stop_workers()

        ok = self.analyse(dumps, log, start_cursor, bursts)
        self.report(bursts)
        return 0 if ok and not any(b.errors for b in bursts) else 3

    async def _ready(self, w: WorkerProc) -> int:
        assert w.proc.stdout is not None
        raw = await w.proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"client process {w.index} exited:\n{harness.log_tail(w.log_path)}")
        words = raw.decode().split()
        if words[:1] != ["ready"]:
            raise RuntimeError(f"client process {w.index}: unexpected {raw!r}")
        return int(words[1])

    async def burst(
        self,
        name: str,
        lagging: bool,
        scim: Any,
        graphql: Any,
        scim_path: str,
        log: LogReader,
        server_pid: int,
        client_pids: list[int],
    ) -> Burst:
        args = self.args
        burst = Burst(name, lagging)
        bodies = self.bodies(args.changes, f"b{len(name)}{int(lagging)}")
        await asyncio.sleep(1.0)
        burst.rss_before = harness.rss_bytes(server_pid)
        if lagging:
            mode = "slow pause" if args.slow_mode == "pause" else f"slow delay {args.slow_delay_ms}"
            await self.workers[0].ask(mode, 30)
        first_cursor = log.last_cursor + 1
        with RssSampler(server_pid) as sampler:
            mark0 = cpu_mark(server_pid, client_pids)
            burst.t_start = time.monotonic()
            await self.post_users(scim, scim_path, bodies, burst, args.concurrency)
            scim_s = burst.t_last_response - burst.t_start
            await log.refresh(graphql)
            burst.first_cursor, burst.last_cursor = first_cursor, log.last_cursor
            reached, total = await self.expect("fast", burst.last_cursor, args.timeout)
            burst.delivered_s = time.monotonic() - burst.t_start
            mark1 = cpu_mark(server_pid, client_pids)
        burst.rss_peak = sampler.peak
        burst.cpu = cpu_shares(mark0, mark1)
        rate = len(burst.responses) / scim_s if scim_s > 0 else math.nan
        self.say(
            f"burst '{name}': {len(burst.responses)} POST /Users in {scim_s:.1f}s ({rate:.0f}/s, {burst.errors} "
            f"errors); {reached}/{total} fast subscribers had all {burst.last_cursor - first_cursor + 1} events "
            f"{burst.delivered_s:.1f}s after the first request; server RSS peak {fmt_mib(burst.rss_peak)}"
        )
        if reached != total:
            self.say(f"  WARNING: {total - reached} subscribers did not receive the whole burst within {args.timeout}s")
        if lagging:
            status = json.loads(await self.workers[0].ask("status", 30))
            slow_last = int(status["slow_last"])
            burst.slow_received_at_end = sum(1 for e in log.events if first_cursor <= e.cursor <= slow_last)
            lag = burst.last_cursor - first_cursor + 1 - burst.slow_received_at_end
            self.say(
                f"  slow subscriber: had {burst.slow_received_at_end} of the burst's events when the others had "
                f"them all ({lag} behind; the server queues at most {SERVER_QUEUE_BOUND} per subscriber); now reading "
                f"with {args.slow_delay_ms:g} ms per message for {args.slow_drain_seconds:g}s, then at full speed"
            )
            with RssSampler(server_pid) as catchup:
                t_resume = time.monotonic()
                await self.workers[0].ask(f"slow delay {args.slow_delay_ms}", 30)
                await asyncio.sleep(args.slow_drain_seconds)
                await self.workers[0].ask("slow normal", 30)
                reached, total = await self.expect("slow", burst.last_cursor, args.timeout)
                burst.slow_catchup_s = time.monotonic() - t_resume
            burst.rss_peak_catchup = catchup.peak
            self.say(
                f"  slow subscriber caught up: {'yes' if reached == total else 'NO'}, {burst.slow_catchup_s:.1f}s "
                f"after it resumed reading; server RSS peak meanwhile {fmt_mib(burst.rss_peak_catchup)}"
            )
        await asyncio.sleep(1.0)
        burst.rss_after = harness.rss_bytes(server_pid)
        return burst

    # Analysis ---------------------------------------------------------------------------------------------------------
    def analyse(self, dumps: list[dict[str, Any]], log: LogReader, start_cursor: int, bursts: list[Burst]) -> bool:
        expected_events = [e for e in log.events if e.cursor > start_cursor]
        expected = array("q", [e.cursor for e in expected_events])
        log_ids = {e.cursor: e.user_id for e in expected_events}
        # cursor -> (burst index, SCIM response time, event row written), all on the monotonic clock: CLOCK_REALTIME
        # (occurredAt) minus its offset to CLOCK_MONOTONIC, the same for every process of the machine.
        offset = time.time() - time.monotonic()
        by_cursor: dict[int, tuple[int, float, float]] = {}
        missing_responses = 0
        for bi, burst in enumerate(bursts):
            for e in expected_events:
                if burst.first_cursor <= e.cursor <= burst.last_cursor:
                    t_resp = burst.responses.get(e.user_id or "")
                    if t_resp is None:
                        missing_responses += 1
                    else:
                        by_cursor[e.cursor] = (bi, t_resp, e.occurred_at - offset)
        last_per_cursor: dict[int, float] = {}
        complete = in_order_fail = 0
        problems: list[str] = []
        subs_total = reconnects_fast = reconnects_slow = 0
        mismatches = 0
        errors: list[str] = []
        for dump in dumps:
            mismatches += int(dump["mismatches"])
            errors.extend(dump["failures"])
            for cursor_text, uid in dump["ids"].items():
                cursor = int(cursor_text)
                if cursor in log_ids and log_ids[cursor] != uid:
                    mismatches += 1
            for sub in dump["subs"]:
                subs_total += 1
                cursors = array("q", sub["cursors"])
                errors.extend(sub["errors"][:3])
                if sub["slow"]:
                    reconnects_slow += sub["reconnects"]
                else:
                    reconnects_fast += sub["reconnects"]
                if cursors == expected:
                    complete += 1
                else:
                    got = set(cursors)
                    missing = sum(1 for c in expected if c not in got)
                    dups = len(cursors) - len(got)
                    disorder = sum(1 for a, b in zip(cursors, cursors[1:], strict=False) if b <= a)
                    extra = len(got - set(expected))
                    in_order_fail += disorder > 0
                    if len(problems) < 10:
                        problems.append(
                            f"subscriber {sub['index']}{' (slow)' if sub['slow'] else ''}: {len(cursors)} received, "
                            f"{missing} missing, {dups} duplicates, {disorder} out of order, {extra} unexpected"
                        )
                if sub["slow"]:
                    continue
                for cursor, t in zip(sub["cursors"], sub["times"], strict=True):
                    hit = by_cursor.get(cursor)
                    if hit is None:
                        continue
                    bursts[hit[0]].latencies.append(t - hit[1])
                    bursts[hit[0]].since_write.append(t - hit[2])
                    if t > last_per_cursor.get(cursor, -math.inf):
                        last_per_cursor[cursor] = t
        for cursor, t_last in last_per_cursor.items():
            bi, t_resp, _ = by_cursor[cursor]
            b = bursts[bi]
            b.fanout.append(t_last - t_resp)
            b.last_receipt = t_last if math.isnan(b.last_receipt) else max(b.last_receipt, t_last)
        ok = complete == subs_total and mismatches == 0 and missing_responses == 0 and not errors
        self.results["completeness"] = {
            "subscribers": subs_total,
            "complete_and_in_order": complete,
            "out_of_order": in_order_fail,
            "events_expected_each": len(expected),
            "payload_mismatches": mismatches,
            "events_without_scim_response": missing_responses,
            "reconnects_fast": reconnects_fast,
            "reconnects_slow": reconnects_slow,
            "problems": problems,
            "errors": errors[:10],
            "ok": ok,
        }
        return ok

    def report(self, bursts: list[Burst]) -> None:
        args = self.args
        rss = self.results["rss"]
        c = self.results["completeness"]
        self.say(
            harness.summary_heading(
                100,
                f"SUMMARY: {args.subscribers} subscribers ({args.per_connection} per connection)"
                + (" + 1 slow" if args.slow else "")
                + f", bursts of {args.changes} SCIM changes; latency = SCIM response -> client receipt, over the "
                "subscribers other than the slow one",
            )
        )
        head = f"{'':<36}" + "".join(f"{b.name:>26}" for b in bursts)
        rows: list[tuple[str, list[str]]] = []
        out_bursts: list[dict[str, Any]] = []
        for b in bursts:
            lat = latency_summary(b.latencies)
            fan = latency_summary(b.fanout)
            window = b.last_receipt - b.t_first_response
            deliveries = len(b.latencies)
            rate = deliveries / window if window > 0 else math.nan
            scim_s = b.t_last_response - b.t_start
            scim_sorted = sorted(b.scim_ms)
            out_bursts.append(
                {
                    "name": b.name,
                    "slow_lagging": b.lagging,
                    "events": b.last_cursor - b.first_cursor + 1,
                    "deliveries": deliveries,
                    "latency_ms": {k: v for k, v in lat.items() if k != "count"},
                    "fanout_complete_ms": {k: v for k, v in fan.items() if k != "count"},
                    "written_to_receipt_ms": {k: v for k, v in latency_summary(b.since_write).items() if k != "count"},
                    "events_per_second_delivered": rate,
                    "delivery_window_s": window,
                    "scim": {
                        "requests": len(b.responses),
                        "errors": b.errors,
                        "per_second": len(b.responses) / scim_s if scim_s > 0 else math.nan,
                        "p50_ms": harness.percentile(scim_sorted, 50),
                        "p99_ms": harness.percentile(scim_sorted, 99),
                        "error_samples": b.error_samples,
                    },
                    "rss": {
                        "before": b.rss_before,
                        "peak": b.rss_peak,
                        "peak_during_slow_catchup": b.rss_peak_catchup or None,
                        "after": b.rss_after,
                    },
                    "cpu_pct_of_one_core": b.cpu,
                    "slow_received_when_others_done": b.slow_received_at_end,
                    "slow_catchup_s": None if math.isnan(b.slow_catchup_s) else b.slow_catchup_s,
                }
            )
        for key, label in (("p50_ms", "end-to-end p50"), ("p99_ms", "end-to-end p99"), ("max_ms", "end-to-end max")):
            rows.append((label, [f"{o['latency_ms'][key]:.1f} ms" for o in out_bursts]))
        rows.append(("end-to-end min", [f"{o['latency_ms']['min_ms']:.1f} ms" for o in out_bursts]))
        rows.append(
            (
                "event written -> receipt p50 / p99",
                [
                    f"{o['written_to_receipt_ms']['p50_ms']:.0f} / {o['written_to_receipt_ms']['p99_ms']:.0f} ms"
                    for o in out_bursts
                ],
            )
        )
        rows.append(
            (
                "fan-out complete p50 / p99",
                [
                    f"{o['fanout_complete_ms']['p50_ms']:.0f} / {o['fanout_complete_ms']['p99_ms']:.0f} ms"
                    for o in out_bursts
                ],
            )
        )
        rows.append(("deliveries", [f"{o['deliveries']:,}" for o in out_bursts]))
        rows.append(("events/s delivered", [f"{o['events_per_second_delivered']:,.0f}" for o in out_bursts]))
        rows.append(("first response -> last receipt", [f"{o['delivery_window_s']:.1f} s" for o in out_bursts]))
        rows.append(
            (
                "SCIM POST/s, p50 / p99",
                [
                    f"{o['scim']['per_second']:.0f}, {o['scim']['p50_ms']:.0f} / {o['scim']['p99_ms']:.0f} ms"
                    for o in out_bursts
                ],
            )
        )
        rows.append(("SCIM errors", [str(o["scim"]["errors"]) for o in out_bursts]))
        rows.append(
            (
                "server RSS before -> peak",
                [f"{fmt_mib(o['rss']['before'])} -> {fmt_mib(o['rss']['peak'])}" for o in out_bursts],
            )
        )
        rows.append(("server RSS after", [fmt_mib(o["rss"]["after"]) for o in out_bursts]))
        rows.append(
            (
                "CPU server / clients / other",
                [
                    f"{o['cpu_pct_of_one_core']['server']:.0f}/{o['cpu_pct_of_one_core']['clients']:.0f}/"
                    f"{o['cpu_pct_of_one_core']['other']:.0f}%"
                    for o in out_bursts
                ],
            )
        )
        self.say(
            harness.table(head, [f"{label:<36}" + "".join(f"{cell:>26}" for cell in cells) for label, cells in rows])
        )
        self.say()
        if any(o["latency_ms"]["min_ms"] < 0 for o in out_bursts):
            self.say(
                "(a negative end-to-end latency: the event reached a subscriber before the SCIM client had its "
                "response, which waited in the server behind the fan-out; 'event written' is the event row's "
                "occurredAt, stamped in the SCIM request's transaction)"
            )
        self.say(
            f"server RSS: {fmt_mib(rss['before_subscribers'])} before subscribers, {fmt_mib(rss['idle_subscribers'])} "
            f"with {c['subscribers']} idle ones: {rss['per_subscriber'] / 1024:.1f} KiB per subscriber"
        )
        for o, b in zip(out_bursts, bursts, strict=True):
            if b.lagging:
                lag = o["events"] - (b.slow_received_at_end or 0)
                self.say(
                    f"slow subscriber ('{b.name}'): "
                    + (
                        "stopped reading"
                        if args.slow_mode == "pause"
                        else f"read with {args.slow_delay_ms:g} ms/message"
                    )
                    + f" during the burst, {lag} events behind when the "
                    f"others had everything; caught up {b.slow_catchup_s:.1f}s after resuming "
                    f"({args.slow_delay_ms:g} ms/message for {args.slow_drain_seconds:g}s, then full speed); "
                    f"server RSS peak while it caught up {fmt_mib(b.rss_peak_catchup)}; reconnects "
                    f"{c['reconnects_slow']}"
                )
        verdict = "OK" if c["ok"] else "FAILED"
        self.say(
            f"completeness: {c['complete_and_in_order']}/{c['subscribers']} subscribers received exactly the "
            f"{c['events_expected_each']} log events in cursor order (no gap, no duplicate); payload mismatches "
            f"{c['payload_mismatches']}; reconnects of the others {c['reconnects_fast']}: {verdict}"
        )
        for problem in c["problems"]:
            self.say(f"  {problem}")
        for error in c["errors"]:
            self.say(f"  error: {error}")
        self.results["bursts"] = out_bursts

    async def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop_workers()
        harness.stop_process(self.server)
        try:
            await self.drop_database()
        except Exception as exc:
            self.say(f"could not drop the PostgreSQL database {self.pg_database}: {exc}")
        harness.remove_temp(self.tmp, self.args.keep_temp)


async def _admin_execute(url: str, statement: str) -> None:
    """Run one statement (CREATE or DROP DATABASE) on the PostgreSQL server of ``url``, through that URL's own
    database (``postgres`` when it names none)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = await asyncpg.connect(
        user=parsed.username,
        password=parsed.password,
        host=parsed.host or harness.LOOPBACK,
        port=parsed.port or 5432,
        database=parsed.database or "postgres",
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _finite(value: Any) -> Any:
    """The figures with NaN (no data) as null, so that --json prints strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Subscription fan-out benchmark (many subscribers, bursts of SCIM changes)."
    )
    p.add_argument("--subscribers", type=int, default=1000, help="concurrent subscribers (default 1000)")
    p.add_argument("--changes", type=int, default=1000, help="SCIM changes (POST /Users) per burst (default 1000)")
    p.add_argument(
        "--per-connection",
        type=int,
        default=1,
        help="subscriptions per WebSocket connection (default 1; above 20 DSYNC_WS_MAX_SUBSCRIPTIONS is raised)",
    )
    p.add_argument(
        "--slow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add one slow subscriber and run a control burst and a burst during which it lags (default on)",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to use, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres: a fresh "
        "database is created on it and dropped at the end (default: SQLite in a temp dir)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout (log on stderr)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent SCIM requests (default 8)")
    p.add_argument("--client-processes", type=int, default=2, help="processes holding the subscribers (default 2)")
    p.add_argument("--fields", choices=sorted(FIELDS), default="full", help="selection of each event (default full)")
    p.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="offer permessage-deflate like browsers and websockets do (default on)",
    )
    p.add_argument(
        "--slow-mode",
        choices=["pause", "delay"],
        default="pause",
        help="during the lagging burst the slow subscriber stops reading (pause, default) or reads with "
        "--slow-delay-ms per message (delay)",
    )
    p.add_argument("--slow-delay-ms", type=float, default=50.0, help="the slow subscriber's delay per message (50)")
    p.add_argument(
        "--slow-drain-seconds",
        type=float,
        default=5.0,
        help="how long the slow subscriber reads with that delay after the burst before reading at full speed (5)",
    )
    p.add_argument("--warmup", type=int, default=20, help="SCIM users created before the subscribers connect (20)")
    p.add_argument("--timeout", type=float, default=900.0, help="bound on each wait for delivery (default 900 s)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="(scenarios) run the subscribers' client processes at this nice value: browsers are elsewhere, but "
        "here they share the server's two cores (they keep raw frames during the burst and decode them after) (0)",
    )
    harness.add_run_options(p, keep_temp_help="keep the temp dir (database, server and client logs)")
    subscription_scenarios.add_options(p)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = build_parser().parse_args()
    if args.worker is not None:
        return worker_main(args.worker)
    if args.scenario is not None:
        return asyncio.run(subscription_scenarios.run(args))
    if not harness.at_least_one(args, ("subscribers", "changes", "per_connection", "concurrency", "client_processes")):
        return 2
    harness.exit_on_sigterm()
    out = sys.stderr if args.json else sys.stdout
    bench = Bench(args, out)

    async def go() -> int:
        try:
            return await bench.run()
        except Exception as exc:
            logs = [("the server log", harness.log_tail(bench.server_log))]
            logs += [(f"client {w.index}'s log", harness.log_tail(w.log_path, 10)) for w in bench.workers]
            harness.report_failure(f"{type(exc).__name__}: {exc}", logs)
            return 1
        finally:
            await bench.cleanup()

    rc = asyncio.run(go())
    if args.json and bench.results:
        print(json.dumps(_finite(bench.results), indent=2, default=str))
    return rc


if __name__ == "__main__":
    sys.exit(main())
