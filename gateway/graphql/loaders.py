"""DataLoaders: one query per kind of related object for a whole page, whatever the page's size.

A ``Loaders`` lives for one operation (an HTTP request, one operation over a WebSocket, one subscription event:
see ``Context.loaders``), so nothing cached outlives it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
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
        def load(session: Session) -> list[dict[str, int]]:
            # GROUP BY state reads the (directory_id, state) index only.
            users: dict[str, dict[str, int]] = defaultdict(dict)
            for directory_id, state, count in session.execute(
                select(col(DirectoryUser.directory_id), col(DirectoryUser.state), func.count())
                .where(col(DirectoryUser.directory_id).in_(keys))
                .group_by(col(DirectoryUser.directory_id), col(DirectoryUser.state))
            ):
                users[directory_id][state] = count
            groups = {
                directory_id: count
                for directory_id, count in session.execute(
                    select(col(DirectoryGroup.directory_id), func.count())
                    .where(col(DirectoryGroup.directory_id).in_(keys))
                    .group_by(col(DirectoryGroup.directory_id))
                )
            }
            result = []
            for key in keys:
                active_count = users[key].get(UserState.ACTIVE.value, 0)
                total = sum(users[key].values())
                result.append(
                    {
                        "users": total,
                        "active": active_count,
                        "inactive": total - active_count,
                        "groups": groups.get(key, 0),
                    }
                )
            return result

        return await self.database.query(load)


def _groups_of_users(session: Session, keys: list[str]) -> list[list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    groups = DirectoryGroup.__table__  # type: ignore[attr-defined]
    statement = (
        select(col(GroupMembership.user_id).label("member_id"), *groups.c)
        .join(groups, groups.c.id == col(GroupMembership.group_id))
        .where(col(GroupMembership.user_id).in_(keys))
        .order_by(groups.c.id)
    )
    # Plain rows (read like DirectoryGroup), not ORM instances: a page's worth of them is cheap to drop.
    for row in session.execute(statement):
        grouped[row.member_id].append(row)
    return [grouped[key] for key in keys]
