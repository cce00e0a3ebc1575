"""Tenant B's SCIM latency with and without tenant A at its worst, against a real ``dsync serve``, on SQLite and
PostgreSQL (``--store both``, the default).

B provisions and reads sequentially (a POST of a user, then a filtered GET, ``--requests`` times, at most ``--b-rate``
requests a second: within its directory's own rate limit); A, from other
threads, sends the worst each limit allows: the largest PATCH (every operation a filter no index narrows) on a user
with the most values allowed, a flood with a wrong token, bodies nested too deep, PATCHes over the limits, the most
expensive GraphQL query the default budget allows over HTTP and over graphql-transport-ws (A's key, A's directory of
users in groups: ~7,200 user objects per query), and an over-budget query. A ignores every refusal and asks again at
once. Prints, per store, B's p50/p99 alone and under A, their ratio, A's answers, then one summary against the
targets (B's p99 under A within 2x of alone and under 100 ms); fails on any 5xx or if B's data is not exactly what
B sent. Every limit is at its default.

    python bench/noisy_neighbour.py                  # both stores
    python bench/noisy_neighbour.py --store sqlite
    python bench/noisy_neighbour.py --a-nice 10      # A's client below B and the server (it would be elsewhere)
    python bench/noisy_neighbour.py --store postgres --postgres-url postgresql+asyncpg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

LIMITS = {"operations": 100, "values": 100}  # the gateway's defaults (DSYNC_SCIM_MAX_PATCH_OPERATIONS / _VALUES)
A_USERS, A_GROUPS = 40, 20  # A's GraphQL data: every user in every group
# The most expensive query the default budget (2,000) allows: cost 1 + 1 + 100 x 9 x 2 = 1,802.
WORST_QUERY = (
    "query($id: ID!) { directory(id: $id) { groups(first: 100) { edges { node { "
    + " ".join(f"m{i}: members(first: 100) {{ totalCount edges {{ node {{ id userName }} }} }}" for i in range(9))
    + " } } } } }"
)
# Over the budget (each user's groups' members): refused before it runs.
TOO_COSTLY_QUERY = (
    "query($id: ID!) { directory(id: $id) { users(first: 100) { edges { node { groups { "
    + " ".join(f"m{i}: members(first: 100) {{ totalCount }}" for i in range(28))
    + " } } } } } }"
)


def _worst_patch(operations: int, values: int) -> bytes:
    ops = [
        {"op": "replace", "path": f'emails[value co "e{i % values}@"].type', "value": f"t{i}"}
        for i in range(operations)
    ]
    return json.dumps({"schemas": [harness.PATCH_URN], "Operations": ops}).encode()


def _tenant_b(
    port: int, token: str, base: str, tag: str, count: int, rate: float
) -> tuple[list[float], list[int], list[str]]:
    """B's requests, started at most ``rate`` a second: B stays within its directory's rate limit (on a quiet machine
    back-to-back requests would pass 200/s, and B's own 429s are not what this measures)."""
    conn = harness.Conn(port, harness.scim_headers(token))
    latencies: list[float] = []
    statuses: list[int] = []
    ids: list[str] = []
    interval = 1 / rate if rate > 0 else 0.0
    next_at = time.perf_counter()

    def pace() -> None:
        nonlocal next_at
        wait = next_at - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        next_at = max(next_at + interval, time.perf_counter() - interval)

    try:
        for i in range(count):
            pace()
            body = json.dumps({"userName": f"{tag}{i}@b.test", "emails": [{"value": f"{tag}{i}@b.test"}]}).encode()
            status, data, elapsed = conn.request("POST", f"{base}/Users", body)
            statuses.append(status)
            latencies.append(elapsed)
            if status == 201:
                ids.append(json.loads(data)["id"])
            pace()
            status, _, elapsed = conn.request("GET", f"{base}/Users?filter=userName%20eq%20%22{tag}{i}@b.test%22")
            statuses.append(status)
            latencies.append(elapsed)
    finally:
        conn.close()
    return latencies, statuses, ids


def _attacker(port: int, token: str, method: str, path: str, body: bytes, stop: Any, seen: Any) -> None:
    conn = harness.Conn(port, harness.scim_headers(token))
    try:
        while not stop.is_set():
            status, _, _ = conn.request(method, path, body)
            seen[status] += 1
    finally:
        conn.close()


def _tenant_a(targets: list[tuple[str, tuple[Any, ...]]], stop: Any, answers: Any, nice: int = 0) -> None:
    """Tenant A's process: one thread per attack until ``stop``; then every answer counted, by attack. ``nice``:
    the OS priority it lowers itself by (``--a-nice``)."""
    if nice > 0:
        os.nice(nice)
    seen: dict[str, collections.Counter[Any]] = {
        k: collections.Counter() for k in ("worst", "flood", "deep", "over", "gql", "gql-ws", "gql-over")
    }
    functions = {"scim": _attacker, "gql": _graphql_attacker, "gql-ws": _graphql_ws_attacker}
    threads = [
        threading.Thread(target=functions[what], args=(*args[:-1], stop, seen[args[-1]]), daemon=True)
        for what, args in targets
    ]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout=120)
    answers.put(seen)


