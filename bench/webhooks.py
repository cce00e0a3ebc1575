"""Webhook delivery benchmark: SCIM user creations on a real ``dsync serve`` (embedded SQLite) with N webhook
endpoints pointed at a local receiver (a separate process), measuring deliveries per second, first-attempt latency
(event committed -> receiver) and the SCIM POST rate with the delivery worker running, against the same load with
the worker off (``DSYNC_WEBHOOK_WORKER=0``) on a fresh database.

    .venv/bin/python bench/webhooks.py                    # 10,000 events to 10 endpoints
    .venv/bin/python bench/webhooks.py --events 1000      # quick run
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import httpx

RECEIVER_CODE = """
import sys, time, orjson, uvicorn
from datetime import datetime

stats = {"count": 0, "latencies": [], "first": None, "last": None, "seen": set(), "duplicates": 0}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    now = time.time()
    if scope["method"] == "GET":
        latencies = sorted(stats["latencies"])
        out = {k: stats[k] for k in ("count", "first", "last", "duplicates")}
        out["latencies"] = latencies
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": orjson.dumps(out)})
        return
    event = orjson.loads(body)
    key = (scope["path"], event["id"])
    if key in stats["seen"]:
        stats["duplicates"] += 1
    else:
        stats["seen"].add(key)
        stats["count"] += 1
        created = datetime.fromisoformat(event["created_at"].replace("Z", "+00:00")).timestamp()
        stats["latencies"].append(now - created)
        stats["first"] = stats["first"] or now
        stats["last"] = now
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, lifespan="off")
"""


async def _post_users(port: int, directory: dict[str, Any], count: int, concurrency: int, tag: str) -> float:
    """POST ``count`` users over ``concurrency`` connections; the rate in requests per second."""
    rng = random.Random(7)
    bodies = [harness.tagged_user(i, tag, rng) for i in range(count)]
    path = f"/scim/v2/{directory['id']}/Users"
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    failures = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            response = await http.post(path, json=body)
            if response.status_code != 201:
                failures += 1

    headers = harness.scim_headers(directory["bearer_token"])
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://{harness.LOOPBACK}:{port}", headers=headers, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} SCIM requests failed")
    return count / elapsed


def _receiver_stats(port: int) -> dict[str, Any]:
    return dict(httpx.get(f"http://{harness.LOOPBACK}:{port}/stats", timeout=30).json())


def _serve(dsync: str, tmp: Path, name: str, *, worker: bool, timeout: float) -> tuple[Any, int, dict[str, str]]:
    port = harness.free_port()
    env = harness.dsync_env(f"sqlite+aiosqlite:///{tmp / (name + '.db')}", port)
    env["DSYNC_WEBHOOK_WORKER"] = "1" if worker else "0"
    env["DSYNC_SCIM_RATE_LIMIT"] = "0"
    harness.run_migrate(dsync, env, tmp)
    proc = harness.start_server(
        f"dsync ({name})",
        [dsync, "serve", "--port", str(port)],
        env,
        tmp,
        tmp / f"{name}.log",
        port=port,
        ready_path="/readyz",
        timeout=timeout,
    )
    return proc, port, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="SCIM user creations (one event each)")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8, help="SCIM connections")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds to wait for every delivery")
    harness.add_run_options(parser, keep_temp_help="keep the databases and logs")
    args = parser.parse_args()
    if not harness.at_least_one(args, ["events", "endpoints", "concurrency"]):
        return 2
    harness.exit_on_sigterm()
    dsync = harness.find_dsync(args.dsync)
    tmp = Path(tempfile.mkdtemp(prefix="dsync-bench-webhooks-"))
    procs: list[Any] = []
    try:
        receiver_port = harness.free_port()
        (tmp / "receiver.py").write_text(RECEIVER_CODE)
        receiver = harness.start_process(
            [sys.executable, str(tmp / "receiver.py"), str(receiver_port)], {}, tmp, tmp / "receiver.log"
        )
        procs.append(receiver)

        # Without delivery: the worker off, a fresh database.
        server, port, env = _serve(dsync, tmp, "baseline", worker=False, timeout=args.startup_timeout)
        procs.append(server)
        directory = harness.create_jumpcloud_directory(dsync, env, tmp, organization="Acme", directory="Baseline")
        baseline = asyncio.run(_post_users(port, directory, args.events, args.concurrency, "base"))
        harness.stop_process(server)

        # With delivery: N endpoints for every organization, all at the receiver.
        server, port, env = _serve(dsync, tmp, "webhooks", worker=True, timeout=args.startup_timeout)
        procs.append(server)
        directory = harness.create_jumpcloud_directory(dsync, env, tmp, organization="Acme", directory="Hooks")
        for i in range(args.endpoints):
            harness.run_cli_json(
                [dsync, "webhooks", "create", "--url", f"http://{harness.LOOPBACK}:{receiver_port}/e{i}", "--json"],
                env,
                tmp,
            )
        expected = (args.events + 1) * args.endpoints  # + dsync.activated
        with_delivery = asyncio.run(_post_users(port, directory, args.events, args.concurrency, "hook"))
        deadline = time.monotonic() + args.deadline
        while (stats := _receiver_stats(receiver_port))["count"] < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        p50, p99 = (harness.percentile(stats["latencies"], q) * 1000 for q in (50, 99))
        share = with_delivery / baseline
        span = (stats["last"] or 0) - (stats["first"] or 0)
        rows = [
            f"{'events x endpoints':<44}{args.events + 1:,} x {args.endpoints}",
            f"{'deliveries received / expected':<44}{stats['count']:,} / {expected:,}"
            + f" (+{stats['duplicates']} repeats)",
            f"{'deliveries per second':<44}{stats['count'] / span if span else 0:,.0f}",
            f"{'first-attempt latency p50 / p99':<44}" + f"{p50:,.0f} ms / {p99:,.0f} ms",
            f"{'SCIM POST /Users without delivery':<44}{baseline:,.0f} req/s",
            f"{'SCIM POST /Users with delivery running':<44}{with_delivery:,.0f} req/s ({share:.0%})",
        ]
        print(harness.summary_heading(72, "Webhook delivery (embedded SQLite, one dsync serve)"))
        print(harness.table(f"{'measure':<44}value", rows))
        return 0 if stats["count"] >= expected else 3
    except Exception as exc:
        harness.report_failure(str(exc), [(p.name, harness.log_tail(p)) for p in tmp.glob("*.log")])
        return 1
    finally:
        harness.end_run(procs, tmp, args.keep_temp)


if __name__ == "__main__":
    sys.exit(main())
