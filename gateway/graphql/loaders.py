"""DataLoaders: one query per kind of related object for a whole page, whatever the page's size.

A ``Loaders`` lives for one operation (an HTTP request, one operation over a WebSocket, one subscription event:
see ``Context.loaders``), so nothing cached outlives it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session
from sqlmodel import col
from strawberry.dataloader import DataLoader

from gateway.store.database import Database
from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, GroupMembership, Organization, UserState

_SLOTS_PER_OPERATION = 2


def _by_id(rows: Sequence[Any], keys: Sequence[str]) -> list[Any]:
    found = {row.id: row for row in rows}
    return [found.get(key) for key in keys]


class Loaders:
    def __init__(self, database: Database) -> None:
        self.database = database
        # Store round trips one operation may have in flight: the connections of a wide query wait here, not in the
        # store's queue (shared by every tenant, first come first served), so another tenant's request gets its turn.
        self.slots = asyncio.Semaphore(_SLOTS_PER_OPERATION)
        self.organization = DataLoader(self._organizations)
        self.directory = DataLoader(self._directories)
        self.directories_of_organization = DataLoader(self._directories_of_organizations)
        self.groups_of_user = DataLoader(self._groups_of_users)
        self.member_count = DataLoader(self._member_counts)
        self.directory_counts = DataLoader(self._directory_counts)
        # (group id, directory id, page size) -> the first members of each group, one statement for all the groups
        # of a page (``members(first: n)`` under each of them).
        self.first_members = DataLoader(self._first_members)
        # Groups of the users of a page, read with the page itself (``prefetch_groups_of_users``): a user's
        # ``groups`` then resolves without waiting, so a page completes without a task per user.
        self.known_groups_of_user: dict[str, list[Any]] = {}
        # The GraphQL object of each group seen by this operation: a page's users share their groups.
        self.group_objects: dict[str, Any] = {}

    def prefetch_groups_of_users(self, session: Session, user_ids: list[str]) -> None:
        """Runs in the page's own store job (one more statement, the one the DataLoader would have run)."""
        if user_ids:
            self.known_groups_of_user.update(zip(user_ids, _groups_of_users(session, user_ids), strict=True))

    async def _organizations(self, keys: list[str]) -> list[Organization | None]:
        def load(session: Session) -> list[Any]:
            return _by_id(list(session.scalars(select(Organization).where(col(Organization.id).in_(keys)))), keys)

        return await self.database.query(load)

    async def _directories(self, keys: list[str]) -> list[Directory | None]:
        def load(session: Session) -> list[Any]:
            return _by_id(list(session.scalars(select(Directory).where(col(Directory.id).in_(keys)))), keys)

        return await self.database.query(load)

    async def _directories_of_organizations(self, keys: list[str]) -> list[list[Directory]]:
        def load(session: Session) -> list[list[Directory]]:
            grouped: dict[str, list[Directory]] = defaultdict(list)
            statement = select(Directory).where(col(Directory.organization_id).in_(keys)).order_by(col(Directory.id))
            for directory in session.scalars(statement):
                grouped[directory.organization_id].append(directory)
            return [grouped[key] for key in keys]

        return await self.database.query(load)

    async def _groups_of_users(self, keys: list[str]) -> list[list[Any]]:
        return await self.database.query(lambda session: _groups_of_users(session, keys))

    async def _first_members(self, keys: list[tuple[str, str, int]]) -> list[tuple[list[Any], bool]]:
        def load(session: Session) -> list[tuple[list[Any], bool]]:
            users = DirectoryUser.__table__  # type: ignore[attr-defined]
            position = func.row_number().over(partition_by=col(GroupMembership.group_id), order_by=users.c.id)
            ranked = (
                select(*users.c, col(GroupMembership.group_id).label("member_of"), position.label("position"))
                .join(users, users.c.id == col(GroupMembership.user_id))
                .where(col(GroupMembership.group_id).in_({key[0] for key in keys}))
                .subquery()
            )
            largest = max(key[2] for key in keys)
            statement = select(ranked).where(ranked.c.position <= largest + 1).order_by(ranked.c.position)
            grouped: dict[str, list[Any]] = defaultdict(list)
            for row in session.execute(statement):
                grouped[row.member_of].append(row)
            pages = []
            for group_id, directory_id, size in keys:
                rows = [row for row in grouped[group_id] if row.directory_id == directory_id]
                pages.append((rows[:size], len(rows) > size))
            return pages

        return await self.database.query(load)

    async def _member_counts(self, keys: list[str]) -> list[int]:
        def load(session: Session) -> list[int]:
            statement = (
                select(col(GroupMembership.group_id), func.count())
                .where(col(GroupMembership.group_id).in_(keys))
                .group_by(col(GroupMembership.group_id))
            )
            counts = {group_id: count for group_id, count in session.execute(statement)}
            return [counts.get(key, 0) for key in keys]

        return await self.database.query(load)

    async def _directory_counts(self, keys: list[str]) -> list[dict[str, int]]:
        return await self.database.query(lambda session: directory_counts(session, keys))


