"""The filtered statements behind the users and groups connections (Directory.users, Directory.groups,
DirectoryGroup.members): plain table rows, which the connections page through by id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, or_, select
from sqlmodel import col

from gateway.store import models
from gateway.store.models import UserState

# Searched by users(search: ...), case-insensitively.
_USER_SEARCH_COLUMNS = (
    models.DirectoryUser.user_name,
    models.DirectoryUser.email,
    models.DirectoryUser.first_name,
    models.DirectoryUser.last_name,
    models.DirectoryUser.display_name,
)


def table_of(model: type[Any]) -> Any:
    # Rows of the table's columns read like the model (attribute access by column name), without ORM instances.
    return model.__table__


def _search(term: str) -> str:
    """A LIKE pattern for ``term`` anywhere, its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = term.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def users_statement(
    *,
    directory_id: str,
    state: UserState | None = None,
    group_id: str | None = None,
    search: str | None = None,
    role: str | None = None,
) -> Select[Any]:
    statement = select(table_of(models.DirectoryUser)).where(col(models.DirectoryUser.directory_id) == directory_id)
    if state is not None:
        statement = statement.where(col(models.DirectoryUser.state) == state.value)
    if role is not None:
        statement = statement.where(col(models.DirectoryUser.role) == role)
    if group_id is not None:
        members = select(col(models.GroupMembership.user_id)).where(col(models.GroupMembership.group_id) == group_id)
        statement = statement.where(col(models.DirectoryUser.id).in_(members))
    if search:
        pattern = _search(search)
        statement = statement.where(or_(*(col(column).ilike(pattern, escape="\\") for column in _USER_SEARCH_COLUMNS)))
    return statement


def groups_statement(*, directory_id: str, search: str | None = None, member_id: str | None = None) -> Select[Any]:
    statement = select(table_of(models.DirectoryGroup)).where(col(models.DirectoryGroup.directory_id) == directory_id)
    if search:
        statement = statement.where(col(models.DirectoryGroup.name).ilike(_search(search), escape="\\"))
    if member_id is not None:
        groups = select(col(models.GroupMembership.group_id)).where(col(models.GroupMembership.user_id) == member_id)
        statement = statement.where(col(models.DirectoryGroup.id).in_(groups))
    return statement
