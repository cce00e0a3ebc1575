"""Fixtures of the SCIM tests that watch the grouped writer."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.store import grouped_writer


@pytest.fixture
def in_savepoints(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every job the writer ran in a savepoint: a batch run again with savepoints after one of its jobs raised."""
    jobs: list[object] = []
    original = grouped_writer._run_in_savepoint

    def counting(session: Any, job: Any) -> Any:
        jobs.append(job)
        return original(session, job)

    monkeypatch.setattr(grouped_writer, "_run_in_savepoint", counting)
    return jobs
