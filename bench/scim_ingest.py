"""SCIM ingest benchmark: a JumpCloud-like initial sync against the gateway, with python-scim as a reference.

Run with the project's venv, e.g. ``.venv/bin/python bench/scim_ingest.py --users 2000``; ``--help`` lists the
options and bench/README.md explains what is measured. This is a benchmark that prints figures, not a test: it
asserts nothing about absolute times.

Phases (each prints requests/s, p50/p99 latency and the error count):

1. POST /Users x N at concurrency C, on our gateway and on python-scim's ``scim2-server`` side by side (A B A B);
2. POST /Groups x G;
3. PATCH /Groups/{id} adding one member per request, at concurrency C;
4. adding ONE member to a 10-member group and to a 10,000-member group, alternating, median of each and the ratio.

The servers are started here as subprocesses on 127.0.0.1, with a fresh SQLite file in a temp dir for ours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import harness

STABLE_PHASE_S = 2.0  # ``ratio_table`` flags phases that ran shorter than this
MIN_CPU_WINDOW_S = 0.5  # CPU shares of shorter runs are printed as nan

# The wrk script replays a file of pre-built requests (one "METHOD<TAB>PATH<TAB>BODY" per line), records the id of
# every 201 response, and stops its (single) thread once `total` responses have come back, so a time-bounded wrk run
# performs (about) N requests. The bodies are built in Python so that both servers get byte-identical requests.
WRK_LUA = r"""
-- wrk's main thread sleeps for the whole -d duration even after thread:stop(), so once `total` responses are in,
-- the thread stops and sends SIGINT to wrk itself (wrk then reports at once). The window is timed here with
-- CLOCK_MONOTONIC: from the first request to the `total`-th response.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
int kill(int pid, int sig);
int getpid(void);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end
t_start = 0
t_end = 0
got = 0
counted = 0
local reqs = {}
local idx = 0
local total = 0
ids = {}
errsamples = {}
non2xx = 0
outpath = ""

