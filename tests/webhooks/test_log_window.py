"""The webhook worker's shared windows of the event log, on both stores: endpoints at nearby cursors share one read
of a window (and one body per event), the window at the head is read again once the log grew, a final window is
never read again, and a gap in the cursors is passed over."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import delete
from sqlmodel import col

from gateway.store.database import Database
from gateway.store.models import Event
from gateway.webhooks.log_window import LogWindows
from tests.conftest import DirectoryFixture


async def _users(client: httpx.AsyncClient, directory: DirectoryFixture, names: range) -> None:
    for i in names:
        response = await client.post(
            f"{directory.path}/Users", headers=directory.headers, json={"userName": f"u{i}@acme.test"}
        )
        assert response.status_code == 201, response.text


async def test_windows_are_read_once_for_every_endpoint(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    database: Database = app.state.database
    await _users(client, directory, range(14))  # with dsync.activated: cursors 1 … 15
    windows = LogWindows(database, poll_seconds=60, size=10)

    first = await asyncio.gather(*(windows.after(cursor) for cursor in (0, 0, 3, 7, 9)))
    assert windows.reads == 1
    assert [len(part.rows) for part in first] == [10, 10, 7, 3, 1]
    assert all(part.cursor == 10 and part.window.final for part in first)
    assert first[0].body(first[0].rows[-1]) is first[3].body(first[3].rows[-1])  # built once

    head = await windows.after(10)
    assert [row.cursor for row in head.rows] == [11, 12, 13, 14, 15] and not head.window.final
    assert windows.reads == 2
    assert (await windows.after(15)).rows == [] and windows.reads == 2  # nothing new known: no read
    await _users(client, directory, range(14, 16))
    assert (await windows.after(15)).rows == [] and windows.reads == 2  # not woken and within the poll
    windows.grew()
    grown = await windows.after(15)
    assert [row.cursor for row in grown.rows] == [16, 17] and windows.reads == 3
    assert (await windows.after(3)).rows and windows.reads == 3  # a final window stays


async def test_a_gap_in_the_cursors_is_passed_over(
    app: Any, client: httpx.AsyncClient, directory: DirectoryFixture
) -> None:
    database: Database = app.state.database
    await _users(client, directory, range(24))  # cursors 1 … 25

    def remove(session: Any) -> None:
        session.execute(delete(Event).where(col(Event.cursor) > 12, col(Event.cursor) <= 20))

    await database.transaction(remove)
    windows = LogWindows(database, poll_seconds=60, size=10)
    part = await windows.after(12)
    assert part.rows == [] and part.cursor == 20 and part.window.final
    assert [row.cursor for row in (await windows.after(part.cursor)).rows] == [21, 22, 23, 24, 25]
