"""Subscription scenarios (a), (b), (c) of issue 15, run by ``bench/subscriptions.py --scenario a|b|c``.

(a) ``--subscribers`` (1,000) on the directory being written, a burst of ``--changes`` (1,000) SCIM creates at
    concurrency 8. (b) 1,000 subscribers spread over 100 directories while ``--rate`` (100) creates per second are
    spread across them for ``--seconds``. (c) (b) plus ``--idle`` (10,000) subscribers on directories nobody writes.

Each prints deliveries/s, SCIM response -> client receipt p50/p99, the SCIM create rate at concurrency 8 with no
subscriber and with them, and the serving process's RSS per subscriber; it checks that every subscriber received
exactly its directory's log after its start, in order (exit code 3 otherwise). ``--roles split`` runs an ingest
process and a realtime process (Redis broadcast, ``--redis-url``), ``all`` one process. ``--batches`` subscribes to
``directoryEventBatches`` instead of ``directoryEvents``. The open-file limit is raised to its hard limit here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson

FIELDS = "cursor event occurredAt data"
PLAIN = "subscription($d: ID, $a: String) { directoryEvents(directoryId: $d, after: $a) { " + FIELDS + " } }"
BATCHES = (
    "subscription($d: ID, $a: String) { directoryEventBatches(directoryId: $d, after: $a, maxBatch: 100) { "
    + FIELDS
    + " } }"
)
ADMIN_KEY = "dsync_admin_bench_scenarios_0123456789abcdef"
CLIENT_SCRIPT = str(Path(__file__).resolve())


# -- client processes: each holds many subscriptions and reports what every one received --------------------------
#
# The subscribers stand in for browsers that run elsewhere; on this 2-core box their CPU competes with the servers',
# so they are as cheap as a real client can be while the run still proves exactly-once and order per subscriber.
# Each subscription is one raw WebSocket (asyncio Protocol on uvloop, no WebSocket library): while events arrive it
# appends the bytes with their arrival time and walks the frame headers (a few operations per frame, to answer
# pings at once); the frames are decoded and their cursors checked only when the orchestrator asks, after the
# measured window. A frame counts as received when its last byte arrived.

_NEXT = b'"type":"next"'


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client-to-server frame (RFC 6455 §5.3: clients mask what they send)."""
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    return head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


_PONG = _masked_frame(1, b'{"type":"pong"}')


