"""Re-mapping a big group to another role, while SCIM ingest goes on.

Run with the project's venv, e.g. ``.venv/bin/python bench/role_remap.py`` (SQLite) or with
``--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/bench`` (an empty database it may migrate). ``--help``
lists the options. It prints figures and asserts nothing about absolute times.

Setup: ``dsync serve`` on a fresh database, an organization with a default role and two others, a directory with
``--members`` users (10,000) all in one group, the group mapped to ``admin``. Then, ``--rounds`` times, A B:

A. baseline: SCIM ``POST /Users`` at ``--concurrency`` for ``--ingest-seconds``: p50/p99;
B. ``mapGroupToRole`` moves the group to the other role (GraphQL), the same ingest runs meanwhile, and the time until
   the log holds one ``dsync.user.updated`` per member (polled through GraphQL ``events { totalCount }``).

Targets (issue 18): every member's event within 10 s; ingest p99 during B within 2x of A.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import httpx

ROLES = ("admin", "billing")


async def _gql(client: httpx.AsyncClient, key: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {key}"}
    )
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL error: {body['errors']}")
    return body["data"]


async def _seed(client: httpx.AsyncClient, directory: dict[str, Any], members: int, concurrency: int) -> str:
    """``members`` users, all in one group; returns the group's id."""
    base = f"/scim/v2/{directory['id']}"
    headers = harness.scim_headers(directory["bearer_token"])
    rng = random.Random(7)
    ids: list[str] = []
    queue = iter(range(members))

    async def worker() -> None:
        for i in queue:
            body = harness.tagged_user(i, "seed", rng)
            response = await client.post(f"{base}/Users", json=body, headers=headers)
            response.raise_for_status()
            ids.append(response.json()["id"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    group = await client.post(f"{base}/Groups", json={"displayName": "Engineering Admins"}, headers=headers)
    group.raise_for_status()
    group_id = str(group.json()["id"])
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        body = {
            "schemas": [harness.PATCH_URN],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": i} for i in chunk]}],
        }
        (await client.patch(f"{base}/Groups/{group_id}", json=body, headers=headers)).raise_for_status()
    return group_id


class Ingest:
    """SCIM POST /Users at a fixed concurrency until stopped: the latencies of the requests it made."""

    def __init__(self, client: httpx.AsyncClient, directory: dict[str, Any], concurrency: int) -> None:
        self.client = client
        self.base = f"/scim/v2/{directory['id']}"
        self.headers = harness.scim_headers(directory["bearer_token"])
        self.concurrency = concurrency
        self.counter = 0
        self.rng = random.Random(11)

    async def run(self, *, until: asyncio.Event, tag: str) -> list[float]:
        latencies: list[float] = []
        errors = 0

        async def worker() -> None:
            nonlocal errors
            while not until.is_set():
                self.counter += 1
                body = harness.tagged_user(self.counter, tag, self.rng)
                t0 = time.perf_counter()
                response = await self.client.post(f"{self.base}/Users", json=body, headers=self.headers)
                latencies.append(time.perf_counter() - t0)
                errors += response.status_code != 201

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        if errors:
            print(f"  ingest errors: {errors}", file=sys.stderr)
        return sorted(latencies)


async def _updates_since(client: httpx.AsyncClient, key: str, directory_id: str, since: str) -> int:
    query = (
        'query($d: ID!, $s: DateTime!) { events(directoryId: $d, events: ["dsync.user.updated"], since: $s)'
        " { totalCount } }"
    )
    data = await _gql(client, key, query, {"d": directory_id, "s": since})
    return int(data["events"]["totalCount"])


def _ms(values: list[float], q: float) -> float:
    return 1000 * harness.percentile(values, q)


async def _main(args: argparse.Namespace, port: int, directory: dict[str, Any], key: str) -> None:
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=f"http://{harness.LOOPBACK}:{port}", limits=limits, timeout=60) as client:
        org = directory["organization_id"]
        t0 = time.perf_counter()
        group_id = await _seed(client, directory, args.members, args.concurrency)
        print(f"seeded {args.members} users in one group in {time.perf_counter() - t0:.1f}s")
        create = (
            "mutation($o: ID!, $s: String!, $d: Boolean!)"
            " { createRole(organizationId: $o, slug: $s, name: $s, isDefault: $d) { id } }"
        )
        for slug, default in (("member", True), *((r, False) for r in ROLES)):
            await _gql(client, key, create, {"o": org, "s": slug, "d": default})
        remap = (
            "mutation($d: ID!, $g: ID!, $r: String!) { mapGroupToRole(directoryId: $d, groupId: $g, role: $r) { id } }"
        )
        variables = {"d": directory["id"], "g": group_id}
        await _gql(client, key, remap, {**variables, "r": ROLES[0]})
        # Let the initial mapping's events land before measuring.
        since = datetime.now(UTC).isoformat()
        deadline = time.perf_counter() + 120
        while await _updates_since(client, key, directory["id"], "1970-01-01T00:00:00Z") < args.members:
            if time.perf_counter() > deadline:
                raise RuntimeError("the initial mapping never completed")
            await asyncio.sleep(0.2)
        ingest = Ingest(client, directory, args.concurrency)
        rows: list[tuple[int, float, float, float, float, float, int]] = []
        for round_ in range(args.rounds):
            # A: ingest alone.
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(args.ingest_seconds, stop.set)
            base = await ingest.run(until=stop, tag=f"a{round_}")
            # B: the re-mapping, with the same ingest.
            role = ROLES[(round_ + 1) % 2]
            since = datetime.now(UTC).isoformat()
            stop = asyncio.Event()
            load = asyncio.create_task(ingest.run(until=stop, tag=f"b{round_}"))
            started = time.perf_counter()
            await _gql(client, key, remap, {**variables, "r": role})
            done = 0
            while done < args.members and time.perf_counter() - started < args.timeout:
                await asyncio.sleep(0.1)
                done = await _updates_since(client, key, directory["id"], since)
            elapsed = time.perf_counter() - started
            # Keep the load at least as long as the baseline ran, so the two samples are alike.
            await asyncio.sleep(max(0.0, args.ingest_seconds - elapsed))
            stop.set()
            during = await load
            rows.append((round_, elapsed, _ms(base, 50), _ms(base, 99), _ms(during, 50), _ms(during, 99), done))
            print(
                f"round {round_}: remap to {role}: {done} events in {elapsed:.2f}s; ingest p50/p99 "
                f"{_ms(base, 50):.1f}/{_ms(base, 99):.1f} ms alone ({len(base)} req), "
                f"{_ms(during, 50):.1f}/{_ms(during, 99):.1f} ms during ({len(during)} req)"
            )
        print(
            harness.summary_heading(
                100,
                f"median over {len(rows)} rounds: all events in {statistics.median(r[1] for r in rows):.2f}s "
                f"(target 10 s); ingest p99 during/alone = "
                f"{statistics.median(r[5] / r[3] for r in rows):.2f}x (target <= 2x)",
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--ingest-seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="give up waiting for the events after this long")
    parser.add_argument("--postgres", default=None, help="an empty PostgreSQL database URL (default: SQLite)")
    parser.add_argument("--port", type=int, default=0)
    harness.add_run_options(parser, keep_temp_help="keep the temp dir (SQLite file, server log)")
    args = parser.parse_args()
    if not harness.at_least_one(args, ["members", "rounds", "concurrency"]):
        return 2
    harness.exit_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="dsync-role-remap-"))
    port = args.port or harness.free_port()
    url = args.postgres or f"sqlite+aiosqlite:///{tmp / 'dsync.db'}"
    env = harness.dsync_env(url, port)
    env["DSYNC_SCIM_RATE_LIMIT"] = "0"
    env["DSYNC_GRAPHQL_RATE_LIMIT"] = "0"
    dsync = harness.find_dsync(args.dsync)
    server = None
    log = tmp / "server.log"
    try:
        harness.run_migrate(dsync, env, tmp)
        directory = harness.create_jumpcloud_directory(dsync, env, tmp, organization="Acme", directory="JumpCloud")
        key = harness.run_cli_json([dsync, "api-keys", "create", "--json"], env, tmp)["key"]
        server = harness.start_server(
            "dsync",
            [dsync, "serve", "--host", harness.LOOPBACK, "--port", str(port)],
            env,
            tmp,
            log,
            port=port,
            ready_path="/healthz",
            timeout=args.startup_timeout,
        )
        store = "PostgreSQL" if args.postgres else "SQLite"
        chunk = env.get("DSYNC_RULE_EVALUATION_CHUNK", "default")
        print(f"store: {store}; evaluation chunk: {chunk}; machine busy before: {harness.machine_busy_pct():.0f}%")
        asyncio.run(_main(args, port, directory, key))
    except Exception as exc:
        harness.report_failure(str(exc), [("server log", harness.log_tail(log))])
        return 1
    finally:
        harness.end_run([server], tmp, args.keep_temp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
