"""The delivery child of ``dsync serve`` ends when its server is gone, even if it was gone before the child was up."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from gateway.webhooks.process import child_command
from tests.gateway.test_cli import dsync


def _gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_child_whose_server_died_while_it_started_exits(tmp_path: Path) -> None:
    dsync(tmp_path, "migrate")
    env = {
        **os.environ,
        "DSYNC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'dsync.db'}",
        "DSYNC_BROADCAST_URL": "memory://",
        # As ``dsync serve`` sets it: here the server that started the child has already exited.
        "DSYNC_WEBHOOK_PARENT_PID": str(_gone_pid()),
    }
    child = subprocess.Popen(child_command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        child.wait(timeout=30)
        assert time.monotonic() - started < 30
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