class _Subscription(asyncio.Protocol):
    """One subscriber: handshake, ``connection_init``, ``subscribe``, then raw bytes kept for ``collect``."""

    def __init__(self, request: bytes, init: bytes, subscribe: bytes, opened: asyncio.Future[None]) -> None:
        self.request, self.init, self.subscribe, self.opened = request, init, subscribe, opened
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        # (bytes received since the subscribe up to here, when): one per read, not per frame.
        self.marks: list[tuple[int, float]] = []
        self.scan = 0  # where the next frame header starts (the walk during the window)
        self.live = False
        self.problem: str | None = None  # a close, an error or a complete: the subscriber's log will be wrong
        self.log: list[tuple[int, float]] = []  # decoded by ``collect``
        self.parsed = 0  # bytes of ``buf`` already decoded (dropped after decoding)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.problem is None:
            self.problem = f"connection lost: {exc!r}"
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(self.problem))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.live:
            self.marks.append((self.parsed + len(self.buf), time.monotonic()))
            self._walk()
            return
        if self.transport is None or self.opened.done():
            return
        if self.scan == 0:  # the HTTP answer to the upgrade
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(bytes(self.buf[:200]).decode(errors="replace")))
                return
            del self.buf[: end + 4]
            self.scan = -1
            self.transport.write(_masked_frame(1, self.init))
        frame = self._frame(0)
        if frame is None:
            return
        end, _opcode, payload = frame
        if b"connection_ack" not in payload:
            self.opened.set_exception(RuntimeError(f"expected connection_ack, got {payload[:200]!r}"))
            return
        del self.buf[:end]
        self.scan = 0
        self.live = True
        self.marks.append((len(self.buf), time.monotonic()))
        self.transport.write(_masked_frame(1, self.subscribe))
        self.opened.set_result(None)
        self._walk()

    def _frame(self, pos: int) -> tuple[int, int, bytes] | None:
        """The complete frame at ``pos`` of ``buf``: (its end, opcode, payload), or None while it is incomplete."""
        buf = self.buf
        if len(buf) < pos + 2:
            return None
        size, head = buf[pos + 1] & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
        elif size == 127:
            size, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
        end = pos + head + size
        if len(buf) < end or len(buf) < pos + head:
            return None
        return end, buf[pos] & 0x0F, bytes(buf[pos + head : end])

    def _walk(self) -> None:
        """Skip over complete frames by their headers; answer pings, note closes and errors (frames with no
        ``"type":"next"`` near their start: event frames are only skipped here)."""
        buf, pos, n = self.buf, self.scan, len(self.buf)
        while pos + 2 <= n:
            size, head = buf[pos + 1] & 0x7F, 2
            if size >= 126:
                head = 4 if size == 126 else 10
                if pos + head > n:
                    break
                size = int.from_bytes(buf[pos + 2 : pos + head], "big")
            end = pos + head + size
            if end > n:
                break
            if buf[pos] & 0x0F != 1 or buf.find(_NEXT, pos + head, pos + head + 40) < 0:
                self._control(buf[pos] & 0x0F, bytes(buf[pos + head : end]))
            pos = end
        self.scan = pos

    def _control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 9:  # a protocol-level ping (uvicorn's legacy implementation sends them)
            self.transport.write(_masked_frame(10, payload))
        elif opcode == 8:
            self.problem = self.problem or f"closed by the server: {payload[:200]!r}"
        elif opcode == 1:
            kind = orjson.loads(payload).get("type")
            if kind == "ping":
                self.transport.write(_PONG)
            elif kind != "pong":
                self.problem = self.problem or f"unexpected message {payload[:200]!r}"

    def collect(self) -> int:
        """Decode the event frames received so far into (cursor, receipt time); the events decoded in all."""
        buf, marks, pos, mark = self.buf, self.marks, 0, 0
        while (frame := self._frame(pos)) is not None:
            end, opcode, payload = frame
            while marks[mark][0] < self.parsed + end:
                mark += 1
            if opcode == 1 and _NEXT in payload[:40]:
                value = next(iter(orjson.loads(payload)["payload"]["data"].values()))
                at = marks[mark][1]
                self.log.extend((int(item["cursor"]), at) for item in (value if isinstance(value, list) else [value]))
            pos = end
        del buf[:pos]
        self.parsed += pos
        self.scan = max(0, self.scan - pos)
        del marks[:mark]
        return len(self.log)


async def _client(spec: dict[str, Any]) -> None:
    host, port = spec["host"], spec["port"]
    init = orjson.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {ADMIN_KEY}"}})
    loop = asyncio.get_running_loop()
    subscriptions: dict[int, _Subscription] = {}

    # Handshakes in flight per client process. Opened open-loop (500/s per process, whatever the server's pace) the
    # connects outran the server's accepts: its listen queue (uvicorn's backlog, 2,048) filled, the kernel dropped
    # the handshakes' last ACK, and after its SYN-ACK retries (~16 s) reset them ("connection closed while reading
    # HTTP status line" past ~4,000-7,000 connections). Real clients back off and retry; the bench paces instead.
    opening = asyncio.Semaphore(spec.get("in_flight", 64))

    async def one(index: int, directory: str, after: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws"
            "\r\n\r\n"
        ).encode()
        payload = {"query": spec["query"], "variables": {"d": directory, "a": after}}
        subscribe = orjson.dumps({"type": "subscribe", "id": "1", "payload": payload})
        async with opening:
            opened: asyncio.Future[None] = loop.create_future()
            subscription = _Subscription(request, init, subscribe, opened)
            await loop.create_connection(lambda: subscription, host, port)
            await opened
        subscriptions[index] = subscription

    started = time.monotonic()
    tasks = [asyncio.create_task(one(index, directory, after)) for index, directory, after in spec["subs"]]
    while len(subscriptions) < len(tasks):
        failed = [task for task in tasks if task.done() and task.exception()]
        if failed:
            # One line the orchestrator prints: how many failed, when, and the first error (not 5,000 tracebacks).
            error = failed[0].exception()
            print(
                f"{len(failed)} of {len(tasks)} subscriptions failed {time.monotonic() - started:.1f}s after the "
                f"first connect, with {len(subscriptions)} ready: {error!r} (cause {error.__cause__!r})",
                flush=True,
            )
            os._exit(1)
        await asyncio.sleep(0.1)
    print("ready", flush=True)
    # "count" asks how many events this process has received so far (decoding what arrived since the last count:
    # the orchestrator asks only once the measured window is over); "stop" asks for the logs.
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "count":
        sys.stdout.write(f"{sum(s.collect() for s in subscriptions.values())}\n")
        sys.stdout.flush()
    for subscription in subscriptions.values():
        subscription.collect()
    out = {str(k): s.log for k, s in subscriptions.items()}
    problems = {str(k): s.problem for k, s in subscriptions.items() if s.problem}
    sys.stdout.write(orjson.dumps({"logs": out, "problems": problems}).decode() + "\n")
    sys.stdout.flush()
    os._exit(0)


