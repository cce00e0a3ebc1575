"""Webhook delivery benchmark: SCIM user creations on a real ``dsync serve`` (embedded SQLite) with N webhook
endpoints pointed at a local receiver (a separate process), measuring deliveries per second, first-attempt latency
(event committed -> receiver) and the SCIM POST rate with delivery running (B: the default delivery child process),
against the same load on a second server with webhooks off (A: ``DSYNC_WEBHOOK_WORKER=0``), in alternating rounds
A B A B; each A round starts once the previous B round's deliveries are in. It also prints the CPU the server, the
delivery child and the receiver used during the B rounds (share of one core).

    .venv/bin/python bench/webhooks.py                    # 10,000 events to 10 endpoints
    .venv/bin/python bench/webhooks.py --events 1000      # quick run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
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


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += harness.proc_cpu_seconds(pid)
    return total


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
    parser.add_argument("--rounds", type=int, default=4, help="A B rounds: the events are split between them")
    parser.add_argument("--concurrency", type=int, default=8, help="SCIM connections")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds to wait for every delivery")
    parser.add_argument(
        "--receiver-nice",
        type=int,
        default=19,
        help="the receiver's nice level: it stands for the application's servers, elsewhere in production, so by "
        "default it takes only CPU the gateway leaves (0: it competes with SCIM for this machine's cores)",
    )
    harness.add_run_options(parser, keep_temp_help="keep the databases and logs")
    args = parser.parse_args()
    if not harness.at_least_one(args, ["events", "endpoints", "concurrency", "rounds"]):
        return 2
    harness.exit_on_sigterm()
    dsync = harness.find_dsync(args.dsync)
    tmp = Path(tempfile.mkdtemp(prefix="dsync-bench-webhooks-"))
    procs: list[Any] = []
    try:
        receiver_port = harness.free_port()
        (tmp / "receiver.py").write_text(RECEIVER_CODE)
        receiver = harness.start_process(
            ["nice", "-n", str(args.receiver_nice), sys.executable, str(tmp / "receiver.py"), str(receiver_port)],
            {},
            tmp,
            tmp / "receiver.log",
        )
        procs.append(receiver)

        # A: the worker off; B: N endpoints for every organization, all at the receiver, delivered by the child
        # process `dsync serve` starts. Both servers run throughout; the rounds alternate A B A B.
        base_server, base_port, base_env = _serve(dsync, tmp, "baseline", worker=False, timeout=args.startup_timeout)
        procs.append(base_server)
        base_directory = harness.create_jumpcloud_directory(
            dsync, base_env, tmp, organization="Acme", directory="Baseline"
        )
        server, port, env = _serve(dsync, tmp, "webhooks", worker=True, timeout=args.startup_timeout)
        procs.append(server)
        directory = harness.create_jumpcloud_directory(dsync, env, tmp, organization="Acme", directory="Hooks")
        for i in range(args.endpoints):
            harness.run_cli_json(
                [dsync, "webhooks", "create", "--url", f"http://{harness.LOOPBACK}:{receiver_port}/e{i}", "--json"],
                env,
                tmp,
            )
        deliverers = _children(server.pid)
        per_round = args.events // args.rounds
        events = per_round * args.rounds
        expected_total = (events + 1) * args.endpoints  # + dsync.activated
        deadline = time.monotonic() + args.deadline
        baseline: list[float] = []
        with_delivery: list[float] = []
        cpu_rows: list[tuple[float, float, float, float]] = []  # per B round: wall, server, deliverer, receiver
        for r in range(args.rounds):
            baseline.append(asyncio.run(_post_users(base_port, base_directory, per_round, args.concurrency, f"a{r}")))
            watched = [server.pid], deliverers, [receiver.pid]
            before = [_cpu(pids) for pids in watched]
            started = time.perf_counter()
            with_delivery.append(asyncio.run(_post_users(port, directory, per_round, args.concurrency, f"b{r}")))
            wall = time.perf_counter() - started
            used = [_cpu(pids) - b for pids, b in zip(watched, before, strict=True)]
            cpu_rows.append((wall, used[0], used[1], used[2]))
            # The next A round starts once this round's deliveries are in: A measures SCIM with no delivery running.
            expected = (per_round * (r + 1) + 1) * args.endpoints
            while _receiver_stats(receiver_port)["count"] < expected and time.monotonic() < deadline:
                time.sleep(0.25)
        stats = _receiver_stats(receiver_port)
        p50, p99 = (harness.percentile(stats["latencies"], q) * 1000 for q in (50, 99))
        base_median, hooks_median = statistics.median(baseline), statistics.median(with_delivery)
        span = (stats["last"] or 0) - (stats["first"] or 0)
        wall = sum(row[0] for row in cpu_rows)
        cpu = [sum(row[i] for row in cpu_rows) / wall for i in (1, 2, 3)]
        rows = [
            f"{'events x endpoints':<44}{events + 1:,} x {args.endpoints} ({args.rounds} rounds)",
            f"{'deliveries received / expected':<44}{stats['count']:,} / {expected_total:,}"
            + f" (+{stats['duplicates']} repeats)",
            f"{'deliveries per second (first to last)':<44}{stats['count'] / span if span else 0:,.0f}",
            f"{'first-attempt latency p50 / p99':<44}" + f"{p50:,.0f} ms / {p99:,.0f} ms",
            f"{'SCIM POST /Users without delivery (A)':<44}" + " ".join(f"{v:,.0f}" for v in baseline) + " req/s",
            f"{'SCIM POST /Users with delivery (B)':<44}" + " ".join(f"{v:,.0f}" for v in with_delivery) + " req/s",
            f"{'medians B / A':<44}{hooks_median:,.0f} / {base_median:,.0f} = {hooks_median / base_median:.0%}",
            f"{'CPU during B: server / deliverer / receiver':<44}"
            + " / ".join(f"{c:.0%}" for c in cpu)
            + f" (receiver nice {args.receiver_nice})",
        ]
        print(harness.summary_heading(72, "Webhook delivery (embedded SQLite, one dsync serve)"))
        print(harness.table(f"{'measure':<44}value", rows))
        return 0 if stats["count"] >= expected_total else 3
    except Exception as exc:
        harness.report_failure(str(exc), [(p.name, harness.log_tail(p)) for p in tmp.glob("*.log")])
        return 1
    finally:
        harness.end_run(procs, tmp, args.keep_temp)


if __name__ == "__main__":
    sys.exit(main())
