"""SCIM Users (RFC 7644 §3.3–3.6) applied to the store, with one event per real change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table, bindparam, delete, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.log import record_event
from gateway.events.payloads import EventName, user_payload
from gateway.ops.rule_evaluation import apply_rules
from gateway.store.batch_driver import Later
from gateway.store.grouped_writer import direct_statements, insert_new_rows, postgres_statements
from gateway.store.ids import new_id
from gateway.store.models import (
    DeprovisionPolicy,
    Directory,
    DirectoryGroup,
    DirectoryUser,
    GroupMembership,
    UserState,
    utcnow,
)
from gateway.store.serialization import encoded
from scim.backend.auth import taking_lock_first
from scim.backend.columns import user_columns
from scim.backend.resources import ResourceKind, delete_resource, new_row, save_resource, uniqueness_error, written

_INSERT_USER = DirectoryUser.__table__.insert()  # type: ignore[attr-defined]


USERS: ResourceKind[DirectoryUser] = ResourceKind(
    name="User",
    model=DirectoryUser,
    payload=user_payload,
    updated=EventName.USER_UPDATED,
    deleted=EventName.USER_DELETED,
    own_key=col(GroupMembership.user_id),
    related_key=col(GroupMembership.group_id),
    related_model=DirectoryGroup,
    related_display=col(DirectoryGroup.name),
)


def create_user(session: Session, *, directory: Directory, raw: dict[str, Any]) -> DirectoryUser:
    columns = user_columns(raw)
    apply_rules(session, directory=directory, columns=columns, user=None)  # custom attributes, default role
    row = new_row(directory=directory, resource_id=new_id("directory_user"), columns=columns)
    try:
        # One prebuilt Core statement; the UNIQUE indexes (not a read-then-insert) decide a conflict. No other job
        # can refer to the new id before the commit, so a grouped batch may write it with the batch's other new users
        # (``insert_new_rows``); a conflict there runs the batch again with savepoints, and it is raised here.
        insert_new_rows(session, _INSERT_USER, [row])
    except IntegrityError as exc:
        raise uniqueness_error(exc, "User") from None
    record_event(
        session,
        event=EventName.USER_CREATED,
        organization_id=directory.organization_id,
        directory_id=directory.id,
        data=user_payload(row, organization_id=directory.organization_id),
    )
    # Only read from here on (the response): skip validation and ORM instrumentation, ~10x cheaper.
    return DirectoryUser.model_construct(**row)


def save_user(session: Session, *, directory: Directory, user: DirectoryUser, raw: dict[str, Any]) -> bool:
    """Store ``raw`` as the user's new state; emit ``dsync.user.updated`` only when something really changed.

    Under the ``delete_inactive`` deprovisioning policy a deactivation deletes the user instead (WorkOS's "secure
    flow"): ``dsync.user.deleted``, and the user leaves every group."""
    columns = user_columns(raw)
    apply_rules(session, directory=directory, columns=columns, user=user)  # custom attributes; roles on (de)activation
    deactivated = user.state == UserState.ACTIVE and columns["state"] == UserState.INACTIVE
    if deactivated and directory.deprovision_policy == DeprovisionPolicy.DELETE_INACTIVE:
        # The deleted event carries the user as deactivated (on the snapshot only: the row is deleted).
        written(user, columns)
        delete_user(session, directory=directory, user=user)
        return True
    return save_resource(session, USERS, directory=directory, row=user, columns=columns)


def delete_user(session: Session, *, directory: Directory, user: DirectoryUser) -> None:
    """Delete the user; it leaves every group with it (``dsync.user.deleted`` says so for all its memberships)."""
    delete_resource(session, USERS, directory=directory, row=user)


_users: Table = DirectoryUser.__table__  # type: ignore[attr-defined]
_groups: Table = DirectoryGroup.__table__  # type: ignore[attr-defined]
_memberships: Table = GroupMembership.__table__  # type: ignore[attr-defined]
# PostgreSQL: ``delete_user`` in one statement, without reading the user first: the user deleted (its row returned
# for the event) and its groups touched. The touch reads the memberships from the statement's snapshot, before the
# delete's cascade removes them, and only for a user this statement deleted (one of this directory).
_gone = (
    delete(_users)
    .where(_users.c.id == bindparam("doomed_id"), _users.c.directory_id == bindparam("doomed_directory_id"))
    .returning(*_users.c)
    .cte("gone")
)
_DELETE_USER_POSTGRES = select(_gone).add_cte(
    update(_groups)
    .where(_groups.c.id.in_(select(_memberships.c.group_id).where(_memberships.c.user_id.in_(select(_gone.c.id)))))
    .values(version=_groups.c.version + 1, updated_at=bindparam("now"))
    .cte("touched")
)
# The batch's directory lock, kept for later, taken as the first execution of its run of DELETEs.
_DELETE_USER_LOCK_FIRST = taking_lock_first(_DELETE_USER_POSTGRES)


# SQLite (no DML in a CTE): two statements. First the groups touched, while the memberships still name them: only
# groups of this directory, so only for a user of this directory (whose memberships link to its groups only); then
# the user deleted, its row returned for the event.
_TOUCH_GROUPS_OF_USER_SQLITE = (
    update(_groups)
    .where(
        _groups.c.id.in_(select(_memberships.c.group_id).where(_memberships.c.user_id == bindparam("doomed_id"))),
        _groups.c.directory_id == bindparam("doomed_directory_id"),
    )
    .values(version=_groups.c.version + 1, updated_at=bindparam("now"))
)
# The deleted user's JSON columns that its event carries as they are: returned as their stored text and embedded
# in the payload so (``encoded``), not decoded only to be encoded again (~15 us a user).
_AS_STORED = ("emails", "custom_attributes", "raw_attributes")
_DELETE_USER_SQLITE = (
    delete(_users)
    .where(_users.c.id == bindparam("doomed_id"), _users.c.directory_id == bindparam("doomed_directory_id"))
    .returning(*(type_coerce(c, String).label(c.name) if c.name in _AS_STORED else c for c in _users.c))
)
_USER_COLUMNS = tuple(column.name for column in _users.c)


def _deleted_sqlite(values: Any) -> dict[str, Any]:
    """The row ``_DELETE_USER_SQLITE`` returned, its JSON columns ready for the event payload as stored."""
    row = dict(zip(_USER_COLUMNS, values, strict=True))
    for name in _AS_STORED:
        row[name] = encoded(row[name].encode())
    return row


def delete_user_by_id(session: Session, *, directory: Directory, user_id: str) -> bool | Later[bool]:
    """``delete_user`` for a DELETE without ``If-Match``, the user unread: one round trip on PostgreSQL (shared with
    the batch's other such DELETEs: a ``Later``), two statements on SQLite. False: no such user (in this
    directory)."""
    # (No parameter named as a column: an UPDATE would take it as one more column to set.)
    parameters = {"doomed_id": user_id, "doomed_directory_id": directory.id, "now": utcnow()}
    direct = direct_statements(session)
    if direct is not None:
        direct.rows(_TOUCH_GROUPS_OF_USER_SQLITE, parameters)
        deleted = direct.rows(_DELETE_USER_SQLITE, parameters)
        row: Any = _deleted_sqlite(deleted[0]) if deleted else None
    elif (postgres := postgres_statements(session)) is not None:

        def gone(deleted: list[Any]) -> bool:
            row = dict(zip(_USER_COLUMNS, deleted[0], strict=True)) if deleted else None
            return _deleted(session, directory=directory, row=row)

        return postgres.rows_together(
            _DELETE_USER_POSTGRES, parameters, key=user_id, key_column=0, then=gone, lock_first=_DELETE_USER_LOCK_FIRST
        )
    elif session.connection().dialect.name == "sqlite":
        session.connection().execute(_TOUCH_GROUPS_OF_USER_SQLITE, parameters)
        returned = session.connection().execute(_DELETE_USER_SQLITE, parameters).first()
        row = None if returned is None else _deleted_sqlite(returned)
    else:
        row = session.connection().execute(_DELETE_USER_POSTGRES, parameters).mappings().first()
    return _deleted(session, directory=directory, row=row)


def _deleted(session: Session, *, directory: Directory, row: Any) -> bool:
    """The event of a user ``delete_user_by_id`` deleted (its row), if it found one."""
    if row is None:
        return False
    organization_id = directory.organization_id
    record_event(
        session,
        event=EventName.USER_DELETED,
        organization_id=organization_id,
        directory_id=directory.id,
        data=user_payload(dict(row), organization_id=organization_id),  # the row itself: no model needed
    )
    return True