def _graphql_codes(data: bytes | str) -> list[str]:
    try:
        errors = json.loads(data).get("errors") or []
    except (ValueError, AttributeError):
        return ["unparsable"]
    return [str((e.get("extensions") or {}).get("code", "?")) for e in errors] or ["OK"]


def _graphql_attacker(port: int, key: str, query: str, directory_id: str, stop: Any, seen: Any) -> None:
    """A's GraphQL client over HTTP: the same query again as soon as it is answered, whatever the answer."""
    conn = harness.Conn(port, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    body = json.dumps({"query": query, "variables": {"id": directory_id}}).encode()
    try:
        while not stop.is_set():
            status, data, _ = conn.request("POST", "/graphql", body)
            seen[status] += 1
            for code in _graphql_codes(data):
                seen[code] += 1
    finally:
        conn.close()


def _graphql_ws_attacker(port: int, key: str, directory_id: str, stop: Any, seen: Any) -> None:
    """A's GraphQL client over graphql-transport-ws: the worst query as one operation after another."""
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    async def run() -> None:
        url = f"ws://{harness.LOOPBACK}:{port}/graphql"
        async with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], max_size=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            n = 0
            while not stop.is_set():
                n += 1
                payload = {"query": WORST_QUERY, "variables": {"id": directory_id}}
                await ws.send(json.dumps({"type": "subscribe", "id": str(n), "payload": payload}))
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "next":
                        for code in _graphql_codes(json.dumps(message["payload"])):
                            seen[code] += 1
                    elif message["type"] == "error":
                        for error in message["payload"]:
                            seen[str((error.get("extensions") or {}).get("code", "?"))] += 1
                        break
                    elif message["type"] == "complete":
                        break
                    elif message["type"] == "ping":
                        await ws.send(json.dumps({"type": "pong"}))

    try:
        asyncio.run(run())
    except Exception as error:  # a closed connection shows in A's answers, not as a crash of the bench
        seen[f"ws closed: {type(error).__name__}"] += 1


def _seed_graphql(port: int, directory: dict[str, Any]) -> None:
    conn = harness.Conn(port, harness.scim_headers(str(directory["bearer_token"])))
    base = f"/scim/v2/{directory['id']}"
    ids = []
    try:
        for i in range(A_USERS):
            status, data, _ = conn.request("POST", f"{base}/Users", json.dumps({"userName": f"m{i}@a.test"}).encode())
            assert status == 201, data
            ids.append(json.loads(data)["id"])
        for g in range(A_GROUPS):
            body = {"displayName": f"G{g}", "members": [{"value": user_id} for user_id in ids]}
            status, data, _ = conn.request("POST", f"{base}/Groups", json.dumps(body).encode())
            assert status == 201, data
    finally:
        conn.close()


def _summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return harness.percentile(ordered, 50) * 1000, harness.percentile(ordered, 99) * 1000


@dataclass
class Figures:
    store: str
    alone: tuple[float, float]
    noisy: tuple[float, float]
    ok: bool