# -- the run ------------------------------------------------------------------------------------------------------


def _raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _gql(http: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(str(body["errors"]))
    return dict(body["data"])


async def _create(http: httpx.AsyncClient, directory: dict[str, Any], name: str) -> float:
    response = await http.post(
        f"/scim/v2/{directory['id']}/Users",
        json={"userName": name, "active": True},
        headers={"Authorization": f"Bearer {directory['token']}"},
    )
    if response.status_code != 201:
        raise RuntimeError(f"SCIM create answered {response.status_code}: {response.text[:200]}")
    return time.monotonic()


async def _burst(
    http: httpx.AsyncClient, directories: list[dict[str, Any]], count: int, tag: str
) -> tuple[float, list[tuple[int, float]]]:
    """``count`` creates at concurrency 8, round-robin over the directories: creates per second, and (directory
    index, response time) of each."""
    queue = list(range(count))
    done: list[tuple[int, float]] = []
    start = time.monotonic()

    async def worker() -> None:
        while queue:
            i = queue.pop()
            d = i % len(directories)
            done.append((d, await _create(http, directories[d], f"{tag}{i}@acme.test")))

    await asyncio.gather(*(worker() for _ in range(8)))
    return count / (time.monotonic() - start), done


async def _paced(
    http: httpx.AsyncClient, directories: list[dict[str, Any]], rate: float, seconds: float
) -> list[tuple[int, float]]:
    """Creates at ``rate`` per second (open loop) for ``seconds``: (directory index, response time) of each."""
    done: list[tuple[int, float]] = []
    start = time.monotonic()
    tasks = []
    i = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)
        d = i % len(directories)

        async def one(n: int = i, d: int = d) -> None:
            done.append((d, await _create(http, directories[d], f"paced{n}@acme.test")))

        tasks.append(asyncio.create_task(one()))
        i += 1
    await asyncio.gather(*tasks)
    return done