function init(args)
  local f = assert(io.open(args[1], "r"))
  total = tonumber(args[2])
  outpath = args[4]
  local headers = {
    ["Authorization"] = "Bearer " .. args[3],
    ["Content-Type"] = "application/scim+json",
    ["Accept"] = "application/scim+json",
  }
  for line in f:lines() do
    local method, path, body = line:match("^(%u+)\t([^\t]*)\t(.*)$")
    reqs[#reqs + 1] = wrk.format(method, path, headers, body)
  end
  f:close()
end

function request()
  if idx == 0 then t_start = now_us() end
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end

function response(status, headers, body)
  got = got + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if #errsamples < 3 then errsamples[#errsamples + 1] = tostring(status) .. " " .. string.sub(body or "", 1, 300) end
  elseif status == 201 then
    local id = string.match(body, '"id"%s*:%s*"([^"]+)"')
    local name = string.match(body, '"userName"%s*:%s*"([^"]+)"') or ""
    if id then ids[#ids + 1] = id .. " " .. name end
  end
  if got == total then
    t_end = now_us()
    counted = got
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local t = threads[1]
  local out = assert(io.open(t:get("outpath"), "w"))
  local e = summary.errors
  local t_end = t:get("t_end")
  if t_end > 0 then
    out:write(string.format("requests %d\n", t:get("counted")))
    out:write(string.format("duration_us %d\n", t_end - t:get("t_start")))
  else  -- time bound reached before `total` responses
    out:write(string.format("requests %d\n", summary.requests))
    out:write(string.format("duration_us %d\n", summary.duration))
  end
  out:write(string.format("p50_us %d\n", latency:percentile(50.0)))
  out:write(string.format("p99_us %d\n", latency:percentile(99.0)))
  out:write(string.format("socket_errors %d\n", e.connect + e.read + e.write + e.timeout))
  out:write(string.format("non2xx %d\n", t:get("non2xx")))
  for _, s in ipairs(t:get("errsamples")) do out:write("sample ", (string.gsub(s, "\n", " ")), "\n") end
  for _, id in ipairs(t:get("ids")) do out:write("id ", id, "\n") end
  out:close()
end
"""


# --------------------------------------------------------------------------------------------------------------------
# Request bodies


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    body: bytes


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


BODIES = {"shape": "jumpcloud"}  # --bodies


def minimal_user(user_name: str) -> dict[str, Any]:
    """What a hand-written check often sends: userName, a name and one email."""
    return {
        "schemas": [harness.USER_URN],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
    }


def user_reqs(
    base: str, start: int, count: int, tag: str, seed: int, bodies: dict[str, dict[str, Any]] | None = None
) -> list[Req]:
    """``count`` POST /Users of unique users; each body is also noted in ``bodies`` by userName (for PUT)."""
    rng = random.Random(f"{seed}-{tag}")
    if BODIES["shape"] == "minimal":
        users = [minimal_user(f"user{i}-{tag}@example.com") for i in range(start, start + count)]
    else:
        users = [harness.tagged_user(i, tag, rng) for i in range(start, start + count)]
    if bodies is not None:
        bodies.update((user["userName"], user) for user in users)
    return [Req("POST", f"{base}/Users", _dumps(user)) for user in users]


def group_reqs(base: str, count: int, tag: str) -> list[Req]:
    return [
        Req(
            "POST",
            f"{base}/Groups",
            _dumps(
                {
                    "schemas": [harness.GROUP_URN],
                    "displayName": f"group{g}-{tag}",
                    "externalId": f"jc-group-{tag}-{g:05d}",
                }
            ),
        )
        for g in range(count)
    ]


def add_members_body(user_ids: Sequence[str]) -> bytes:
    return _dumps(
        {
            "schemas": [harness.PATCH_URN],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": uid} for uid in user_ids]}],
        }
    )


# --------------------------------------------------------------------------------------------------------------------
# Measurement helpers


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for tid_dir in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (tid_dir / "children").read_text().split():
                found.extend(_descendants(int(child)))
    return found


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by a process and its living descendants."""
    if pid is None:
        return 0.0
    return sum(harness.proc_cpu_seconds(p) for p in _descendants(pid))


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LoadResult:
    phase: str
    target: str
    client: str
    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float
    server_cpu_s: float
    other_cpu_s: float = 0.0
    postgres_cpu_s: float = math.nan  # the local PostgreSQL server's processes (nan: none, or not local)
    ids: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    counted: bool = True
    names: list[str] = field(default_factory=list)  # userName of each created user, beside ``ids``

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else math.nan

    def _pct(self, cpu_s: float) -> float:
        # CPU time is accounted in 10 ms ticks and wrk's start-up is outside the window: too short a run means nothing.
        return 100.0 * cpu_s / self.duration_s if self.duration_s >= MIN_CPU_WINDOW_S else math.nan

    @property
    def client_cpu_pct(self) -> float:
        return self._pct(self.client_cpu_s)

    @property
    def other_cpu_pct(self) -> float:
        return self._pct(self.other_cpu_s)

    @property
    def server_cpu_pct(self) -> float:
        return self._pct(self.server_cpu_s)

    @property
    def postgres_cpu_pct(self) -> float:
        return self._pct(self.postgres_cpu_s)

    def line(self) -> str:
        text = (
            f"  {self.phase:<34} {self.target:<9} {self.requests:>6} req  {self.rate:>8.1f} req/s  "
            f"p50 {self.p50_ms:>7.2f} ms  p99 {self.p99_ms:>7.2f} ms  errors {self.errors:<4} CPU client "
            f"{self.client_cpu_pct:>3.0f}% server {self.server_cpu_pct:>3.0f}% other {self.other_cpu_pct:>3.0f}%"
        )
        if not math.isnan(self.postgres_cpu_s):
            text += f" (postgres {self.postgres_cpu_pct:.0f}%)"
        for sample in self.error_samples[:3]:
            text += f"\n      error sample: {sample}"
        return text


class LoadClient:
    """Sends a list of requests at a fixed concurrency and measures them. wrk when available, else httpx."""

    def __init__(self, kind: str, concurrency: int, workdir: Path, max_seconds: float) -> None:
        self.kind = kind
        self.concurrency = concurrency
        self.workdir = workdir
        self.max_seconds = max_seconds
        self._n = 0
        self._lock = threading.Lock()
        # The local PostgreSQL server's postmaster, when a store under test is PostgreSQL: its processes' CPU is
        # shown apart within 'other' (all of its databases': other users of the server count there too).
        self.postgres_pid: int | None = None
        if kind == "wrk":
            (workdir / "replay.lua").write_text(WRK_LUA)

    def describe(self) -> str:
        if self.kind == "wrk":
            version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
            v = version[0].split(" [")[0] if version else "wrk"
            return (
                f"{v}, 1 thread, {self.concurrency} keep-alive connections, replaying pre-built bodies "
                f"from a Lua script (client CPU = wrk process CPU from getrusage)"
            )
        return (
            f"httpx {_httpx_version()} AsyncClient, pool of {self.concurrency} connections in this Python process "
            f"(wrk not found; client CPU = this process's CPU: a Python client on 2 cores can be the bottleneck)"
        )

    def run(
        self,
        phase: str,
        target: str,
        host: str,
        port: int,
        token: str,
        reqs: Sequence[Req],
        pads: Sequence[Req],
        server_pid: int | None,
        counted: bool = True,
    ) -> LoadResult:
        """Send `reqs` (pads are extra requests wrk may send past the end while the last responses are in flight)."""
        cpu_server0 = tree_cpu_seconds(server_pid)
        cpu_postgres0 = tree_cpu_seconds(self.postgres_pid)
        busy0 = harness.machine_busy_seconds()
        if self.kind == "wrk":
            res = self._run_wrk(phase, target, host, port, token, reqs, pads)
        else:
            res = asyncio.run(self._run_httpx(phase, target, host, port, token, reqs))
        res.server_cpu_s = tree_cpu_seconds(server_pid) - cpu_server0
        busy = harness.machine_busy_seconds() - busy0
        res.other_cpu_s = max(0.0, busy - res.client_cpu_s - res.server_cpu_s)
        if self.postgres_pid is not None:
            # Backends that exit during the phase take their CPU with them: a lower bound.
            res.postgres_cpu_s = max(0.0, tree_cpu_seconds(self.postgres_pid) - cpu_postgres0)
        res.counted = counted
        return res

    def _run_wrk(
        self, phase: str, target: str, host: str, port: int, token: str, reqs: Sequence[Req], pads: Sequence[Req]
    ) -> LoadResult:
        with self._lock:  # concurrent runs (the instances phase) each get their own files
            self._n += 1
            n = self._n
        req_file = self.workdir / f"reqs-{n}.txt"
        out_file = self.workdir / f"wrk-{n}.out"
        with req_file.open("wb") as f:
            for r in [*reqs, *pads]:
                f.write(f"{r.method}\t{r.path}\t".encode() + r.body + b"\n")
        cmd = [
            "wrk",
            "-t1",
            f"-c{self.concurrency}",
            f"-d{int(self.max_seconds)}s",
            "--timeout",
            "30s",
            "-s",
            str(self.workdir / "replay.lua"),
            f"http://{host}:{port}",
            "--",
            str(req_file),
            str(len(reqs)),
            token,
            str(out_file),
        ]
        cpu0 = children_cpu_seconds()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.max_seconds + 60)
        client_cpu = children_cpu_seconds() - cpu0
        req_file.unlink()
        if proc.returncode != 0 or not out_file.exists():
            raise RuntimeError(f"wrk failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        values: dict[str, int] = {}
        ids: list[str] = []
        names: list[str] = []
        samples: list[str] = []
        for line in out_file.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "id":
                created, _, name = value.partition(" ")
                ids.append(created)
                names.append(name)
            elif key == "sample":
                samples.append(value)
            else:
                values[key] = int(value)
        out_file.unlink()
        errors = values["non2xx"] + values["socket_errors"]
        if values["requests"] < len(reqs):
            samples.append(
                f"wrk stopped after {values['requests']} of {len(reqs)} responses "
                f"(time bound {self.max_seconds:.0f}s or socket errors)"
            )
            errors += len(reqs) - values["requests"]
        return LoadResult(
            phase,
            target,
            "wrk",
            values["requests"],
            errors,
            values["duration_us"] / 1e6,
            values["p50_us"] / 1e3,
            values["p99_us"] / 1e3,
            client_cpu,
            server_cpu_s=0.0,
            ids=ids,
            error_samples=samples,
            names=names,
        )

    async def _run_httpx(
        self, phase: str, target: str, host: str, port: int, token: str, reqs: Sequence[Req]
    ) -> LoadResult:
        import httpx

        headers = harness.scim_headers(token)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        latencies: list[float] = []
        ids: list[str] = []
        names: list[str] = []
        samples: list[str] = []
        errors = 0
        next_index = 0
        deadline = time.perf_counter() + self.max_seconds

        async with httpx.AsyncClient(
            base_url=f"http://{host}:{port}", headers=headers, limits=limits, timeout=30.0
        ) as client:

            async def worker() -> None:
                nonlocal next_index, errors
                while next_index < len(reqs) and time.perf_counter() < deadline:
                    r = reqs[next_index]
                    next_index += 1
                    t0 = time.perf_counter()
                    try:
                        resp = await client.request(r.method, r.path, content=r.body)
                    except httpx.HTTPError as exc:
                        errors += 1
                        if len(samples) < 3:
                            samples.append(f"{type(exc).__name__}: {exc}")
                        continue
                    latencies.append(time.perf_counter() - t0)
                    if not 200 <= resp.status_code < 300:
                        errors += 1
                        if len(samples) < 3:
                            samples.append(f"{resp.status_code} {resp.text[:300]}")
                    elif resp.status_code == 201:
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            created = resp.json()
                            ids.append(created["id"])
                            names.append(str(created.get("userName", "")))

            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        latencies.sort()
        errors += len(reqs) - next_index
        return LoadResult(
            phase,
            target,
            "httpx",
            len(latencies),
            errors,
            wall,
            harness.percentile(latencies, 50) * 1e3,
            harness.percentile(latencies, 99) * 1e3,
            cpu,
            server_cpu_s=0.0,
            ids=ids,
            error_samples=samples,
            names=names,
        )


def _httpx_version() -> str:
    import httpx

    return str(httpx.__version__)


# --------------------------------------------------------------------------------------------------------------------
# Servers


@dataclass
class Target:
    """One SCIM endpoint under test: `base` is the path prefix of /Users and /Groups."""

    name: str
    port: int
    base: str
    token: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    store: str = "memory"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, lines: int = 30) -> str:
        return harness.log_tail(self.log_path, lines)


def start_ours(
    args: argparse.Namespace, tmp: Path, run_id: str, *, store: str, database_url: str, name: str, migrate: bool = True
) -> Target:
    """``dsync serve`` on ``database_url`` with a JumpCloud directory of its own (``store`` only names it)."""
    dsync = harness.find_dsync(args.dsync)
    port = harness.free_port()
    env = harness.dsync_env(database_url, port)
    # This measures how fast the gateway ingests, ~9x the default per-directory SCIM rate limit: lift it.
    env["DSYNC_SCIM_RATE_LIMIT"] = "0"
    if migrate:
        harness.run_migrate(dsync, env, tmp)
    log_path = tmp / f"{name}.log"
    target = Target(name, port, "", "", log_path=log_path, store=store)
    target.proc = harness.start_server(
        f"{target.name} server",
        [dsync, "serve", "--host", harness.LOOPBACK, "--port", str(port)],
        env,
        tmp,
        log_path,
        port=port,
        ready_path="/healthz",
        timeout=args.startup_timeout,
    )
    directory = harness.create_jumpcloud_directory(
        dsync, env, tmp, organization=f"bench-{run_id}-{name}", directory=f"jumpcloud-{run_id}-{name}"
    )
    endpoint = urlsplit(str(directory["endpoint"]))
    target.base = endpoint.path.rstrip("/")
    target.token = str(directory["bearer_token"])
    return target


def _admin_postgres_url(url: str) -> Any:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql+psycopg")


def create_postgres_database(admin_url: str, name: str) -> str:
    """A fresh database ``name`` on the server of ``admin_url``; returns its asyncpg URL for ``dsync``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_admin_postgres_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = _admin_postgres_url(admin_url).set(drivername="postgresql+asyncpg", database=name)
    return str(url.render_as_string(hide_password=False))


def local_postgres_pid(admin_url: str) -> int | None:
    """The postmaster of the PostgreSQL server of ``admin_url`` if it runs on this machine (the parent of the
    backend serving this query, readable in /proc), else None."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_admin_postgres_url(admin_url))
    try:
        with engine.connect() as connection:
            backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            stat = Path(f"/proc/{backend}/stat").read_text()
            cmdline = Path(f"/proc/{backend}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    finally:
        engine.dispose()
    if b"postgres" not in cmdline:  # a same-numbered process of this machine, not the server's backend
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])  # field 4: the parent's pid


