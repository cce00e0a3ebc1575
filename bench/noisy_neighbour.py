"""Tenant B's SCIM latency with and without tenant A at its worst, against a real ``dsync serve``.

B provisions and reads sequentially (a POST of a user, then a filtered GET, ``--requests`` times); A, from other
threads, sends the worst each SCIM limit allows: the largest PATCH (every operation a filter no index narrows) on a
user with the most values allowed, a flood with a wrong token, bodies nested too deep, and PATCHes over the limits.
Prints B's p50/p99 alone and under A, their ratio, A's answers, and fails on any 5xx or if B's data is not exactly
what B sent.

    python bench/noisy_neighbour.py --store sqlite
    python bench/noisy_neighbour.py --store postgres --postgres-url postgresql+asyncpg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import harness

LIMITS = {"operations": 100, "values": 100}  # the gateway's defaults (DSYNC_SCIM_MAX_PATCH_OPERATIONS / _VALUES)


def _worst_patch(operations: int, values: int) -> bytes:
    ops = [
        {"op": "replace", "path": f'emails[value co "e{i % values}@"].type', "value": f"t{i}"}
        for i in range(operations)
    ]
    return json.dumps({"schemas": [harness.PATCH_URN], "Operations": ops}).encode()


def _tenant_b(port: int, token: str, base: str, tag: str, count: int) -> tuple[list[float], list[int], list[str]]:
    conn = harness.Conn(port, harness.scim_headers(token))
    latencies: list[float] = []
    statuses: list[int] = []
    ids: list[str] = []
    try:
        for i in range(count):
            body = json.dumps({"userName": f"{tag}{i}@b.test", "emails": [{"value": f"{tag}{i}@b.test"}]}).encode()
            status, data, elapsed = conn.request("POST", f"{base}/Users", body)
            statuses.append(status)
            latencies.append(elapsed)
            if status == 201:
                ids.append(json.loads(data)["id"])
            status, _, elapsed = conn.request("GET", f"{base}/Users?filter=userName%20eq%20%22{tag}{i}@b.test%22")
            statuses.append(status)
            latencies.append(elapsed)
    finally:
        conn.close()
    return latencies, statuses, ids


def _attacker(port: int, token: str, method: str, path: str, body: bytes, stop: threading.Event, seen: Any) -> None:
    conn = harness.Conn(port, harness.scim_headers(token))
    try:
        while not stop.is_set():
            status, _, _ = conn.request(method, path, body)
            seen[status] += 1
    finally:
        conn.close()


def _summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return harness.percentile(ordered, 50) * 1000, harness.percentile(ordered, 99) * 1000


def run(args: argparse.Namespace, tmp: Path) -> int:
    dsync = harness.find_dsync(args.dsync)
    port = harness.free_port()
    url = f"sqlite+aiosqlite:///{tmp / 'dsync.db'}" if args.store == "sqlite" else args.postgres_url
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
        _tenant_b(port, b["bearer_token"], base_b, "warm", 20)  # warm-up: B is known to the gateway

        alone, statuses_alone, ids_alone = _tenant_b(port, b["bearer_token"], base_b, "alone", args.requests)
        stop = threading.Event()
        seen: dict[str, collections.Counter[int]] = {
            k: collections.Counter() for k in ("worst", "flood", "deep", "over")
        }
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
        threads = [
            threading.Thread(target=_attacker, args=(port, token, method, path, body, stop, seen[kind]), daemon=True)
            for kind, token, method, path, body in attackers
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        try:
            noisy, statuses_noisy, ids_noisy = _tenant_b(port, b["bearer_token"], base_b, "noisy", args.requests)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)

        check = harness.Conn(port, harness.scim_headers(b["bearer_token"]))
        status, data, _ = check.request("GET", f"{base_b}/Users?count=1000")
        check.close()
        stored = {u["id"]: u["userName"] for u in json.loads(data)["Resources"]}
        expected = set(ids_alone) | set(ids_noisy)
        intact = expected <= set(stored) and len(stored) == 20 + 2 * args.requests
        p50_a, p99_a = _summary(alone)
        p50_n, p99_n = _summary(noisy)
        rows = [
            f"{'B alone':<22}{p50_a:>10.1f}{p99_a:>10.1f}",
            f"{'B with A at its worst':<22}{p50_n:>10.1f}{p99_n:>10.1f}",
            f"{'ratio':<22}{p50_n / p50_a:>9.2f}x{p99_n / p99_a:>9.2f}x",
        ]
        print(harness.summary_heading(60, f"noisy neighbour, {args.store}: {args.requests} B POST+GET pairs"))
        print(harness.table(f"{'':<22}{'p50 ms':>10}{'p99 ms':>10}", rows))
        for kind, counter in seen.items():
            print(f"A {kind:<6} answers: {dict(sorted(counter.items()))}")
        all_statuses = [*statuses_alone, *statuses_noisy, *(s for c in seen.values() for s in c)]
        fives = [s for s in all_statuses if s >= 500]
        b_failed = [s for s in [*statuses_alone, *statuses_noisy] if s not in (200, 201)]
        print(f"B failures: {len(b_failed)}; 5xx anywhere: {len(fives)}; B's data intact: {intact}")
        print(f"machine busy (other processes included): {harness.machine_busy_pct():.0f}%")
        if fives or b_failed or not intact:
            harness.report_failure("B was affected", [("server", harness.log_tail(log))])
            return 1
        return 0
    finally:
        harness.stop_process(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        help="a database beside which a fresh one is created and dropped (--store postgres)",
    )
    parser.add_argument("--requests", type=int, default=300, help="B's POST+GET pairs in each phase")
    harness.add_run_options(parser, keep_temp_help="keep the temp dir (database, server log)")
    args = parser.parse_args()
    if not harness.at_least_one(args, ["requests"]):
        return 2
    harness.exit_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="dsync-noisy-"))
    admin_url, name = args.postgres_url, f"dsync_noisy_{uuid.uuid4().hex[:8]}"
    try:
        if args.store == "postgres":  # a fresh database beside the given one, dropped at the end
            _postgres_admin(admin_url, f'CREATE DATABASE "{name}"')
            args.postgres_url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        return run(args, tmp)
    finally:
        if args.store == "postgres":
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