def _count(table: Any, *where: Any) -> Any:
    return select(func.count()).select_from(table).where(*where).scalar_subquery()


def _directory_counts_statement() -> Any:
    # Each count reads an index range only: users by (directory_id), the inactive ones by (directory_id, state),
    # groups by (directory_id). The active count is the rest: counting the far more numerous active entries would
    # read most of the index a second time.
    users, groups = DirectoryUser.__table__, DirectoryGroup.__table__  # type: ignore[attr-defined]
    directories = Directory.__table__  # type: ignore[attr-defined]
    inactive_states = [state.value for state in UserState if state is not UserState.ACTIVE]
    return select(
        directories.c.id,
        _count(users, users.c.directory_id == directories.c.id),
        _count(users, users.c.directory_id == directories.c.id, users.c.state.in_(inactive_states)),
        _count(groups, groups.c.directory_id == directories.c.id),
    ).where(directories.c.id.in_(bindparam("ids", expanding=True)))


# Built once: a statement built per call costs more than running it (construction, then its cache key).
_DIRECTORY_COUNTS = _directory_counts_statement()


def directory_counts(session: Session | Connection, keys: list[str]) -> list[dict[str, int]]:
    """The four counts of each directory, one statement for them all."""
    found = {row[0]: row[1:] for row in session.execute(_DIRECTORY_COUNTS, {"ids": keys})}
    result = []
    for key in keys:
        total, inactive, group_count = found.get(key, (0, 0, 0))
        result.append({"users": total, "active": total - inactive, "inactive": inactive, "groups": group_count})
    return result


_groups_statements: dict[tuple[str, ...] | None, Any] = {}


def _groups_of_users_statement(columns: tuple[str, ...] | None) -> Any:
    statement = _groups_statements.get(columns)
    if statement is None:
        groups = DirectoryGroup.__table__  # type: ignore[attr-defined]
        selected = list(groups.c) if columns is None else [groups.c[name] for name in columns]
        statement = _groups_statements[columns] = (
            select(col(GroupMembership.user_id).label("member_id"), *selected)
            .join(groups, groups.c.id == col(GroupMembership.group_id))
            .where(col(GroupMembership.user_id).in_(bindparam("user_ids", expanding=True)))
            .order_by(groups.c.id)
        )
    return statement


def groups_of_users(
    session: Session | Connection, keys: list[str], columns: Sequence[str] | None = None
) -> dict[str, list[Any]]:
    """The groups of each of these users, ordered by id: rows of ``member_id`` then the groups' ``columns`` (all of
    them by default), read like DirectoryGroup. Plain rows, not ORM instances: a page's worth is cheap to drop."""
    grouped: dict[str, list[Any]] = defaultdict(list)
    statement = _groups_of_users_statement(None if columns is None else tuple(columns))
    for row in session.execute(statement, {"user_ids": keys}):
        grouped[row[0]].append(row)
    return grouped


def _groups_of_users(session: Session, keys: list[str]) -> list[list[Any]]:
    grouped = groups_of_users(session, keys)
    return [grouped.get(key, []) for key in keys]
