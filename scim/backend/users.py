"""SCIM Users (RFC 7644 §3.3–3.6) applied to the store, with one event per real change."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from gateway.events.log import record_event
from gateway.events.payloads import EventName, previous_attributes, user_payload
from gateway.store.grouped_writer import insert_rows
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
from scim.backend.columns import user_columns
from scim.protocol.errors import ScimError
from scim.protocol.render import Member

_INSERT_USER = DirectoryUser.__table__.insert()  # type: ignore[attr-defined]


def uniqueness_error(exc: IntegrityError, resource: str) -> ScimError:
    message = str(exc.orig)
    if "idp_id" in message or "external_id" in message:
        return ScimError(409, f"A {resource} with this externalId already exists in this directory", "uniqueness")
    if resource == "User":
        return ScimError(409, "A User with this userName already exists in this directory", "uniqueness")
    return ScimError(409, f"{resource} conflicts with an existing one", "uniqueness")


def create_user(session: Session, *, directory: Directory, raw: dict[str, Any]) -> DirectoryUser:
    now = utcnow()
    row = {
        "id": new_id("directory_user"),
        "directory_id": directory.id,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        **user_columns(raw),
    }
    try:
        # One prebuilt Core statement, deferred to the batch's commit when grouped; the UNIQUE indexes (not a
        # read-then-insert) decide conflicts. A conflict fails the whole request's transaction: no savepoint needed.
        insert_rows(session, _INSERT_USER, [row])
    except IntegrityError as exc:
        raise uniqueness_error(exc, "User") from None
    # Only read from here on (payload, response): skip validation and ORM instrumentation, ~10x cheaper.
    user = DirectoryUser.model_construct(**row)
    record_event(
        session,
        event=EventName.USER_CREATED,
        organization_id=directory.organization_id,
        directory_id=directory.id,
        data=user_payload(user, organization_id=directory.organization_id),
    )
    return user


def get_user(session: Session, *, directory_id: str, user_id: str) -> DirectoryUser:
    user = session.scalar(
        select(DirectoryUser).where(col(DirectoryUser.id) == user_id, col(DirectoryUser.directory_id) == directory_id)
    )
    if user is None:
        raise ScimError(404, f"User {user_id} not found")
    return user


def save_user(session: Session, *, directory: Directory, user: DirectoryUser, raw: dict[str, Any]) -> bool:
    """Store ``raw`` as the user's new state; emit ``dsync.user.updated`` only when something really changed.

    Under the ``delete_inactive`` deprovisioning policy a deactivation deletes the user instead (WorkOS's "secure
    flow"): ``dsync.user.deleted``, and the user leaves every group."""
    columns = user_columns(raw)
    if all(getattr(user, key) == value for key, value in columns.items()):
        return False
    deactivated = user.state == UserState.ACTIVE and columns["state"] == UserState.INACTIVE
    if deactivated and directory.deprovision_policy == DeprovisionPolicy.DELETE_INACTIVE:
        for key, value in columns.items():
            set_committed_value(user, key, value)
        delete_user(session, directory=directory, user=user)
        return True
    before = user_payload(user, organization_id=directory.organization_id)
    for key, value in columns.items():
        setattr(user, key, value)
    user.version += 1
    user.updated_at = utcnow()
    try:
        session.flush()
    except IntegrityError as exc:
        raise uniqueness_error(exc, "User") from None
    after = user_payload(user, organization_id=directory.organization_id)
    after["previous_attributes"] = previous_attributes(before, after)
    record_event(
        session,
        event=EventName.USER_UPDATED,
        organization_id=directory.organization_id,
        directory_id=directory.id,
        data=after,
    )
    return True


def delete_user(session: Session, *, directory: Directory, user: DirectoryUser) -> None:
    """Delete the user; it leaves every group with it (``dsync.user.deleted`` says so for all its memberships)."""
    payload = user_payload(user, organization_id=directory.organization_id)
    group_ids = list(
        session.scalars(select(col(GroupMembership.group_id)).where(col(GroupMembership.user_id) == user.id))
    )
    session.execute(delete(DirectoryUser).where(col(DirectoryUser.id) == user.id))
    if group_ids:
        touch_groups(session, group_ids=group_ids)
    record_event(
        session,
        event=EventName.USER_DELETED,
        organization_id=directory.organization_id,
        directory_id=directory.id,
        data=payload,
    )


def touch_groups(session: Session, *, group_ids: Sequence[str]) -> None:
    """A group's member list changed: new version and lastModified."""
    session.execute(
        update(DirectoryGroup)
        .where(col(DirectoryGroup.id).in_(group_ids))
        .values(version=DirectoryGroup.version + 1, updated_at=utcnow())
    )


def list_users(
    session: Session, *, directory_id: str, where: Any | None, start_index: int, count: int
) -> tuple[int, list[DirectoryUser]]:
    conditions = [col(DirectoryUser.directory_id) == directory_id]
    if where is not None:
        conditions.append(where)
    total = session.scalar(select(func.count()).select_from(DirectoryUser).where(*conditions)) or 0
    if count == 0:
        return total, []
    rows = session.scalars(
        select(DirectoryUser).where(*conditions).order_by(col(DirectoryUser.id)).offset(start_index - 1).limit(count)
    )
    return total, list(rows)


def groups_of_users(session: Session, *, user_ids: Sequence[str]) -> dict[str, list[Member]]:
    """The computed, read-only ``groups`` attribute for a page of users, in one query."""
    result: dict[str, list[Member]] = defaultdict(list)
    if not user_ids:
        return result
    rows = session.execute(
        select(col(GroupMembership.user_id), col(DirectoryGroup.id), col(DirectoryGroup.name))
        .join(DirectoryGroup, col(DirectoryGroup.id) == col(GroupMembership.group_id))
        .where(col(GroupMembership.user_id).in_(user_ids))
        .order_by(col(DirectoryGroup.id))
    )
    for user_id, group_id, name in rows:
        result[user_id].append(Member(id=group_id, display=name))
    return result
