"""What the per-directory SCIM request log costs ingest: POST /Users through the real app on a fresh embedded SQLite
database, in rounds that alternate the log on and off (A B, B A, …), at a fixed concurrency. Prints each round's
requests per second and process CPU per request (the writer thread included), the medians' ratio, and the median of
each round's on/off ratio.

In-process (httpx's ASGI transport, no sockets), so that the only difference between rounds is the log; compare
the ratio, not the absolute figures, with bench/scim_ingest.py's.

    .venv/bin/python bench/request_log.py [--users 3000] [--rounds 8] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import scim_headers, tagged_user  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.ops import directories, organizations  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.store.migrate import upgrade  # noqa: E402


async def _round(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], bodies: list[Any], concurrency: int
) -> tuple[float, float]:
    queue = list(bodies)

    async def worker() -> None:
        while queue:
            response = await client.post(path, json=queue.pop(), headers=headers)
            assert response.status_code == 201, response.text

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(bodies) / (time.perf_counter() - wall), (time.process_time() - cpu) / len(bodies) * 1e6


async def main(args: argparse.Namespace, tmp: str) -> None:
    if True:
        url = f"sqlite+aiosqlite:///{tmp}/dsync.db"
        settings = Settings(database_url=url, public_url="http://bench", scim_rate_limit=0)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            database = app.state.database
            log = app.state.request_log

            def create(session: Any) -> directories.IssuedDirectory:
                org = organizations.create_organization(session, name="Bench")
                return directories.create_directory(
                    session, organization_id=org.id, name="Bench", type="jumpcloud", public_url="http://bench"
                )

            issued = await database.transaction(create)
            path, headers = f"/scim/v2/{issued.directory.id}/Users", scim_headers(issued.bearer_token)
            rng = random.Random(1)
            results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
                warm = [tagged_user(i, "warm", rng) for i in range(200)]
                await _round(client, path, headers, warm, args.concurrency)
                for round_number in range(args.rounds):
                    # A B, then B A: the store grows as rounds go, so neither setting always runs on the larger one.
                    for enabled in (True, False) if round_number % 2 == 0 else (False, True):
                        app.state.request_log = log if enabled else None
                        bodies = [tagged_user(i, f"r{round_number}{int(enabled)}", rng) for i in range(args.users)]
                        rate, cpu_us = await _round(client, path, headers, bodies, args.concurrency)
                        results[enabled].append((rate, cpu_us))
                        label = "log on " if enabled else "log off"
                        print(f"round {round_number + 1} {label}: {rate:8.1f} req/s  {cpu_us:7.0f} µs CPU/request")
            app.state.request_log = log
    on = statistics.median(r for r, _ in results[True]), statistics.median(c for _, c in results[True])
    off = statistics.median(r for r, _ in results[False]), statistics.median(c for _, c in results[False])
    print(f"median: log on {on[0]:.1f} req/s, {on[1]:.0f} µs CPU; log off {off[0]:.1f} req/s, {off[1]:.0f} µs CPU")
    print(f"throughput on/off {on[0] / off[0]:.3f}   CPU per request on/off {on[1] / off[1]:.3f}")
    # Each round's pair ran back to back, under the same load from the rest of the machine: their ratios are the
    # steadiest measure on a shared machine.
    pairs = [(a[0] / b[0], a[1] / b[1]) for a, b in zip(results[True], results[False], strict=True)]
    rates = " ".join(f"{r:.3f}" for r, _ in pairs)
    print(f"per round on/off: throughput {rates}  (median {statistics.median(r for r, _ in pairs):.3f})")
    cpus = " ".join(f"{c:.3f}" for _, c in pairs)
    print(f"per round on/off: CPU per request {cpus}  (median {statistics.median(c for _, c in pairs):.3f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000, help="POSTs per round and setting")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of log on and off (A B, B A, …)")
    parser.add_argument("--concurrency", type=int, default=8)
    with tempfile.TemporaryDirectory() as directory:
        upgrade(f"sqlite+aiosqlite:///{directory}/dsync.db")
        asyncio.run(main(parser.parse_args(), directory))
