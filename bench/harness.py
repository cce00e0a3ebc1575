"""Helpers shared by the benchmark scripts in this folder (they import it as ``harness``: run them as
``python bench/<script>.py``, which puts this folder on sys.path)."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads included (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS from /proc/<pid>/status), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine spent busy so far (from /proc/stat; 0 where it is missing)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def machine_busy_pct(seconds: float = 1.0) -> float:
    """How busy the machine is before a run starts (% of one core over ``seconds``): a high figure means noise."""
    busy0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (machine_busy_seconds() - busy0) / (time.monotonic() - t0)


def free_port() -> int:
    """A TCP port free on the loopback interface right now, for a server started here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def find_dsync(explicit: str | None) -> str:
    """The ``dsync`` CLI to benchmark: ``--dsync`` when given, else the one beside this Python, else PATH."""
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "dsync"
    if beside.exists():
        return str(beside)
    found = shutil.which("dsync")
    if found is None:
        raise RuntimeError("dsync not found: install the project in the venv (pip install -e .) or pass --dsync PATH")
    return found


def start_process(cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (so stop_process can end its whole process group), output to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process started by `start_process` (its whole session: SIGTERM, then SIGKILL after 15 s)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the whole process group, nothing else
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def wait_ready(
    name: str,
    port: int,
    path: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None,
    log_tail: Callable[[], str],
) -> None:
    """Poll GET `path` on the loopback `port` until it answers 200; raise if `proc` exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{log_tail()}")
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}"
        except OSError as exc:
            last = str(exc)
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready on {path} after {timeout:.0f}s ({last}):\n{log_tail()}")


def start_server(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    *,
    port: int,
    ready_path: str,
    timeout: float,
) -> subprocess.Popen[bytes]:
    """`start_process` then `wait_ready`; a server that does not become ready is stopped (its log stays)."""
    proc = start_process(cmd, env, cwd, log_path)
    try:
        wait_ready(name, port, ready_path, timeout, proc, lambda: log_tail(log_path))
    except BaseException:
        stop_process(proc)
        raise
    return proc


def log_tail(log_path: Path | None, lines: int = 30) -> str:
    """The last lines of a server's log, to print when a run fails."""
    if log_path is None or not log_path.exists():
        return ""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


class Conn:
    """One keep-alive http.client connection: the lightest Python client, for sequential latency probes."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection(LOOPBACK, port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        for attempt in (1, 2):
            try:
                t0 = time.perf_counter()
                self.conn.request(method, path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                data = resp.read()
                elapsed = time.perf_counter() - t0
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, data, elapsed
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def exit_on_sigterm() -> None:
    """`timeout` or kill send SIGTERM: turn it into SystemExit so the caller's `finally` stops the servers (they run
    in their own sessions, so nothing else would) and removes the temp dir."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def add_run_options(parser: argparse.ArgumentParser, *, keep_temp_help: str) -> None:
    """The options every benchmark has: how long a server may take to start, which ``dsync``, keep the temp dir."""
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--dsync", default=None, help="path of the dsync CLI (default: beside this Python, then PATH)")
    parser.add_argument("--keep-temp", action="store_true", help=keep_temp_help)