async def _log(http: httpx.AsyncClient, directory_id: str, after: str) -> list[int]:
    cursors: list[int] = []
    query = (
        "query($d: ID, $a: String) { events(directoryId: $d, first: 100, after: $a) "
        "{ edges { node { cursor } } pageInfo { hasNextPage endCursor } } }"
    )
    page_after: str | None = None
    while True:
        data = (await _gql(http, query, {"d": directory_id, "a": page_after}))["events"]
        cursors += [int(edge["node"]["cursor"]) for edge in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        page_after = data["pageInfo"]["endCursor"]
    return [c for c in cursors if c > int(after)]


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process, this one (the SCIM client) and the whole machine."""
    now = {name: harness.proc_cpu_seconds(pid) for name, pid in pids.items()}
    now["scim_client"] = time.process_time()
    now["machine"] = harness.machine_busy_seconds()
    return now


def _cpu_pct(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """% of one core each used between two ``_cpu`` samples; "other" is the rest of the machine (noise, the
    database, the webhook child)."""
    used = {name: after[name] - before[name] for name in before}
    machine = used.pop("machine")
    used["other"] = machine - sum(used.values())
    return {name: round(100 * value / max(seconds, 1e-9)) for name, value in used.items()}


def _clients_sum(before: dict[str, float], after: dict[str, float]) -> float:
    return sum(after[name] - before[name] for name in before if name.startswith("client"))


def _merge_clients(pcts: dict[str, float]) -> dict[str, float]:
    merged = {name: value for name, value in pcts.items() if not name.startswith("client")}
    merged["clients"] = sum(value for name, value in pcts.items() if name.startswith("client"))
    return merged


def _pct(values: list[float], q: float) -> float:
    return harness.percentile(sorted(values), q) if values else float("nan")


async def run(args: argparse.Namespace) -> int:
    nofile = _raise_nofile()
    scenario = args.scenario
    writers = 1 if scenario == "a" else args.directories
    subscribers = args.subscribers
    idle = args.idle if scenario == "c" else 0
    tmp = Path(tempfile.mkdtemp(prefix="dsync-bench-scenarios-"))
    dsync = harness.find_dsync(args.dsync)
    port = args.port or harness.free_port()
    env = harness.dsync_env(f"sqlite+aiosqlite:///{tmp}/dsync.db", port)
    env.update(DSYNC_ADMIN_KEY=ADMIN_KEY, DSYNC_GRAPHQL_RATE_LIMIT="0", DSYNC_SCIM_RATE_LIMIT="0")
    env.update(DSYNC_WS_IMPLEMENTATION=args.ws)
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[asyncio.subprocess.Process] = []
    print(
        f"scenario ({scenario}) roles={args.roles} ws={args.ws} field={'batches' if args.batches else 'plain'} "
        f"open-file limit {nofile}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        harness.run_migrate(dsync, env, tmp)
        if args.roles == "split":
            env["DSYNC_BROADCAST_URL"] = args.redis_url
            rt_port = harness.free_port()  # not port + 1: another process may hold that one
            procs.append(
                harness.start_server(
                    "ingest",
                    [dsync, "serve", "--port", str(port), "--role", "ingest"],
                    env,
                    tmp,
                    tmp / "ingest.log",
                    port=port,
                    ready_path="/readyz",
                    timeout=60,
                )
            )
            procs.append(
                harness.start_server(
                    "realtime",
                    [dsync, "serve", "--port", str(rt_port), "--role", "realtime"],
                    env,
                    tmp,
                    tmp / "realtime.log",
                    port=rt_port,
                    ready_path="/readyz",
                    timeout=60,
                )
            )
        else:
            rt_port = port
            procs.append(
                harness.start_server(
                    "server",
                    [dsync, "serve", "--port", str(port)],
                    env,
                    tmp,
                    tmp / "server.log",
                    port=port,
                    ready_path="/readyz",
                    timeout=60,
                )
            )
        serving = procs[-1].pid
        base = f"http://{harness.LOOPBACK}:{port}"
        async with httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=300,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
        ) as http:
            org = await _gql(http, 'mutation { createOrganization(name: "Acme") { id } }', {})
            org_id = org["createOrganization"]["id"]
            directories = []
            for n in range(writers + (1 if idle else 0)):
                made = await _gql(
                    http,
                    "mutation($o: ID!, $n: String!) { createDirectory(organizationId: $o, "
                    "name: $n) { bearerToken directory { id } } }",
                    {"o": org_id, "n": f"d{n}"},
                )
                directories.append(
                    {"id": made["createDirectory"]["directory"]["id"], "token": made["createDirectory"]["bearerToken"]}
                )
            written, quiet = directories[:writers], directories[writers:]
            alone, _ = await _burst(http, written, args.changes, "alone")  # ingest with no subscriber
            head = await _gql(http, "{ events(last: 1) { edges { node { cursor } } } }", {})
            start = head["events"]["edges"][0]["node"]["cursor"]
            rss0 = harness.rss_bytes(serving)
            subs = [(i, written[i % writers]["id"], start) for i in range(subscribers)]
            subs += [(subscribers + i, quiet[0]["id"], start) for i in range(idle)]
            query = BATCHES if args.batches else PLAIN
            per = (len(subs) + args.client_processes - 1) // args.client_processes
            t0 = time.monotonic()
            for k in range(args.client_processes):
                spec = {
                    "host": harness.LOOPBACK,
                    "port": rt_port,
                    "query": query,
                    "subs": subs[k * per : (k + 1) * per],
                }
                spec_path = tmp / f"client{k}.json"  # 10,000 subscriptions do not fit in an argument list
                spec_path.write_text(json.dumps(spec))
                client = await asyncio.create_subprocess_exec(
                    *(["nice", "-n", str(args.client_nice)] if args.client_nice else []),
                    sys.executable,
                    CLIENT_SCRIPT,
                    "--client",
                    str(spec_path),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=1 << 30,
                )
                clients.append(client)
            for client in clients:
                assert client.stdout is not None
                line = await asyncio.wait_for(client.stdout.readline(), 600)
                if line.strip() != b"ready":
                    raise RuntimeError(f"a client process failed: {line[:300]!r}")
            await asyncio.sleep(1)
            rss1 = harness.rss_bytes(serving)
            # The server's CPU with every subscriber connected and nothing written: keepalive pings and pongs of
            # 11,000 connections cost ~0.1 s/s, so "delivery is over" below means "back to this", not "zero".
            idle0 = harness.proc_cpu_seconds(serving)
            await asyncio.sleep(3)
            idle_rate = (harness.proc_cpu_seconds(serving) - idle0) / 3
            print(
                f"{len(subs)} subscribers connected in {time.monotonic() - t0:.1f}s; serving RSS "
                f"{rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB: {(rss1 - rss0) / len(subs) / 1024:.1f} KiB per "
                "subscriber",
                flush=True,
            )
            pids = {"ingest_server": procs[0].pid}
            if len(procs) > 1:
                pids["realtime_server"] = serving
            pids.update({f"client{k}": client.pid for k, client in enumerate(clients)})
            cpu0 = harness.proc_cpu_seconds(serving)
            w0 = time.monotonic()
            if scenario == "a":
                sample0 = _cpu(pids)
                with_subs, responses = await _burst(http, written, args.changes, "with")
                burst_cpu = _cpu_pct(sample0, _cpu(pids), args.changes / with_subs)
            else:
                responses = await _paced(http, written, args.rate, args.seconds)
                sample0 = _cpu(pids)
                with_subs, _ = await _burst(http, written, args.changes, "with")
                burst_cpu = _cpu_pct(sample0, _cpu(pids), args.changes / with_subs)
            # Wait until every subscriber has its directory's log.
            logs = {d["id"]: await _log(http, d["id"], start) for d in written}
            expected_total = sum(len(logs[d]) for _, d, _ in subs if d in logs)
            for client in clients:
                assert client.stdin is not None
            deadline = time.monotonic() + args.timeout
            results: dict[str, list[list[float]]] = {}
            problems: dict[str, str] = {}
            # Give delivery time, then collect (a client reports only when asked).
            await asyncio.sleep(2)
            while True:
                idle_cpu = harness.proc_cpu_seconds(serving)
                await asyncio.sleep(1)
                if harness.proc_cpu_seconds(serving) - idle_cpu < idle_rate + 0.05 or time.monotonic() > deadline:
                    break
            w1 = time.monotonic()
            cpu1 = harness.proc_cpu_seconds(serving)
            clients_window = _cpu(pids)
            # The server is done; the clients may still be reading what it sent. Wait until they have read every
            # event, or their count stops growing (then what is missing is missing).
            last, still = -1, 0
            while time.monotonic() < deadline and still < 3:
                counted = 0
                for client in clients:
                    assert client.stdin is not None and client.stdout is not None
                    client.stdin.write(b"count\n")
                    await client.stdin.drain()
                    counted += int(await asyncio.wait_for(client.stdout.readline(), 60))
                if counted >= expected_total:
                    break
                still = still + 1 if counted == last else 0
                last = counted
                await asyncio.sleep(1)
            clients_counted = _cpu(pids)
            for client in clients:
                assert client.stdin is not None and client.stdout is not None
                client.stdin.write(b"stop\n")
                await client.stdin.drain()
                reported = orjson.loads(await asyncio.wait_for(client.stdout.readline(), 300))
                results.update(reported["logs"])
                problems.update(reported["problems"])
        # Check and summarise.
        bad = 0
        gaps = 0  # of those, subscribers whose log is not a prefix of the directory's (a gap, a repeat, a reorder)
        delivered = 0
        last_receipt = 0.0
        latencies: list[float] = []
        by_cursor_response: dict[int, float] = {}
        for index, directory, _after in subs:
            got = [] if str(index) in problems else results.get(str(index), [])
            cursors = [int(c) for c, _t in got]
            delivered += len(cursors)
            wanted = logs.get(directory, [])
            if cursors != wanted:
                bad += 1
                if cursors != wanted[: len(cursors)]:
                    gaps += 1
            if got:
                last_receipt = max(last_receipt, max(t for _c, t in got))
        # The measured phase came first after ``start``: per directory, its k-th response <-> its k-th event.
        for d_index, directory in enumerate(written):
            times = sorted(t for d, t in responses if d == d_index)
            for cursor, responded in zip(logs[directory["id"]], times, strict=False):
                by_cursor_response[cursor] = responded
        for index, _directory, _after in subs[:subscribers]:
            for got_cursor, received_at in results.get(str(index), []):
                if int(got_cursor) in by_cursor_response:
                    latencies.append((received_at - by_cursor_response[int(got_cursor)]) * 1000)
        span = max(last_receipt - w0, 1e-9)
        print(
            json.dumps(
                {
                    "scenario": scenario,
                    "subscribers": subscribers,
                    "idle_subscribers": idle,
                    "deliveries": delivered,
                    "expected": expected_total,
                    "deliveries_per_s": round(delivered / span),
                    "first_write_to_last_receipt_s": round(span, 2),
                    "last_response_to_last_receipt_s": round(last_receipt - max(t for _d, t in responses), 2),
                    "receipt_minus_response_ms_p50": round(_pct(latencies, 50), 1),
                    "receipt_minus_response_ms_p99": round(_pct(latencies, 99), 1),
                    "ingest_per_s_without_subscribers": round(alone),
                    "ingest_per_s_with_subscribers": round(with_subs),
                    "ingest_ratio": round(with_subs / alone, 2),
                    "rss_per_subscriber_kib": round((rss1 - rss0) / len(subs) / 1024, 1),
                    "serving_cpu_s": round(cpu1 - cpu0, 1),
                    "serving_idle_cpu_per_s": round(idle_rate, 3),
                    # % of one core during the measured burst: each server, the subscribers' client processes
                    # (together), this process (the SCIM client), the rest of the machine.
                    "cpu_pct_during_burst": _merge_clients(burst_cpu),
                    # The client processes' CPU seconds while events arrived, and decoding them afterwards.
                    "clients_cpu_s_window": round(_clients_sum(sample0, clients_window), 1),
                    "clients_cpu_s_decoding_after": round(_clients_sum(clients_window, clients_counted), 1),
                    "subscribers_with_problems": len(problems),
                    "window_s": round(w1 - w0, 1),
                    "subscribers_with_wrong_log": bad,
                    "subscribers_with_gaps": gaps,
                    "load": os.getloadavg()[0],
                }
            ),
            flush=True,
        )
        for index, problem in list(problems.items())[:3]:
            print(f"subscriber {index}: {problem}", file=sys.stderr)
        return 3 if bad or delivered != expected_total else 0
    finally:
        for client in clients:
            if client.returncode is None:
                client.kill()
        for proc in procs:
            harness.stop_process(proc)
        harness.remove_temp(tmp, args.keep_temp)


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        choices=["a", "b", "c"],
        default=None,
        help="run scenario a, b or c (see "
        "bench/subscription_scenarios.py); without it, the detailed burst benchmark below",
    )
    p.add_argument("--directories", type=int, default=100, help="(b, c) directories written (100)")
    p.add_argument("--rate", type=float, default=100.0, help="(b, c) SCIM creates per second (100)")
    p.add_argument("--seconds", type=float, default=20.0, help="(b, c) how long the paced writes run (20)")
    p.add_argument("--idle", type=int, default=10_000, help="(c) idle subscribers (10,000)")
    p.add_argument("--roles", choices=["all", "split"], default="all", help="one process, or ingest + realtime")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/2", help="broadcaster for --roles split")
    p.add_argument("--ws", default="websockets-sansio", help="DSYNC_WS_IMPLEMENTATION of the server")
    p.add_argument("--batches", action="store_true", help="subscribe to directoryEventBatches")


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--client":
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_client(json.loads(Path(sys.argv[2]).read_text())))
