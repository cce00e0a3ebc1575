"""The filtered statements behind the users and groups connections (Directory.users, Directory.groups,
DirectoryGroup.members): plain table rows, which the connections page through by id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, or_, select
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


def user_filter_values(
    *,
    directory_id: str,
    state: UserState | None = None,
    group_id: str | None = None,
    search: str | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """The users connection's filters as the values ``user_filters`` compares with (None: not filtered)."""
    return {
        "directory_id": directory_id,
        "state": None if state is None else state.value,
        "role": role,
        "group_id": group_id,
        "pattern": _search(search) if search else None,
    }


def user_filters(*, directory_id: Any, state: Any, role: Any, group_id: Any, pattern: Any) -> list[Any]:
    """The WHERE clauses of a users connection: each argument a value or a bind parameter, None for no filter."""
    where = [col(models.DirectoryUser.directory_id) == directory_id]
    if state is not None:
        where.append(col(models.DirectoryUser.state) == state)
    if role is not None:
        where.append(col(models.DirectoryUser.role) == role)
    if group_id is not None:
        members = select(col(models.GroupMembership.user_id)).where(col(models.GroupMembership.group_id) == group_id)
        where.append(col(models.DirectoryUser.id).in_(members))
    if pattern is not None:
        where.append(or_(*(col(column).ilike(pattern, escape="\\") for column in _USER_SEARCH_COLUMNS)))
    return where


def users_statement(
    *,
    directory_id: str,
    state: UserState | None = None,
    group_id: str | None = None,
    search: str | None = None,
    role: str | None = None,
) -> Select[Any]:
    values = user_filter_values(directory_id=directory_id, state=state, group_id=group_id, search=search, role=role)
    return select(table_of(models.DirectoryUser)).where(*user_filters(**values))


def group_filter_values(
    *, directory_id: str, search: str | None = None, member_id: str | None = None
) -> dict[str, Any]:
    """The groups connection's filters as the values ``group_filters`` compares with (None: not filtered)."""
    return {"directory_id": directory_id, "pattern": _search(search) if search else None, "member_id": member_id}


def group_filters(*, directory_id: Any, pattern: Any, member_id: Any) -> list[Any]:
    """The WHERE clauses of a groups connection: each argument a value or a bind parameter, None for no filter."""
    where = [col(models.DirectoryGroup.directory_id) == directory_id]
    if pattern is not None:
        where.append(col(models.DirectoryGroup.name).ilike(pattern, escape="\\"))
    if member_id is not None:
        groups = select(col(models.GroupMembership.group_id)).where(col(models.GroupMembership.user_id) == member_id)
        where.append(col(models.DirectoryGroup.id).in_(groups))
    return where


def groups_statement(*, directory_id: str, search: str | None = None, member_id: str | None = None) -> Select[Any]:
    values = group_filter_values(directory_id=directory_id, search=search, member_id=member_id)
    return select(table_of(models.DirectoryGroup)).where(*group_filters(**values))


def as_parameters(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter values (``user_filter_values``, ``group_filter_values``) as bind parameters, and the parameters'
    values: a statement built from them serves every request with the same filters set."""
    bound: dict[str, Any] = {
        name: None if value is None else bindparam(f"filter_{name}") for name, value in values.items()
    }
    return bound, {f"filter_{name}": value for name, value in values.items() if value is not None}