def drop_postgres_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(_admin_postgres_url(admin_url), isolation_level="AUTOCOMMIT")
    with contextlib.suppress(Exception), engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def start_reference(args: argparse.Namespace, tmp: Path) -> Target:
    port = (args.port + 1) if args.port else harness.free_port()
    log_path = tmp / "reference.log"
    target = Target("reference", port, "/v2", "unused-by-reference", log_path=log_path)
    target.proc = harness.start_server(
        f"{target.name} server",
        [sys.executable, str(Path(__file__).resolve()), "--serve-reference", "--port", str(port)],
        dict(os.environ),
        tmp,
        log_path,
        port=port,
        ready_path="/v2/ServiceProviderConfig",
        timeout=args.startup_timeout,
    )
    return target


def serve_reference(port: int) -> None:
    """The reference: python-scim's scim2-server ASGI application, in-memory storage, under uvicorn."""
    import uvicorn
    from scim2_server.applications.asgi import ASGIApplication
    from scim2_server.memory import AsyncInMemoryStorage
    from scim2_server.utils import load_default_provider

    app = ASGIApplication(AsyncInMemoryStorage(), load_default_provider())
    uvicorn.run(app, host=harness.LOOPBACK, port=port, log_level="warning", access_log=False, lifespan="on")


# --------------------------------------------------------------------------------------------------------------------
# Plain sequential requests (setup and the phase-4 probes)


