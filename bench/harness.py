"""Helpers shared by the benchmark scripts in this folder (they import it as ``harness``: run them as
``python bench/<script>.py``, which puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def find_dsync(explicit: str | None) -> str:
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


def log_tail(log_path: Path | None, lines: int = 30) -> str:
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


def remove_temp(tmp: Path, keep: bool) -> None:
    if keep:
        print(f"temp dir kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