def at_least_one(args: argparse.Namespace, names: Sequence[str]) -> bool:
    """Whether each of these integer options is >= 1; says which is not on stderr (the caller exits with 2)."""
    for name in names:
        if getattr(args, name) < 1:
            print(f"--{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return False
    return True


def report_failure(message: str, logs: Sequence[tuple[str, str]]) -> None:
    """Say on stderr that the run failed, with the last lines of each named log (empty ones skipped)."""
    print(f"\nBENCHMARK FAILED: {message}", file=sys.stderr)
    for label, tail in logs:
        if tail:
            print(f"--- last lines of {label} ---\n{tail}", file=sys.stderr)


def end_run(procs: Sequence[subprocess.Popen[bytes] | None], tmp: Path, keep_temp: bool) -> None:
    """Stop the run's servers, then remove its temp dir (unless ``--keep-temp``): every exit path does this."""
    for proc in procs:
        stop_process(proc)
    remove_temp(tmp, keep_temp)


def table(head: str, rows: Sequence[str]) -> str:
    """A figures table as printed: the header line, a rule as wide, the rows."""
    return "\n".join([head, "-" * len(head), *rows])


def summary_heading(width: int, text: str) -> str:
    """The heading of a run's summary (after a blank line and a rule of ``width``), to print as one string."""
    return "\n" + "=" * width + "\n" + text


def remove_temp(tmp: Path, keep: bool) -> None:
    """Remove a run's temp dir, or say where it is with ``--keep-temp``."""
    if keep:
        print(f"temp dir kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------------
# The gateway under test, set up through its CLI


def dsync_env(database_url: str, port: int) -> dict[str, str]:
    """The environment of ``dsync`` commands and ``dsync serve`` on ``port``: this one, with the run's database and
    public URL, and without an admin key from the caller's environment."""
    env = dict(os.environ)
    env["DSYNC_DATABASE_URL"] = database_url
    env["DSYNC_PUBLIC_URL"] = f"http://{LOOPBACK}:{port}"
    env.pop("DSYNC_ADMIN_KEY", None)
    return env


def run_migrate(dsync: str, env: dict[str, str], cwd: Path, timeout: float = 120.0) -> None:
    """``dsync migrate`` on the run's fresh database."""
    proc = subprocess.run([dsync, "migrate"], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"dsync migrate failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def run_cli_json(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run a ``dsync ... --json`` command and return the JSON object it printed (log lines before it are skipped)."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = proc.stdout.strip()
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        start = out.find("{")
        try:
            data = json.loads(out[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            data = None
    if not isinstance(data, dict):
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON object:\n{proc.stdout}\n{proc.stderr}")
    return data


def create_jumpcloud_directory(
    dsync: str, env: dict[str, str], cwd: Path, *, organization: str, directory: str
) -> dict[str, Any]:
    """An organization and a JumpCloud directory in it, through the CLI: the directory's JSON (``id``,
    ``endpoint``, ``bearer_token``)."""
    org = run_cli_json([dsync, "organizations", "create", organization, "--json"], env, cwd)
    return run_cli_json(
        [dsync, "directories", "create", "--organization", str(org["id"]), "--name", directory]
        + ["--type", "jumpcloud", "--json"],
        env,
        cwd,
    )


def scim_headers(token: str) -> dict[str, str]:
    """Headers of a SCIM client: the directory's bearer token and SCIM's media type."""
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/scim+json",
        "Accept": "application/scim+json",
    }


# --------------------------------------------------------------------------------------------------------------------
# JumpCloud-shaped SCIM users


@dataclass(frozen=True)
class NamePools:
    """What fake users' names, titles, departments and addresses are drawn from."""

    first_names: Sequence[str]
    last_names: Sequence[str]
    departments: Sequence[str]
    titles: Sequence[str]
    cities: Sequence[tuple[str, str, str]]  # (locality, region, postal code)


def jumpcloud_user(
    i: int,
    rng: random.Random,
    pools: NamePools,
    *,
    user_name: Callable[[str, str], str],
    external_id: Callable[[], str],
    inactive_share: float = 0.0,
    enterprise_extra: Callable[[], dict[str, str]] = dict,
) -> dict[str, Any]:
    """A SCIM user shaped like JumpCloud's (core + enterprise extension), user number ``i``.

    ``user_name(given, family)`` and ``external_id()`` make the identifiers; ``inactive_share`` of the users are
    inactive; ``enterprise_extra()`` adds attributes to the extension. Every draw from ``rng`` happens in a fixed
    order, so a seed gives the same users."""
    given, family = rng.choice(pools.first_names), rng.choice(pools.last_names)
    name = user_name(given, family)
    city, region, postal = rng.choice(pools.cities)
    return {
        "schemas": [USER_URN, ENTERPRISE_URN],
        "userName": name,
        "externalId": external_id(),
        "name": {"givenName": given, "familyName": family, "formatted": f"{given} {family}"},
        "displayName": f"{given} {family}",
        "emails": [{"value": name, "type": "work", "primary": True}],
        "phoneNumbers": [
            {"value": f"tel:+1-555-{rng.randrange(100, 1000)}-{rng.randrange(10000):04d}", "type": "work"}
        ],
        "addresses": [
            {
                "type": "work",
                "streetAddress": f"{rng.randrange(1, 9999)} Market St",
                "locality": city,
                "region": region,
                "postalCode": postal,
                "country": "US",
                "primary": True,
            }
        ],
        "title": rng.choice(pools.titles),
        "active": rng.random() >= inactive_share if inactive_share else True,
        ENTERPRISE_URN: {
            "department": rng.choice(pools.departments),
            "employeeNumber": str(100000 + i),
            **enterprise_extra(),
        },
    }


INGEST_POOLS = NamePools(
    first_names=["Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Edsger", "Radia"],
    last_names=["Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen"],
    departments=["Engineering", "Sales", "Support", "Finance", "Marketing", "People", "Legal", "Operations"],
    titles=["Engineer", "Account Executive", "Support Specialist", "Analyst", "Manager", "Designer", "Counsel"],
    cities=[
        ("Denver", "CO", "80202"),
        ("Boulder", "CO", "80301"),
        ("Austin", "TX", "78701"),
        ("Seattle", "WA", "98101"),
    ],
)


def tagged_user(i: int, tag: str, rng: random.Random) -> dict[str, Any]:
    """A JumpCloud-shaped user for SCIM ingest, its userName and externalId unique per (i, tag): the bodies the
    SCIM benchmarks POST."""
    return jumpcloud_user(
        i,
        rng,
        INGEST_POOLS,
        user_name=lambda _given, _family: f"user{i}-{tag}@example.com",
        external_id=lambda: f"jc-{tag}-{i:07d}-{rng.getrandbits(48):012x}",
    )