def run(args: argparse.Namespace, tmp: Path, store: str, database_url: str) -> Figures:
    dsync = harness.find_dsync(args.dsync)
    port = harness.free_port()
    url = f"sqlite+aiosqlite:///{tmp / 'dsync.db'}" if store == "sqlite" else database_url
    env = harness.dsync_env(url, port)  # every limit at its default
    harness.run_migrate(dsync, env, tmp)
    a = harness.create_jumpcloud_directory(dsync, env, tmp, organization="A", directory="A")
    b = harness.create_jumpcloud_directory(dsync, env, tmp, organization="B", directory="B")
    log = tmp / "server.log"
    server = harness.start_server(
        "dsync",
        [dsync, "serve", "--port", str(port)],
        env,
        tmp,
        log,
        port=port,
        ready_path="/healthz",
        timeout=args.startup_timeout,
    )
    try:
        base_a, base_b = f"/scim/v2/{a['id']}", f"/scim/v2/{b['id']}"
        values, operations = LIMITS["values"], LIMITS["operations"]
        setup = harness.Conn(port, harness.scim_headers(a["bearer_token"]))
        emails = [{"value": f"e{i}@a.test", "type": "work"} for i in range(values)]
        status, data, _ = setup.request(
            "POST", f"{base_a}/Users", json.dumps({"userName": "big@a.test", "emails": emails}).encode()
        )
        assert status == 201, data
        big = f"{base_a}/Users/{json.loads(data)['id']}"
        setup.close()
        _seed_graphql(port, a)
        key = str(
            harness.run_cli_json(
                [dsync, "api-keys", "create", "--organization", str(a["organization_id"]), "--json"], env, tmp
            )["key"]
        )
        b_token, rate = str(b["bearer_token"]), args.b_rate
        _tenant_b(port, b_token, base_b, "warm", 20, rate)  # warm-up: B is known to the gateway

        alone, statuses_alone, ids_alone = _tenant_b(port, b_token, base_b, "alone", args.requests, rate)
        deep = b'{"userName": "deep@a.test", "x": ' + b"[" * 300 + b"]" * 300 + b"}"
        over = _worst_patch(operations + 1, values)
        attackers = [
            ("worst", a["bearer_token"], "PATCH", big, _worst_patch(operations, values)),
            ("worst", a["bearer_token"], "PATCH", big, _worst_patch(operations, values)),
            ("flood", "dsync_scim_wrong", "POST", f"{base_b}/Users", b'{"userName": "x@b.test"}'),
            ("flood", "dsync_scim_wrong", "POST", f"{base_b}/Users", b'{"userName": "x@b.test"}'),
            ("deep", a["bearer_token"], "POST", f"{base_a}/Users", deep),
            ("over", a["bearer_token"], "PATCH", big, over),
        ]
        targets: list[tuple[str, tuple[Any, ...]]] = [
            ("scim", (port, token, method, path, body, kind)) for kind, token, method, path, body in attackers
        ]
        if args.graphql:
            for kind, query in (("gql", WORST_QUERY), ("gql", WORST_QUERY), ("gql-over", TOO_COSTLY_QUERY)):
                targets.append(("gql", (port, key, query, str(a["id"]), kind)))
            targets.append(("gql-ws", (port, key, str(a["id"]), "gql-ws")))
        if args.attacks:  # one attack (or a few) alone: which one reaches B's slowest requests
            targets = [target for target in targets if target[1][-1] in args.attacks.split(",")]
        # A runs in a process of its own, as a client on another machine would: A's threads in B's process would
        # make B wait for the client's own GIL (A parses answers of ~7,200 users), which is no measure of the server.
        stop = multiprocessing.Event()
        answers: multiprocessing.Queue[dict[str, collections.Counter[Any]]] = multiprocessing.Queue()
        tenant_a = multiprocessing.Process(target=_tenant_a, args=(targets, stop, answers, args.a_nice), daemon=True)
        tenant_a.start()
        time.sleep(1.0)
        try:
            noisy, statuses_noisy, ids_noisy = _tenant_b(port, b_token, base_b, "noisy", args.requests, rate)
        finally:
            stop.set()
            seen = answers.get(timeout=180)
            tenant_a.join(timeout=30)

        check = harness.Conn(port, harness.scim_headers(b["bearer_token"]))
        stored: dict[str, str] = {}
        while True:  # every page: B holds more users than one page may (DSYNC_SCIM_MAX_PAGE_SIZE)
            status, data, _ = check.request("GET", f"{base_b}/Users?count=500&startIndex={len(stored) + 1}")
            resources = json.loads(data)["Resources"] if status == 200 else []
            stored.update({u["id"]: u["userName"] for u in resources})
            if not resources:
                break
        check.close()
        expected = set(ids_alone) | set(ids_noisy)
        intact = expected <= set(stored) and len(stored) == 20 + 2 * args.requests
        p50_a, p99_a = _summary(alone)
        p50_n, p99_n = _summary(noisy)
        rows = [
            f"{'B alone':<22}{p50_a:>10.1f}{p99_a:>10.1f}",
            f"{'B with A at its worst':<22}{p50_n:>10.1f}{p99_n:>10.1f}",
            f"{'ratio':<22}{p50_n / p50_a:>9.2f}x{p99_n / p99_a:>9.2f}x",
        ]
        print(harness.summary_heading(60, f"noisy neighbour, {store}: {args.requests} B POST+GET pairs"))
        print(harness.table(f"{'':<22}{'p50 ms':>10}{'p99 ms':>10}", rows))
        for kind, counter in seen.items():
            if counter:
                print(f"A {kind:<8} answers: {dict(sorted(counter.items(), key=str))}")
        all_statuses = [
            *statuses_alone,
            *statuses_noisy,
            *(s for c in seen.values() for s in c if isinstance(s, int)),
        ]
        fives = [s for s in all_statuses if s >= 500]
        b_failed = [s for s in [*statuses_alone, *statuses_noisy] if s not in (200, 201)]
        failed_by_status = dict(sorted(collections.Counter(b_failed).items()))
        print(
            f"B failures: {len(b_failed)} {failed_by_status or ''}; 5xx anywhere: {len(fives)}; "
            f"B's data intact: {intact}"
        )
        print(f"machine busy (other processes included): {harness.machine_busy_pct():.0f}%")
        ok = not (fives or b_failed or not intact)
        if not ok:
            harness.report_failure("B was affected", [("server", harness.log_tail(log))])
        return Figures(store, (p50_a, p99_a), (p50_n, p99_n), ok)
    finally:
        harness.stop_process(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--no-graphql", dest="graphql", action="store_false", help="leave A's GraphQL attacks out (SCIM only)"
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        help="a database beside which a fresh one is created and dropped (--store postgres)",
    )
    parser.add_argument("--requests", type=int, default=300, help="B's POST+GET pairs in each phase")
    parser.add_argument(
        "--b-rate",
        type=float,
        default=150.0,
        help="B's requests per second at most (its directory's limit is 200/s, bursts of 400); 0: back to back",
    )
    parser.add_argument(
        "--attacks",
        default="",
        help="only these of A's attacks, comma-separated (default all): worst flood deep over gql gql-ws gql-over",
    )
    parser.add_argument(
        "--a-nice",
        type=int,
        default=0,
        help="run A's client process at this nice level (0: as B). On a real deployment A's client is on another "
        "machine; here it parses ~7,200-user answers on the server's own cores, CPU no server can keep for B",
    )
    harness.add_run_options(parser, keep_temp_help="keep the temp dir (database, server log)")
    args = parser.parse_args()
    if not harness.at_least_one(args, ["requests"]):
        return 2
    harness.exit_on_sigterm()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results = [_run_store(args, store) for store in stores]
    rows = []
    for figures in results:
        (p50_a, p99_a), (p50_n, p99_n) = figures.alone, figures.noisy
        met = p99_n <= 2 * p99_a and p99_n < 100
        rows.append(
            f"{figures.store:<10}{p50_a:>8.1f}{p99_a:>8.1f}{p50_n:>8.1f}{p99_n:>8.1f}{p99_n / p99_a:>8.2f}x"
            f"   {'met' if met else 'NOT met'}{'' if figures.ok else '  (B AFFECTED)'}"
        )
    print(harness.summary_heading(78, "B's SCIM latency (ms), alone and with A at its worst"))
    head = f"{'store':<10}{'p50':>8}{'p99':>8}{'p50 A':>8}{'p99 A':>8}{'p99 x':>9}   target (p99 <= 2x and < 100 ms)"
    print(harness.table(head, rows))
    return 0 if all(figures.ok for figures in results) else 1


def _run_store(args: argparse.Namespace, store: str) -> Figures:
    tmp = Path(tempfile.mkdtemp(prefix="dsync-noisy-"))
    admin_url, name = args.postgres_url, f"dsync_noisy_{uuid.uuid4().hex[:8]}"
    try:
        url = ""
        if store == "postgres":  # a fresh database beside the given one, dropped at the end
            _postgres_admin(admin_url, f'CREATE DATABASE "{name}"')
            url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        return run(args, tmp, store, url)
    finally:
        if store == "postgres":
            _postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        harness.remove_temp(tmp, args.keep_temp)


def _postgres_admin(url: str, statement: str) -> None:
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def execute() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(statement))
        await engine.dispose()

    asyncio.run(execute())


if __name__ == "__main__":
    sys.exit(main())
