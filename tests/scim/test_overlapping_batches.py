"""PostgreSQL's write batches overlap: the next one begins while the one before waits for its COMMIT, on another
kept connection (``grouped_writer.WriteQueue``). What must still hold: every request answered with its own result,
and cursor order = commit order (a reader that has seen cursor c never later finds a new event below c), for one
directory and across several."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.util import await_

from gateway.store import grouped_writer
from gateway.store.models import Event
from tests.conftest import DirectoryFixture, make_directory

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

_EVENTS = Event.__table__  # type: ignore[attr-defined]


async def test_overlapping_batches_keep_cursor_order_equal_to_commit_order(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = app.state.database
    await app.state.request_log.stop()  # (its own writes would only add batches)
    places = [await make_directory(database) for _ in range(3)]
    under_way, most = 0, 0
    original = grouped_writer.run_batch

    def counting(*args: Any) -> Any:
        nonlocal under_way, most
        under_way += 1
        most = max(most, under_way)
        try:
            return original(*args)
        finally:
            under_way -= 1

    monkeypatch.setattr(grouped_writer, "run_batch", counting)
    run_on = grouped_writer._run_on

    def slow_commit(kept: Any, jobs: Any, committing: Any, sessions: Any) -> Any:
        """Each COMMIT sent 10 ms after the next batch may begin: time enough for that one to commit first, were
        its events not to wait for this one's commit (the advisory lock)."""

        def late() -> None:
            committing()
            await_(asyncio.sleep(0.01))

        return run_on(kept, jobs, late, sessions)

    monkeypatch.setattr(grouped_writer, "_run_on", slow_commit)
    violations: list[str] = []
    done = asyncio.Event()

    async def watch() -> int:
        """Poll the log: the events at or below the highest cursor seen must never change."""
        seen: dict[int, str] = {}
        polls = 0
        while not done.is_set() or polls < 2:
            async with database.read() as session:
                rows = (await session.execute(select(_EVENTS.c.cursor, _EVENTS.c.id).order_by(_EVENTS.c.cursor))).all()
            head = max(seen, default=0)
            now = {cursor: event_id for cursor, event_id in rows}
            below = {cursor: event_id for cursor, event_id in now.items() if cursor <= head}
            if below != seen:
                violations.append(f"events at or below {head} changed after it was seen")
            seen = now
            polls += 1
            await asyncio.sleep(0)
        return polls

    async def traffic(place: DirectoryFixture, tag: str) -> list[int]:
        path, headers = place.path, place.headers
        made = await asyncio.gather(
            *(
                client.post(f"{path}/Users", json={"userName": f"{tag}{i}@acme.test"}, headers=headers)
                for i in range(40)
            )
        )
        ids = [r.json()["id"] for r in made]
        changed = await asyncio.gather(
            *(
                client.put(f"{path}/Users/{u}", json={"userName": f"{tag}{i}@acme.test", "title": "T"}, headers=headers)
                for i, u in enumerate(ids[:20])
            ),
            *(client.delete(f"{path}/Users/{u}", headers=headers) for u in ids[20:]),
        )
        return [r.status_code for r in made] + [r.status_code for r in changed]

    watcher = asyncio.ensure_future(watch())
    statuses = await asyncio.gather(*(traffic(place, f"p{n}-") for n, place in enumerate(places)))
    done.set()
    polls = await watcher
    assert all(s == [201] * 40 + [200] * 20 + [204] * 20 for s in statuses)
    assert violations == [] and polls > 2
    assert most >= 2  # the batches did overlap
    async with database.read() as session:
        rows = (await session.execute(select(_EVENTS.c.directory_id, _EVENTS.c.event).order_by(_EVENTS.c.cursor))).all()
    for place in places:
        names = [event for directory_id, event in rows if directory_id == place.id]
        assert names.count("dsync.user.created") == 40 and names.count("dsync.user.deleted") == 20
        assert names.count("dsync.user.updated") == 20
