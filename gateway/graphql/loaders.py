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