class Conn(harness.Conn):
    """A keep-alive connection to one target, with its bearer token and SCIM content types."""

    def __init__(self, target: Target) -> None:
        super().__init__(target.port, harness.scim_headers(target.token))
        self.target = target


def expect(status: int, data: bytes, what: str, ok: tuple[int, ...]) -> None:
    if status not in ok:
        raise RuntimeError(f"{what}: HTTP {status} {data[:500]!r}")


# --------------------------------------------------------------------------------------------------------------------
# The workload


@dataclass
class ProbeResult:
    small_ms: list[float]
    large_ms: list[float]
    errors: int
    small_size: int
    large_size: int
    build_s: float
    large_members_seen: int | None
    samples: list[str]


def fmt_ms(values: list[float]) -> str:
    s = sorted(values)
    return f"median {statistics.median(s):.2f} ms, p99 {harness.percentile(s, 99):.2f} ms ({len(s)} probes)"


class Bench:
    def __init__(self, args: argparse.Namespace, client: LoadClient, run_id: str, seed: int) -> None:
        self.args = args
        self.client = client
        self.run_id = run_id
        self.seed = seed
        self.results: list[LoadResult] = []
        self.user_counter = 0
        self.bodies: dict[str, dict[str, Any]] = {}
        self.round = 0  # the traffic phases' round under way

    def load(
        self, phase: str, target: Target, reqs: Sequence[Req], pads: Sequence[Req], counted: bool = True
    ) -> LoadResult:
        res = self.client.run(
            phase, target.name, harness.LOOPBACK, target.port, target.token, reqs, pads, target.pid, counted
        )
        self.results.append(res)
        print(res.line() + ("" if counted else "   (setup, not a figure)"), flush=True)
        return res

    def new_users(self, target: Target, count: int, tag: str) -> tuple[list[Req], list[Req]]:
        """Bodies for `count` new users, plus pads (unique too) for wrk's in-flight overshoot."""
        start = self.user_counter
        self.user_counter += count
        all_reqs = user_reqs(
            target.base, start, count + self.args.concurrency + 1, f"{self.run_id}{tag}", self.seed, self.bodies
        )
        return all_reqs[:count], all_reqs[count:]

    # Phase 1 ---------------------------------------------------------------------------------------------------------
    def phase_users(self, targets: list[Target]) -> dict[str, LoadResult]:
        """POST /Users x N per round, rounds alternating between the targets (A B A B); same bodies per round.
        Returns, per target, the users it created (ids and userNames)."""
        created = {t.name: LoadResult("created", t.name, "", 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0) for t in targets}
        warm = min(200, max(20, self.args.users // 20))
        for t in targets:
            reqs = user_reqs(t.base, 0, warm + self.args.concurrency + 1, f"{self.run_id}w", self.seed, self.bodies)
            res = self.load("warm-up POST /Users", t, reqs[:warm], reqs[warm:], counted=False)
            created[t.name].ids.extend(res.ids)
            created[t.name].names.extend(res.names)
        for r in range(1, self.args.rounds + 1):
            tag = f"{self.run_id}r{r}"
            n = self.args.users
            for t in targets:
                reqs = user_reqs(t.base, 0, n + self.args.concurrency + 1, tag, self.seed, self.bodies)
                res = self.load(f"1 POST /Users (round {r})", t, reqs[:n], reqs[n:])
                created[t.name].ids.extend(res.ids)
                created[t.name].names.extend(res.names)
        return created

    # Phases 2-6: what an IdP sends after the first sync, on every target in turn ------------------------------------
    def phase_groups(self, target: Target) -> list[str]:
        g = self.args.groups
        reqs = group_reqs(target.base, g + self.args.concurrency + 1, f"{self.run_id}{target.name}")
        res = self.load("2 POST /Groups", target, reqs[:g], reqs[g:], counted=False)
        return res.ids

    def phase_traffic(self, targets: list[Target], created: dict[str, LoadResult]) -> None:
        """GET by filter, GET by id, PUT, PATCH add member, DELETE: ``--ops`` requests each, A B C per phase, the
        phase ``--traffic-rounds`` times (C B A on every other round); each round's PUTs, PATCHes and DELETEs on
        users of their own, so that a round repeats no change another made (the ratios take each phase's median)."""
        ops = self.args.ops
        rounds = self.args.traffic_rounds
        phases: list[tuple[str, Any]] = [
            ("3 GET /Users?filter=userName eq", self._get_filter),
            ("3e GET /Users?filter=emails eq", self._get_email_filter),
            ("4 GET /Users/{id}", self._get_id),
            ("5 PUT /Users/{id}", self._put),
            ("6 PATCH /Groups add 1 member", self._patch_member),
            ("7 DELETE /Users/{id}", self._delete),
        ]
        groups = {t.name: self.phase_groups(t) for t in targets}
        for phase, build in phases:
            for r in range(rounds):
                for t in targets if r % 2 == 0 else targets[::-1]:
                    made = created[t.name]
                    # PUT and PATCH take each round's users from the start, DELETE from the end: none twice.
                    count = min(ops, len(made.ids) // (2 * rounds) if rounds > 1 else len(made.ids))
                    if phase.startswith("6") and t.name == "reference":
                        count = min(count, self.args.reference_patch_ops)  # scim2-server copies the group per PATCH
                    if phase.startswith("3e") and t.name == "reference":
                        # scim2-server scans every user per emails filter: a run of --ops may outlast the time bound,
                        # and what it still has queued then would load the next runs.
                        count = min(count, self.args.reference_filter_ops)
                    mine = LoadResult("round", t.name, "", 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
                    mine.ids = (
                        made.ids[r * count :] if not phase.startswith("7") else made.ids[: len(made.ids) - r * count]
                    )
                    mine.names = made.names[r * count :]
                    self.round = r
                    reqs = build(t, mine, count, groups[t.name])
                    pads = [Req("GET", f"{t.base}/ServiceProviderConfig", b"")] * (self.args.concurrency + 1)
                    self.load(phase, t, reqs, pads)

    def _get_filter(self, t: Target, made: LoadResult, count: int, _groups: list[str]) -> list[Req]:
        return [Req("GET", f"{t.base}/Users?filter=userName%20eq%20%22{name}%22", b"") for name in made.names[:count]]

    def _get_email_filter(self, t: Target, made: LoadResult, count: int, _groups: list[str]) -> list[Req]:
        # Every bench user's one email is its userName: the address an IdP that matches by email looks up.
        return [Req("GET", f"{t.base}/Users?filter=emails%20eq%20%22{name}%22", b"") for name in made.names[:count]]

    def _get_id(self, t: Target, made: LoadResult, count: int, _groups: list[str]) -> list[Req]:
        return [Req("GET", f"{t.base}/Users/{uid}", b"") for uid in made.ids[:count]]

    def _put(self, t: Target, made: LoadResult, count: int, _groups: list[str]) -> list[Req]:
        reqs = []
        for uid, name in zip(made.ids[:count], made.names[:count], strict=True):
            # A replace that changes one attribute (each round its own value: a repeat would change nothing).
            body = {**self.bodies[name], "title": "Principal Engineer" + (f" {self.round}" if self.round else "")}
            reqs.append(Req("PUT", f"{t.base}/Users/{uid}", _dumps(body)))
        return reqs

    def _patch_member(self, t: Target, made: LoadResult, count: int, groups: list[str]) -> list[Req]:
        # Interleave groups so concurrent requests hit different groups, as an IdP sync typically does.
        return [
            Req("PATCH", f"{t.base}/Groups/{groups[i % len(groups)]}", add_members_body([uid]))
            for i, uid in enumerate(made.ids[:count])
        ]

    def _delete(self, t: Target, made: LoadResult, count: int, _groups: list[str]) -> list[Req]:
        # The last ids: phase 8 (member adds into a large group) takes its members from the first ones.
        return [Req("DELETE", f"{t.base}/Users/{uid}", b"") for uid in made.ids[-count:]]

    # Instances: two `dsync serve` on one PostgreSQL, each ingesting its own directory ------------------------------
    def phase_instances(self, single: Target, many: list[Target]) -> tuple[list[float], list[float]]:
        """POST /Users on one instance alone, then on all at once (A B A B): the aggregate rates of each."""
        alone: list[float] = []
        together: list[float] = []
        n = self.args.users
        for r in range(1, self.args.rounds + 1):
            reqs, pads = self.new_users(single, n, f"i{r}")
            alone.append(self.load(f"9 POST /Users, 1 instance (round {r})", single, reqs, pads).rate)
            batches = [self.new_users(t, n, f"j{r}{t.name}") for t in many]
            phase = f"9 POST /Users, {len(many)} instances (round {r})"
            with ThreadPoolExecutor(max_workers=len(many)) as pool:
                runs = list(
                    pool.map(
                        lambda item, phase=phase: self.client.run(
                            phase,
                            item[0].name,
                            harness.LOOPBACK,
                            item[0].port,
                            item[0].token,
                            item[1][0],
                            item[1][1],
                            item[0].pid,
                        ),
                        zip(many, batches, strict=True),
                    )
                )
            for res in runs:
                self.results.append(res)
                print(res.line(), flush=True)
            together.append(sum(res.requests for res in runs) / max(res.duration_s for res in runs))
            print(f"  {len(many)} instances together: {together[-1]:.1f} req/s", flush=True)
        return alone, together

    # Phase 4 ---------------------------------------------------------------------------------------------------------
    def phase_large_vs_small(self, target: Target, pool: list[str]) -> ProbeResult:
        small, large, repeats = self.args.small_group_size, self.args.large_group_size, self.args.probe_repeats
        need = small + large + 2 * repeats
        if len(pool) < need:
            reqs, pads = self.new_users(target, need - len(pool), "x")
            res = self.load(f"8 setup: {len(reqs)} extra users", target, reqs, pads, counted=False)
            pool = pool + res.ids
            if len(pool) < need:
                raise RuntimeError(f"phase 4 needs {need} user ids, only {len(pool)} were created")
        small_members, large_members = pool[:small], pool[small : small + large]
        probes = pool[small + large : need]
        conn = Conn(target)
        try:
            gids: dict[str, str] = {}
            for label in ("small", "large"):
                body = _dumps(
                    {
                        "schemas": [harness.GROUP_URN],
                        "displayName": f"bench-{label}-{self.run_id}",
                        "externalId": f"jc-bench-{label}-{self.run_id}",
                    }
                )
                status, data, _ = conn.request("POST", f"{target.base}/Groups", body)
                expect(status, data, f"POST /Groups ({label})", (201,))
                gids[label] = json.loads(data)["id"]
            t0 = time.perf_counter()
            batch = self.args.batch_size
            for label, members in (("small", small_members), ("large", large_members)):
                for i in range(0, len(members), batch):
                    status, data, _ = conn.request(
                        "PATCH", f"{target.base}/Groups/{gids[label]}", add_members_body(members[i : i + batch])
                    )
                    expect(status, data, f"PATCH add {batch} members ({label})", (200, 204))
            build_s = time.perf_counter() - t0
            print(
                f"  8 setup: groups of {small} and {large} members built with PATCH adds of <= {batch} values "
                f"in {build_s:.1f}s",
                flush=True,
            )
            timings: dict[str, list[float]] = {"small": [], "large": []}
            errors = 0
            samples: list[str] = []
            it: Iterator[str] = iter(probes)
            for _ in range(repeats):
                for label in ("small", "large"):  # A B A B ...
                    status, data, elapsed = conn.request(
                        "PATCH", f"{target.base}/Groups/{gids[label]}", add_members_body([next(it)])
                    )
                    if status in (200, 204):
                        timings[label].append(elapsed * 1e3)
                    else:
                        errors += 1
                        if len(samples) < 3:
                            samples.append(f"{status} {data[:300]!r}")
            seen = None
            status, data, _ = conn.request("GET", f"{target.base}/Groups/{gids['large']}")
            if status == 200:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    seen = len(json.loads(data).get("members") or [])
        finally:
            conn.close()
        return ProbeResult(timings["small"], timings["large"], errors, small, large, build_s, seen, samples)


def check_group_size(target: Target, group_id: str, expected: int) -> str:
    conn = Conn(target)
    try:
        status, data, _ = conn.request("GET", f"{target.base}/Groups/{group_id}")
    finally:
        conn.close()
    if status != 200:
        return f"GET /Groups/{{id}} answered HTTP {status}: member count not checked"
    members = json.loads(data).get("members") or []
    verdict = "ok" if len(members) == expected else "MISMATCH"
    return f"first group has {len(members)} members, expected {expected}: {verdict}"


# --------------------------------------------------------------------------------------------------------------------
# Report


def summary_table(results: list[LoadResult]) -> str:
    head = (
        f"{'phase':<34} {'target':<9} {'client':<6} {'reqs':>6} {'errors':>6} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'client CPU':>10} {'server CPU':>10} {'other CPU':>9} {'(postgres)':>10}"
    )
    rows = [
        f"{r.phase:<34} {r.target:<9} {r.client:<6} {r.requests:>6} {r.errors:>6} {r.rate:>8.1f} "
        f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.client_cpu_pct:>9.0f}% {r.server_cpu_pct:>9.0f}% "
        f"{r.other_cpu_pct:>8.0f}% {'' if math.isnan(r.postgres_cpu_s) else f'{r.postgres_cpu_pct:.0f}%':>10}"
        for r in results
        if r.counted
    ]
    return harness.table(head, rows)


def median_rate(results: list[LoadResult], target: str, phase: str = "1 ") -> float:
    rates = [r.rate for r in results if r.counted and r.target == target and r.phase.startswith(phase)]
    return statistics.median(rates) if rates else math.nan


PHASES = {
    "1 ": "POST /Users",
    "3 ": "GET /Users?filter=userName eq",
    "3e": "GET /Users?filter=emails eq",
    "4 ": "GET /Users/{id}",
    "5 ": "PUT /Users/{id}",
    "6 ": "PATCH /Groups add 1 member",
    "7 ": "DELETE /Users/{id}",
}


def ratio_table(results: list[LoadResult], targets: list[Target]) -> str:
    """Each phase's median rate per target, and the ratios the issue's targets are stated in."""
    names = [t.name for t in targets]
    pairs = [(a, "reference") for a in names if a != "reference" and "reference" in names]
    if "sqlite" in names and "postgres" in names:
        pairs.append(("postgres", "sqlite"))
    head = (
        f"{'phase':<32}" + "".join(f"{n + ' /s':>14}" for n in names) + "".join(f"{a + '/' + b:>20}" for a, b in pairs)
    )
    rows = []
    for prefix, label in PHASES.items():
        rates = {n: median_rate(results, n, prefix) for n in names}
        rows.append(
            f"{label:<32}"
            + "".join(f"{rates[n]:>14.1f}" for n in names)
            + "".join(f"{rates[a] / rates[b]:>19.2f}x" for a, b in pairs)
        )
    table = harness.table(head, rows)
    # A phase over in a second or so is at the mercy of one GC pause or checkpoint: two runs of one build differed by
    # up to 17% here with 1,500-request phases at 2,000-5,000/s.
    short = [
        label
        for prefix, label in PHASES.items()
        if any(
            r.counted and r.phase.startswith(prefix) and r.target != "reference" and r.duration_s < STABLE_PHASE_S
            for r in results
        )
    ]
    if short:
        table += (
            f"\nnote: phases under {STABLE_PHASE_S:.0f} s on our servers ({', '.join(short)}): their figures are noisy;"
            " raise --users / --ops (and --traffic-rounds) for stable ratios"
        )
    return table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="SCIM ingest benchmark (JumpCloud-like initial sync, then an IdP's traffic)."
    )
    p.add_argument("--users", type=int, default=5000, help="users POSTed per phase-1 round (default 5000)")
    p.add_argument("--ops", type=int, default=2000, help="requests per phase 3-7 (default 2000)")
    p.add_argument("--groups", type=int, default=100, help="groups POSTed per target before phase 6 (default 100)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent connections (default 8)")
    p.add_argument(
        "--store",
        choices=["sqlite", "postgres", "both"],
        default="sqlite",
        help="the gateway's store(s) under test (default sqlite); PostgreSQL gets a fresh database per run",
    )
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("DSYNC_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server to create the run's database on (env DSYNC_BENCH_POSTGRES_URL)",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        help="with PostgreSQL: also POST through this many `dsync serve` processes on one database at once, each "
        "with its own directory, against one alone (default 1: skip)",
    )
    p.add_argument(
        "--bodies",
        choices=["jumpcloud", "minimal"],
        default="jumpcloud",
        help="user bodies: JumpCloud-shaped (core + enterprise extension, phone, address; default) or minimal "
        "(userName, name, one email)",
    )
    p.add_argument("--skip-reference", action="store_true", help="do not run python-scim's scim2-server")
    p.add_argument("--rounds", type=int, default=2, help="phase-1 rounds per server, alternated A B A B (default 2)")
    p.add_argument(
        "--traffic-rounds",
        type=int,
        default=1,
        help="rounds of each phase 3-7 per server, alternated A B C, C B A (default 1); the ratios take the medians",
    )
    p.add_argument(
        "--reference-patch-ops", type=int, default=300, help="phase-6 requests to scim2-server (slow there; 300)"
    )
    p.add_argument(
        "--reference-filter-ops",
        type=int,
        default=200,
        help="phase-3e (emails filter) requests to scim2-server (it scans every user; 200)",
    )
    p.add_argument(
        "--client",
        choices=["auto", "wrk", "httpx"],
        default="auto",
        help="load client (default: wrk if installed, else httpx)",
    )
    p.add_argument("--small-group-size", type=int, default=10)
    p.add_argument("--large-group-size", type=int, default=10000, help="0 skips phase 8")
    p.add_argument("--probe-repeats", type=int, default=200, help="single-member adds per group in phase 8")
    p.add_argument("--batch-size", type=int, default=500, help="values per PATCH when building the phase-8 groups")
    p.add_argument(
        "--max-phase-seconds",
        type=float,
        default=None,
        help="time bound of one load run (default: 60s + 20 ms per request)",
    )
    harness.add_run_options(p, keep_temp_help="keep the temp dir (database, server logs)")
    p.add_argument("--serve-reference", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = build_parser().parse_args()
    if args.serve_reference:
        serve_reference(args.port)
        return 0
    if not harness.at_least_one(args, ("users", "ops", "groups", "concurrency", "rounds", "instances")):
        return 2

    harness.exit_on_sigterm()
    BODIES["shape"] = args.bodies
    kind = args.client
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "httpx"
    elif kind == "wrk" and not shutil.which("wrk"):
        print("wrk not found (apt-get install -y wrk)", file=sys.stderr)
        return 2
    biggest = max(args.users, args.large_group_size, args.ops)
    max_seconds = args.max_phase_seconds or 60.0 + 0.02 * biggest

    run_id = secrets.token_hex(4)
    seed = secrets.randbits(32)
    tmp = Path(tempfile.mkdtemp(prefix="dsync-bench-"))
    client = LoadClient(kind, args.concurrency, tmp, max_seconds)
    bench = Bench(args, client, run_id, seed)
    targets: list[Target] = []
    extra: list[Target] = []
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    pg_database = f"dsync_bench_{run_id}"
    idle_busy_pct = harness.machine_busy_pct()
    print(
        f"SCIM ingest benchmark  run id {run_id}  seed {seed}  cpus {os.cpu_count()}  "
        f"machine CPU busy before start {idle_busy_pct:.0f}% of one core  load {os.getloadavg()[0]:.2f}"
    )
    if idle_busy_pct > 15:
        print(
            "WARNING: the machine is busy before the benchmark starts: figures will be noisy; compare the ratios "
            "from this run, not absolute rates (see the 'other CPU' column)"
        )
    print(
        f"workload: users/round {args.users}, rounds {args.rounds}, ops/phase {args.ops}, groups {args.groups}, "
        f"concurrency {args.concurrency}, stores {', '.join(stores)}, {args.bodies} user bodies"
    )
    print(f"load client: {client.describe()}")
    probes: dict[str, ProbeResult] = {}
    instances: tuple[list[float], list[float]] | None = None
    try:
        for store in stores:
            if store == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp / 'dsync.db'}"
            else:
                url = create_postgres_database(args.postgres_url, pg_database)
                client.postgres_pid = local_postgres_pid(args.postgres_url)
            target = start_ours(args, tmp, run_id, store=store, database_url=url, name=store)
            targets.append(target)
            print(f"{store}: dsync serve on {harness.LOOPBACK}:{target.port}, {store} store, endpoint {target.base}")
        if not args.skip_reference:
            ref = start_reference(args, tmp)
            targets.append(ref)
            print(
                f"reference: scim2-server {_dist_version('scim2-server')} ASGIApplication + AsyncInMemoryStorage "
                f"under uvicorn {_dist_version('uvicorn')} (1 process, access log off, no auth check, not durable) "
                f"on {harness.LOOPBACK}:{ref.port}"
            )
        print()
        print("phase 1: POST /Users (A B A B between the servers, same bodies per round)")
        created = bench.phase_users(targets)
        print("phases 2-7 on every server in turn (ids of each server's own users)")
        bench.phase_traffic(targets, created)
        for target in targets:
            if target.name == "reference" or args.large_group_size < 1:
                continue
            pool = created[target.name].ids[: -min(args.ops, len(created[target.name].ids))]
            probe = bench.phase_large_vs_small(target, pool)
            probes[target.name] = probe
            print(f"  8 {target.name}: add 1 member, {probe.small_size}-member group: {fmt_ms(probe.small_ms)}")
            print(f"  8 {target.name}: add 1 member, {probe.large_size}-member group: {fmt_ms(probe.large_ms)}")
            for sample in probe.samples:
                print(f"      error sample: {sample}")
        pg = next((t for t in targets if t.store == "postgres"), None)
        if args.instances > 1 and pg is not None:
            for i in range(2, args.instances + 1):
                env_url = _admin_postgres_url(args.postgres_url).set(
                    drivername="postgresql+asyncpg", database=pg_database
                )
                other = start_ours(
                    args,
                    tmp,
                    run_id,
                    store="postgres",
                    database_url=env_url.render_as_string(hide_password=False),
                    name=f"postgres{i}",
                    migrate=False,
                )
                extra.append(other)
            print(
                f"phase 9: POST /Users through {args.instances} dsync serve on one PostgreSQL database, each its own "
                "directory (the client on the same machine)"
            )
            instances = bench.phase_instances(pg, [pg, *extra])
    except Exception as exc:  # report what happened, with the servers' logs, and still clean up
        harness.report_failure(str(exc), [(f"the {t.name} server log", t.log_tail()) for t in [*targets, *extra]])
        return 1
    finally:
        harness.end_run([t.proc for t in [*targets, *extra]], tmp, args.keep_temp)
        if "postgres" in stores:
            drop_postgres_database(args.postgres_url, pg_database)

    print(
        harness.summary_heading(
            118,
            f"SUMMARY (client: {client.kind}; CPU columns are % of one core over the phase; 'other' is the machine's "
            "CPU use outside the client and the server under test: noise, and the local PostgreSQL server's "
            "processes, shown as '(postgres)')",
        )
    )
    print(summary_table(bench.results))
    print()
    print(f"Median req/s per phase and same-run ratios (load average now {os.getloadavg()[0]:.2f}):")
    print(ratio_table(bench.results, targets))
    for name, probe in probes.items():
        if probe.small_ms and probe.large_ms:
            small_med, large_med = statistics.median(probe.small_ms), statistics.median(probe.large_ms)
            print(
                f"{name}: add 1 member, {probe.small_size}-member group median {small_med:.2f} ms, "
                f"{probe.large_size}-member group median {large_med:.2f} ms, ratio {large_med / small_med:.2f} "
                f"(target <= 1.2)"
            )
            expected_large = probe.large_size + len(probe.large_ms)
            if probe.large_members_seen is not None:
                verdict = "ok" if probe.large_members_seen == expected_large else "MISMATCH"
                print(
                    f"  large group read back with {probe.large_members_seen} members, expected {expected_large}: "
                    f"{verdict}"
                )
    if instances is not None:
        alone, together = statistics.median(instances[0]), statistics.median(instances[1])
        print(
            f"POST /Users on PostgreSQL: 1 instance {alone:.1f}/s, {args.instances} instances together "
            f"{together:.1f}/s, ratio {together / alone:.2f}x (target >= 1.6x)"
        )
    errors = sum(r.errors for r in bench.results) + sum(p.errors for p in probes.values())
    if errors:
        print(f"WARNING: {errors} failed requests: figures with errors are not comparable")
        return 3
    return 0


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
