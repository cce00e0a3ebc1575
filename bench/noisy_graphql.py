"""Noisy-neighbour benchmark: tenant B's SCIM latency, alone and while tenant A sends its worst allowed GraphQL.

Run with the project's venv: ``.venv/bin/python bench/noisy_graphql.py --graphql`` (``--help`` for the options).
This prints figures and asserts nothing about absolute times (the machine may be shared: compare the ratios).

1. Starts ``dsync serve`` on a fresh SQLite database (temp dir) with two organizations: A (one directory of
   ``--users`` users in ``--groups`` groups, every user in every group) and B (20 users), and an API key for A.
2. Baseline: B's ``GET /Users?count=20`` sequentially for ``--seconds``; p50/p99.
3. ``--graphql`` phase: the same while ``--clients`` threads send A's most expensive query the default budget
   allows (cost 1,802 of 2,000) over HTTP, as fast as A's key's rate limit lets them, plus one sending an
   over-budget query (refused before it runs); p50/p99 again, their ratio to the baseline, and A's answers by code.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness

WORST = (
    "query($id: ID!) { directory(id: $id) { groups(first: 100) { edges { node { "
    + " ".join(f"m{i}: members(first: 100) {{ totalCount edges {{ node {{ id userName }} }} }}" for i in range(9))
    + " } } } } }"
)
TOO_COSTLY = WORST.replace("groups(first: 100) { edges { node { ", "users(first: 100) { edges { node { groups { ")
TOO_COSTLY = TOO_COSTLY[: -len(" } } } } }")] + " } } } } } }"


def _seed(port: int, directory: dict[str, object], *, users: int, groups: int) -> None:
    conn = harness.Conn(port, harness.scim_headers(str(directory["bearer_token"])))
    base = f"/scim/v2/{directory['id']}"
    ids = []
    for i in range(users):
        body = {
            "userName": f"u{i}@{str(directory['id'])[-6:].lower()}.test",
            "name": {"givenName": "U", "familyName": "X"},
        }
        status, data, _ = conn.request("POST", f"{base}/Users", json.dumps(body).encode())
        assert status == 201, data
        ids.append(json.loads(data)["id"])
    for g in range(groups):
        body = {"displayName": f"G{g}", "members": [{"value": user_id} for user_id in ids]}
        status, data, _ = conn.request("POST", f"{base}/Groups", json.dumps(body).encode())
        assert status == 201, data
    conn.close()


def _probe(port: int, directory: dict[str, object], seconds: float) -> list[float]:
    conn = harness.Conn(port, harness.scim_headers(str(directory["bearer_token"])))
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, data, elapsed = conn.request("GET", f"/scim/v2/{directory['id']}/Users?count=20")
        assert status == 200, data
        latencies.append(elapsed)
    conn.close()
    return sorted(latencies)


def _tenant_a(port: int, key: str, directory_id: str, query: str, stop: threading.Event, codes: dict[str, int]) -> None:
    conn = harness.Conn(port, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    body = json.dumps({"query": query, "variables": {"id": directory_id}}).encode()
    while not stop.is_set():
        _status, data, _ = conn.request("POST", "/graphql", body)
        errors = json.loads(data).get("errors") or []
        for code in [e.get("extensions", {}).get("code", "?") for e in errors] or ["OK"]:
            codes[code] = codes.get(code, 0) + 1
        if errors and errors[0].get("extensions", {}).get("code") == "RATE_LIMITED":
            time.sleep(errors[0]["extensions"].get("retryAfterSeconds", 1))
    conn.close()


def _row(label: str, latencies: list[float], baseline: list[float] | None) -> str:
    p50, p99 = harness.percentile(latencies, 50) * 1000, harness.percentile(latencies, 99) * 1000
    ratio = ""
    if baseline:
        base50, base99 = harness.percentile(baseline, 50) * 1000, harness.percentile(baseline, 99) * 1000
        ratio = f"  x{p50 / base50:.1f} / x{p99 / base99:.1f}"
    return f"{label:<34} {len(latencies):>7} {p50:>9.1f} {p99:>9.1f}{ratio}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphql", action="store_true", help="run the phase under tenant A's GraphQL load")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--clients", type=int, default=3, help="tenant A's concurrent GraphQL clients")
    parser.add_argument("--seconds", type=float, default=10.0)
    harness.add_run_options(parser, keep_temp_help="keep the temp dir (database, server log)")
    args = parser.parse_args()
    if not harness.at_least_one(args, ["users", "groups", "clients"]):
        return 2
    dsync = harness.find_dsync(args.dsync)
    tmp = Path(tempfile.mkdtemp(prefix="dsync-noisy-graphql-"))
    port = harness.free_port()
    env = harness.dsync_env(f"sqlite+aiosqlite:///{tmp / 'dsync.db'}", port)
    log_path = tmp / "server.log"
    server = None
    try:
        harness.run_migrate(dsync, env, tmp)
        a = harness.create_jumpcloud_directory(dsync, env, tmp, organization="Tenant A", directory="A")
        b = harness.create_jumpcloud_directory(dsync, env, tmp, organization="Tenant B", directory="B")
        key = harness.run_cli_json(
            [dsync, "api-keys", "create", "--organization", str(a["organization_id"]), "--json"], env, tmp
        )
        server = harness.start_server(
            "dsync",
            [dsync, "serve", "--port", str(port)],
            env,
            tmp,
            log_path,
            port=port,
            ready_path="/readyz",
            timeout=args.startup_timeout,
        )
        _seed(port, a, users=args.users, groups=args.groups)
        _seed(port, b, users=20, groups=0)
        baseline = _probe(port, b, args.seconds)
        rows = [_row("B SCIM GET, alone", baseline, None)]
        codes: dict[str, int] = {}
        if args.graphql:
            stop = threading.Event()
            queries = [WORST] * args.clients + [TOO_COSTLY]
            threads = [
                threading.Thread(target=_tenant_a, args=(port, str(key["key"]), str(a["id"]), q, stop, codes))
                for q in queries
            ]
            for thread in threads:
                thread.start()
            time.sleep(1.0)  # A's load under way
            loaded = _probe(port, b, args.seconds)
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
            rows.append(_row(f"B SCIM GET, A x{args.clients} worst GraphQL", loaded, baseline))
        print(harness.table(f"{'phase':<34} {'requests':>7} {'p50 ms':>9} {'p99 ms':>9}  ratio p50 / p99", rows))
        if codes:
            print(f"\ntenant A's answers: {dict(sorted(codes.items()))}")
        return 0
    except Exception as error:
        harness.report_failure(str(error), [("server", harness.log_tail(log_path))])
        return 1
    finally:
        harness.end_run([server], tmp, args.keep_temp)


if __name__ == "__main__":
    harness.exit_on_sigterm()
    sys.exit(main())
