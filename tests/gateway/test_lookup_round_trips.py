"""PostgreSQL's lookups share round trips (``gateway.store.lookup_connections``): calls of one statement that wait for
a connection go together, and each still gets exactly its own rows, or its own error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncpg import PostgresError
from asyncpg.exceptions import DataError
from sqlalchemy import text

from gateway.store.database import Database
from gateway.store.lookup_connections import LookupConnections
from scim.backend.lookups import Found, find_by, find_by_id
from scim.backend.users import USERS
from scim.protocol.filters import as_lookup
from tests.conftest import make_directory

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

_ADD_USERS = text(
    "INSERT INTO directory_users (id, directory_id, idp_id, user_name, emails, state, custom_attributes,"
    " raw_attributes, version, created_at, updated_at)"
    " SELECT :prefix || lpad(g::text, 4, '0'), :directory_id, 'x' || g, :prefix || g, '[]', 'active', '{}', '{}', 1,"
    " now(), now() FROM generate_series(1, CAST(:count AS INTEGER)) AS g"
)


async def _directory_with_users(database: Database, count: int) -> tuple[str, str]:
    """A new directory with ``count`` users, ids ``prefix0001``…; returns its id and the prefix."""
    directory = await make_directory(database)
    prefix = f"u{directory.id[-8:]}-"
    async with database.engine.begin() as connection:
        await connection.execute(_ADD_USERS, {"prefix": prefix, "directory_id": directory.id, "count": count})
    return directory.id, prefix


def _lookups(database: Database) -> LookupConnections:
    lookups = database._pg_lookups
    assert lookups is not None
    return lookups


def _round_trip_sizes(monkeypatch: pytest.MonkeyPatch, lookups: LookupConnections) -> list[int]:
    sizes: list[int] = []
    original = LookupConnections._round_trip

    async def counted(self: LookupConnections, reserved: Any, numbered: Any, calls: list[Any]) -> None:
        sizes.append(len(calls))
        await original(self, reserved, numbered, calls)

    monkeypatch.setattr(LookupConnections, "_round_trip", counted)
    monkeypatch.setattr(lookups, "_size", 1)  # one connection: every call made while it is busy waits
    return sizes


async def _find(database: Database, directory_id: str, user_id: str) -> Found:
    return await database.lookup(
        lambda reader: find_by_id(reader, USERS, directory_id=directory_id, resource_id=user_id, related=True)
    )


async def test_waiting_calls_share_a_round_trip_and_each_gets_its_own_rows(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, ours), (second, theirs) = (
        await _directory_with_users(database, 40),
        await _directory_with_users(database, 40),
    )
    sizes = _round_trip_sizes(monkeypatch, _lookups(database))

    asks = [(first, f"{ours}{n:04d}") for n in range(1, 41)]
    asks += [
        (first, "no-such-user"),
        (first, f"{theirs}0001"),  # another directory's user: not found here
        ("no-such-directory", f"{ours}0001"),  # no directory row at all
        (second, f"{theirs}0007"),
        (first, f"{ours}0003"),  # asked twice at once
    ]
    found = await asyncio.gather(*(_find(database, directory_id, user_id) for directory_id, user_id in asks))

    assert max(sizes) > 1, sizes  # calls did go together
    for (directory_id, user_id), result in zip(asks, found, strict=True):
        if directory_id == "no-such-directory":
            assert result.directory is None and result.rows == []
            continue
        assert result.directory is not None and result.directory["id"] == directory_id
        expected = [user_id] if user_id.startswith(f"u{directory_id[-8:]}-") else []
        assert [row.id for row in result.rows] == expected
        assert result.related == {user_id: []} if expected else result.related == {}


async def test_a_call_that_fails_in_a_shared_round_trip_fails_alone(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory_id, prefix = await _directory_with_users(database, 10)
    sizes = _round_trip_sizes(monkeypatch, _lookups(database))
    asks = [f"{prefix}{n:04d}" for n in range(1, 11)]
    asks.insert(4, "bad\x00id")  # PostgreSQL refuses a NUL in text: this call's own error

    found = await asyncio.gather(*(_find(database, directory_id, ask) for ask in asks), return_exceptions=True)

    assert max(sizes) > 1, sizes
    for ask, result in zip(asks, found, strict=True):
        if ask == "bad\x00id":
            assert isinstance(result, PostgresError), result
        else:
            assert isinstance(result, Found) and [row.id for row in result.rows] == [ask], result
    assert [row.id for row in (await _find(database, directory_id, asks[0])).rows] == [asks[0]]


async def test_a_value_the_driver_refuses_fails_only_its_own_call(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory_id, prefix = await _directory_with_users(database, 6)
    sizes = _round_trip_sizes(monkeypatch, _lookups(database))

    async def by_name(number: int, count: int) -> Found:
        node = as_lookup(f'userName eq "{prefix}{number}"', resource="User")
        assert node is not None
        return await database.lookup(
            lambda reader: find_by(
                reader, USERS, node, dialect="postgresql", directory_id=directory_id, count=count, related=True
            )
        )

    asks = [(n, 100) for n in range(1, 7)]
    asks.insert(3, (2, 10**20))  # out of a LIMIT's range: asyncpg refuses it (a PostgresError) before sending
    found = await asyncio.gather(*(by_name(n, count) for n, count in asks), return_exceptions=True)

    assert max(sizes) > 1, sizes
    for (number, count), result in zip(asks, found, strict=True):
        if count == 10**20:
            assert isinstance(result, DataError), result
        else:
            assert isinstance(result, Found) and [row.user_name for row in result.rows] == [f"{prefix}{number}"]


async def test_a_dropped_connection_is_replaced(database: Database) -> None:
    directory = await make_directory(database)
    lookups = _lookups(database)
    await asyncio.gather(*(_find(database, directory.id, "nobody") for _ in range(8)))
    pids = [connection.driver.get_server_pid() for connection in lookups._idle]
    assert pids
    async with database.engine.begin() as connection:
        for pid in pids:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await asyncio.sleep(0.5)  # the connections' ends are seen by the event loop
    # Connections that ended while idle are dropped, not used: the next calls open new ones.
    found = await asyncio.gather(*(_find(database, directory.id, "nobody") for _ in range(8)))
    assert all(result.directory is not None and result.rows == [] for result in found)
    assert lookups._opened <= lookups._size
