"""SCIM Groups (RFC 7644 §3.3–3.6) and their memberships, one row per edge.

Membership changes cost O(members changed): adds are one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` and removes
one ``DELETE … RETURNING``, so only real changes produce events and the member list is never loaded or rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Table, TextualSelect, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.log import record_event, record_events
from gateway.events.payloads import EventName, group_payload, membership_payload, user_payload
from gateway.ops.directory_rules import rules_of
from gateway.ops.rule_evaluation import regroup
from gateway.store.batch_driver import Later
from gateway.store.grouped_writer import direct_statements, postgres_statements
from gateway.store.ids import new_id
from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, GroupMembership, utcnow
from scim.backend.auth import LOCK_FIRST_GATE_SQL, taking_lock_first
from scim.backend.columns import group_columns
from scim.backend.resources import (
    ResourceKind,
    new_row,
    read_resource,
    related_members,
    save_resource,
    uniqueness_error,
    written,
)
from scim.protocol.errors import ScimError
from scim.protocol.filters import matches
from scim.protocol.patch import MemberChange
from scim.protocol.render import Member

# The membership path's statements, built once: executed with parameters they hit SQLAlchemy's compiled cache
# directly, where building ORM-enabled statements per request costs several times more CPU.
_groups: Table = DirectoryGroup.__table__  # type: ignore[attr-defined]
_users: Table = DirectoryUser.__table__  # type: ignore[attr-defined]
_memberships: Table = GroupMembership.__table__  # type: ignore[attr-defined]
_INSERT_GROUP = _groups.insert()
# Re-adding a member is a no-op; RETURNING names only the edges really added, so only they get events.
_INSERT_MEMBERSHIPS = {
    name: dialect.insert(_memberships).on_conflict_do_nothing().returning(_memberships.c.user_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_DELETE_MEMBERSHIPS = (
    delete(_memberships)
    .where(
        _memberships.c.group_id == bindparam("group_id"), _memberships.c.user_id.in_(bindparam("ids", expanding=True))
    )
    .returning(_memberships.c.user_id)
)
_USERS_IN_DIRECTORY = select(_users).where(
    _users.c.directory_id == bindparam("directory_id"), _users.c.id.in_(bindparam("ids", expanding=True))
)
_MEMBER_IDS = (
    select(_memberships.c.user_id)
    .where(_memberships.c.group_id == bindparam("group_id"))
    .order_by(_memberships.c.user_id)
)
_TOUCH_USERS = (
    update(_users)
    .where(_users.c.id.in_(bindparam("ids", expanding=True)))
    .values(version=_users.c.version + 1, updated_at=bindparam("now"))
)
_TOUCH_GROUP = (
    update(_groups)
    .where(_groups.c.id == bindparam("group_id"))
    .values(version=_groups.c.version + 1, updated_at=bindparam("now"))
)

# Each wanted id looked up by its primary key alone (OFFSET 0 keeps PostgreSQL from flattening the subquery into a
# join), the directory checked after. With the directory in the join, a plan made while the directory was small (an
# IdP adds members right after its initial sync, before autovacuum has analyzed the new rows) read every user of the
# directory: a one-member add took 45 ms at 20,000 users and 200 ms at 100,000.
_USER_BY_ID = "LATERAL (SELECT id, directory_id FROM directory_users WHERE id = wanted.id OFFSET 0) AS u"

# PostgreSQL: a member add in one statement (one round trip instead of four): the users of this directory among the
# ids, their new edges (re-adds are no-ops), and a version bump for each user really added and, if any was and
# ``touch`` says so, for the group. The ids travel as one array, so there is no bind limit to chunk for either.
_ADD_MEMBERS_POSTGRES = text(
    "WITH wanted AS ("
    " SELECT w.id, w.display FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:displays AS VARCHAR[])) AS w(id, display)"
    "), added AS ("
    " INSERT INTO group_memberships (group_id, user_id, directory_id, display, created_at)"
    " SELECT :group_id, u.id, u.directory_id, wanted.display, :now"
    f" FROM wanted CROSS JOIN {_USER_BY_ID} WHERE u.directory_id = :directory_id"
    " ON CONFLICT DO NOTHING RETURNING user_id"
    "), touched AS ("
    " UPDATE directory_groups SET version = version + 1, updated_at = :now"
    " WHERE id = :group_id AND :touch AND EXISTS (SELECT FROM added)"
    ") "
    "UPDATE directory_users SET version = directory_users.version + 1, updated_at = :now"
    " FROM added WHERE directory_users.id = added.user_id RETURNING directory_users.*"
).columns(*_users.c)

# PostgreSQL, a PATCH that only adds members, without If-Match: the same add as ``_ADD_MEMBERS_POSTGRES`` without
# reading the group first (one round trip, not two). Each row is the group (as touched, when a member was added;
# none: no such group in this directory) and one user bumped (NULLs when none was).
_GROUP_COLUMNS = ", ".join(column.name for column in _groups.c)
_USER_COLUMNS = ", ".join(column.name for column in _users.c)
_WANTED_ARRAYS = (
    "SELECT w.id, w.display FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:displays AS VARCHAR[])) AS w(id, display)"
)
# One member (an IdP's usual PATCH) as plain parameters: planned for an array of unknown length, the statement looked
# dearer than its plan for one element, so PostgreSQL planned it again at every execution (~0.7 ms of server CPU);
# planned for one row, its cached plan is kept (``gateway.store.plan_age``).
_WANTED_ONE = "SELECT CAST(:id AS VARCHAR) AS id, CAST(:display AS VARCHAR) AS display"


def _add_members_unread_postgres(wanted: str, *, gated: bool = False) -> TextualSelect:
    # ``gated``: the variant that can take the directory's kept lock as its run's first execution
    # (``auth.taking_lock_first``): the condition on the outermost query, which reads the CTEs that write (and the
    # group by ``target``, a CTE read more than once, so never inlined): nothing PostgreSQL can prove empty.
    gate = f" WHERE {LOCK_FIRST_GATE_SQL}" if gated else ""
    return text(
        "WITH target AS ("
        " SELECT id FROM directory_groups WHERE id = :group_id AND directory_id = :directory_id"
        f"), wanted AS ({wanted}"
        "), added AS ("
        " INSERT INTO group_memberships (group_id, user_id, directory_id, display, created_at)"
        " SELECT target.id, u.id, u.directory_id, wanted.display, :now"
        f" FROM target CROSS JOIN wanted CROSS JOIN {_USER_BY_ID} WHERE u.directory_id = :directory_id"
        " ON CONFLICT DO NOTHING RETURNING user_id"
        "), touched AS ("
        " UPDATE directory_groups SET version = version + 1, updated_at = :now"
        " WHERE id IN (SELECT id FROM target) AND EXISTS (SELECT FROM added) RETURNING *"
        "), bumped AS ("
        " UPDATE directory_users SET version = directory_users.version + 1, updated_at = :now"
        " FROM added WHERE directory_users.id = added.user_id RETURNING directory_users.*"
        ") "
        f"SELECT {', '.join(f'g.{name}' for name in _GROUP_COLUMNS.split(', '))}, "
        f"{', '.join(f'b.{name}' for name in _USER_COLUMNS.split(', '))} FROM ("
        " SELECT * FROM touched UNION ALL SELECT directory_groups.* FROM directory_groups JOIN target USING (id)"
        " WHERE NOT EXISTS (SELECT FROM touched)"
        f") AS g LEFT JOIN bumped AS b ON true{gate}"
    ).columns(*_groups.c, *_users.c)


_ADD_MEMBERS_UNREAD_POSTGRES = _add_members_unread_postgres(_WANTED_ARRAYS)
_ADD_ONE_MEMBER_UNREAD_POSTGRES = _add_members_unread_postgres(_WANTED_ONE)
_LOCK_FIRST = {
    statement: taking_lock_first(_add_members_unread_postgres(wanted, gated=True), gated=True)
    for statement, wanted in (
        (_ADD_MEMBERS_UNREAD_POSTGRES, _WANTED_ARRAYS),
        (_ADD_ONE_MEMBER_UNREAD_POSTGRES, _WANTED_ONE),
    )
}


def add_members_unread(
    session: Session, *, directory: Directory, group_id: str, members: Sequence[Member]
) -> DirectoryGroup | None | Later[DirectoryGroup | None]:
    """``add_members`` (the group touched) on PostgreSQL for a group not read before, in one statement (shared with
    the batch's other such adds: a ``Later``); returns the group as it now is, or None when this directory has no
    such group (nothing changed)."""
    display = {m.id: m.display for m in members}
    parameters: dict[str, Any] = {"group_id": group_id, "directory_id": directory.id, "now": utcnow()}
    if len(display) == 1:
        [(parameters["id"], parameters["display"])] = display.items()
        statement = _ADD_ONE_MEMBER_UNREAD_POSTGRES
    else:
        parameters.update(ids=list(display), displays=list(display.values()))
        statement = _ADD_MEMBERS_UNREAD_POSTGRES

    def added(rows: Sequence[Any]) -> DirectoryGroup | None:
        return _added_unread(session, directory=directory, display=display, rows=rows)

    postgres = postgres_statements(session)
    if postgres is None:
        return added(session.connection().execute(statement, parameters).all())
    if group_id in rules_of(session, directory=directory).mapped_groups:
        # Its new members' roles are computed again (``regroup``): statements of their own, so not sent together.
        return added(postgres.rows(statement, parameters))
    return postgres.rows_together(
        statement, parameters, key=group_id, key_column=0, then=added, lock_first=_LOCK_FIRST[statement]
    )


def _added_unread(
    session: Session, *, directory: Directory, display: dict[str, str | None], rows: Sequence[Any]
) -> DirectoryGroup | None:
    """The group ``add_members_unread`` touched (None: not found) and the events of the members it added."""
    if not rows:
        return None
    split = len(_groups.c)
    group = DirectoryGroup.model_construct(**dict(zip(_groups.c.keys(), rows[0][:split], strict=True)))
    user_keys = _users.c.keys()
    bumped = {
        row[split]: DirectoryUser.model_construct(**dict(zip(user_keys, row[split:], strict=True)))
        for row in rows
        if row[split] is not None
    }
    if not bumped:
        return group
    # In the order asked, as ``add_members`` does; the rows are already bumped (version, updated_at).
    snapshots = [bumped[i] for i in display if i in bumped]
    _record_edge_events(session, directory=directory, group=group, users=snapshots, event=EventName.GROUP_USER_ADDED)
    regroup(session, directory=directory, group_id=group.id, user_ids=[u.id for u in snapshots])
    return group


# SQLite, one member (an IdP's usual PATCH): the edge inserted only for a user of this directory (no read first), and
# the user's version bumped with its new row returned for the event; two statements instead of three.
_ADD_ONE_MEMBER_SQLITE = (
    sqlite.insert(_memberships)
    .from_select(
        ["group_id", "user_id", "directory_id", "display", "created_at"],
        select(
            bindparam("group_id", type_=_memberships.c.group_id.type),
            _users.c.id,
            _users.c.directory_id,
            bindparam("display", type_=_memberships.c.display.type),
            bindparam("now", type_=_memberships.c.created_at.type),
        ).where(_users.c.id == bindparam("user_id"), _users.c.directory_id == bindparam("directory_id")),
    )
    .on_conflict_do_nothing()
    .returning(_memberships.c.user_id)
)
_BUMP_USER = (
    update(_users)
    .where(_users.c.id == bindparam("user_id"))
    .values(version=_users.c.version + 1, updated_at=bindparam("now"))
    .returning(*_users.c)
)
_USER_COLUMN_NAMES = tuple(column.name for column in _users.c)

# SQLite, a PATCH adding one member without If-Match (``add_one_member_unread``): the edge inserted only when both the
# group and the user are of this directory, without reading the group first; then the group touched and the user
# bumped, each returning its new row for the event. Three statements instead of four.
_ADD_ONE_MEMBER_UNREAD_SQLITE = (
    sqlite.insert(_memberships)
    .from_select(
        ["group_id", "user_id", "directory_id", "display", "created_at"],
        select(
            _groups.c.id,
            _users.c.id,
            _users.c.directory_id,
            bindparam("display", type_=_memberships.c.display.type),
            bindparam("now", type_=_memberships.c.created_at.type),
        ).where(
            _groups.c.id == bindparam("group_id"),
            _groups.c.directory_id == bindparam("directory_id"),
            _users.c.id == bindparam("user_id"),
            _users.c.directory_id == bindparam("directory_id"),
        ),
    )
    .on_conflict_do_nothing()
    .returning(_memberships.c.user_id)
)
_TOUCH_GROUP_RETURNING = _TOUCH_GROUP.returning(*_groups.c)
_GROUP_COLUMN_NAMES = tuple(column.name for column in _groups.c)

# Ids per statement: an expanding IN list binds one parameter per id, and both stores stop near 32,767 of them.
_CHUNK = 5000


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def create_group(
    session: Session, *, directory: Directory, raw: dict[str, Any], members: Sequence[Member]
) -> DirectoryGroup:
    columns = group_columns(raw, directory_type=directory.type)
    row = new_row(directory=directory, resource_id=new_id("directory_group"), columns=columns)
    try:
        # Now, not deferred like a user's: the memberships added next refer to it.
        session.execute(_INSERT_GROUP, row)
    except IntegrityError as exc:
        raise uniqueness_error(exc, "Group") from None
    group = DirectoryGroup(**row)
    record_event(
        session,
        event=EventName.GROUP_CREATED,
        organization_id=directory.organization_id,
        directory_id=directory.id,
        data=group_payload(group, organization_id=directory.organization_id),
    )
    add_members(session, directory=directory, group=group, members=members, touch_group=False)
    return group


def save_group(session: Session, *, directory: Directory, group: DirectoryGroup, raw: dict[str, Any]) -> bool:
    """Store ``raw`` (without members); ``dsync.group.updated`` only when something really changed."""
    columns = group_columns(raw, directory_type=directory.type)
    return save_resource(session, GROUPS, directory=directory, row=group, columns=columns)


def _users_in_directory(session: Session, *, directory_id: str, ids: list[str]) -> list[dict[str, Any]]:
    """The rows of those ``ids`` that are users of this directory, in the order asked (others are ignored)."""
    by_id: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        result = session.execute(_USERS_IN_DIRECTORY, {"directory_id": directory_id, "ids": chunk})
        by_id.update((row["id"], dict(row)) for row in result.mappings())
    return [by_id[i] for i in ids if i in by_id]


def _record_edge_events(
    session: Session, *, directory: Directory, group: DirectoryGroup, users: list[DirectoryUser], event: EventName
) -> None:
    """One ``event`` per (group, user) edge, each with the user's snapshot as it is after the change."""
    org = directory.organization_id
    group_data = group_payload(group, organization_id=org)
    record_events(
        session,
        organization_id=org,
        directory_id=directory.id,
        events=[(event, membership_payload(user_payload(u, organization_id=org), group_data)) for u in users],
    )


def _membership_changed(
    session: Session,
    *,
    directory: Directory,
    group: DirectoryGroup,
    users: list[dict[str, Any]],
    event: EventName,
    touch_group: bool = True,
) -> None:
    """Bump the users (their ``groups`` changed) and the group, and emit one event per edge."""
    if not users:
        return
    now = utcnow()
    for chunk in _chunks([u["id"] for u in users]):
        session.execute(_TOUCH_USERS, {"ids": chunk, "now": now})
    if touch_group:
        session.execute(_TOUCH_GROUP, {"group_id": group.id, "now": now})
        written(group, {"version": group.version + 1, "updated_at": now})  # by the UPDATE above
    # Snapshots for the payloads only: model_construct skips validation and ORM instrumentation.
    snapshots = [DirectoryUser.model_construct(**{**u, "version": u["version"] + 1, "updated_at": now}) for u in users]
    _record_edge_events(session, directory=directory, group=group, users=snapshots, event=event)


def add_members(
    session: Session,
    *,
    directory: Directory,
    group: DirectoryGroup,
    members: Iterable[Member],
    touch_group: bool = True,
) -> int:
    """Add members; values unknown in this directory are ignored and re-adds are silent no-ops (JumpCloud re-sends)."""
    display = {m.id: m.display for m in members}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return _add_members_postgres(session, directory=directory, group=group, display=display, touch=touch_group)
    if len(display) == 1:
        [(user_id, shown)] = display.items()
        return _add_one_member_sqlite(
            session, directory=directory, group=group, user_id=user_id, display=shown, touch=touch_group
        )
    users = _users_in_directory(session, directory_id=directory.id, ids=list(display))
    if not users:
        return 0
    statement = _INSERT_MEMBERSHIPS[session.get_bind().dialect.name]
    now = utcnow()
    rows = [
        {
            "group_id": group.id,
            "user_id": u["id"],
            "directory_id": directory.id,
            "display": display[u["id"]],
            "created_at": now,
        }
        for u in users
    ]
    added = set(session.scalars(statement, rows))
    changed = [u for u in users if u["id"] in added]
    _membership_changed(
        session,
        directory=directory,
        group=group,
        users=changed,
        event=EventName.GROUP_USER_ADDED,
        touch_group=touch_group,
    )
    regroup(session, directory=directory, group_id=group.id, user_ids=[u["id"] for u in changed])
    return len(changed)


def _add_members_postgres(
    session: Session, *, directory: Directory, group: DirectoryGroup, display: dict[str, str | None], touch: bool
) -> int:
    """``add_members`` on PostgreSQL (see ``_ADD_MEMBERS_POSTGRES``): the same rows, events and order."""
    if not display:
        return 0
    now = utcnow()
    parameters = {
        "ids": list(display),
        "displays": list(display.values()),
        "group_id": group.id,
        "directory_id": directory.id,
        "now": now,
        "touch": touch,
    }
    bumped = {row["id"]: row for row in session.execute(_ADD_MEMBERS_POSTGRES, parameters).mappings()}
    if not bumped:
        return 0
    if touch:  # bumped by the statement
        written(group, {"version": group.version + 1, "updated_at": now})
    # In the order asked, as the other store does; the rows are already bumped (version, updated_at).
    snapshots = [DirectoryUser.model_construct(**bumped[i]) for i in display if i in bumped]
    _record_edge_events(session, directory=directory, group=group, users=snapshots, event=EventName.GROUP_USER_ADDED)
    changed = [u.id for u in snapshots]
    regroup(session, directory=directory, group_id=group.id, user_ids=changed)
    return len(changed)


def _add_one_member_sqlite(
    session: Session, *, directory: Directory, group: DirectoryGroup, user_id: str, display: str | None, touch: bool
) -> int:
    """``add_members`` of one member on SQLite (see ``_ADD_ONE_MEMBER_SQLITE``): the same rows, events and order."""
    now = utcnow()
    parameters = {
        "group_id": group.id,
        "user_id": user_id,
        "directory_id": directory.id,
        "display": display,
        "now": now,
    }
    # (An UPDATE's parameters name no column: SQLAlchemy would take it as one more column to set.)
    bump, touching = {"user_id": user_id, "now": now}, {"group_id": group.id, "now": now}
    direct = direct_statements(session)
    if direct is not None:
        if not direct.rows(_ADD_ONE_MEMBER_SQLITE, parameters):
            return 0  # not a user of this directory, or already a member
        bumped: Any = dict(zip(_USER_COLUMN_NAMES, direct.rows(_BUMP_USER, bump)[0], strict=True))
        if touch:
            direct.rows(_TOUCH_GROUP, touching)
    else:
        connection = session.connection()
        if connection.execute(_ADD_ONE_MEMBER_SQLITE, parameters).first() is None:
            return 0
        bumped = connection.execute(_BUMP_USER, bump).mappings().one()
        if touch:
            connection.execute(_TOUCH_GROUP, touching)
    if touch:
        written(group, {"version": group.version + 1, "updated_at": now})
    org = directory.organization_id
    user = user_payload(DirectoryUser.model_construct(**bumped), organization_id=org)
    record_event(
        session,
        event=EventName.GROUP_USER_ADDED,
        organization_id=org,
        directory_id=directory.id,
        data=membership_payload(user, group_payload(group, organization_id=org)),
    )
    regroup(session, directory=directory, group_id=group.id, user_ids=[user_id])
    return 1


def add_one_member_unread(
    session: Session, *, directory: Directory, group_id: str, members: Sequence[Member]
) -> DirectoryGroup | None:
    """``add_members`` (the group touched) on SQLite for a group not read before; returns the group as it now is, or
    None when this directory has no such group (nothing changed). One member (an IdP's usual PATCH) in three
    statements on the batch's connection (``_ADD_ONE_MEMBER_UNREAD_SQLITE``); else the group is read first."""
    direct = direct_statements(session)
    display = {m.id: m.display for m in members}
    if direct is None or len(display) != 1:
        try:
            group = read_resource(session, GROUPS, directory_id=directory.id, resource_id=group_id)
        except ScimError:
            return None
        add_members(session, directory=directory, group=group, members=members)
        return group
    [(user_id, shown)] = display.items()
    now = utcnow()
    parameters = {"group_id": group_id, "user_id": user_id, "directory_id": directory.id, "display": shown, "now": now}
    if not direct.rows(_ADD_ONE_MEMBER_UNREAD_SQLITE, parameters):
        # Not added: no such group, not a user of this directory, or already a member (a no-op).
        try:
            return read_resource(session, GROUPS, directory_id=directory.id, resource_id=group_id)
        except ScimError:
            return None
    # (An UPDATE's parameters name no column: SQLAlchemy would take it as one more column to set.)
    touched = direct.rows(_TOUCH_GROUP_RETURNING, {"group_id": group_id, "now": now})
    group = DirectoryGroup.model_construct(**dict(zip(_GROUP_COLUMN_NAMES, touched[0], strict=True)))
    bumped = direct.rows(_BUMP_USER, {"user_id": user_id, "now": now})
    user = DirectoryUser.model_construct(**dict(zip(_USER_COLUMN_NAMES, bumped[0], strict=True)))
    _record_edge_events(session, directory=directory, group=group, users=[user], event=EventName.GROUP_USER_ADDED)
    regroup(session, directory=directory, group_id=group_id, user_ids=[user_id])
    return group


def remove_members(session: Session, *, directory: Directory, group: DirectoryGroup, user_ids: Iterable[str]) -> int:
    """Remove members; removing one that is absent is a silent no-op."""
    ids = _unique(user_ids)
    if not ids:
        return 0
    removed: set[str] = set()
    for chunk in _chunks(ids):
        removed.update(session.scalars(_DELETE_MEMBERSHIPS, {"group_id": group.id, "ids": chunk}))
    users = _users_in_directory(session, directory_id=directory.id, ids=[i for i in ids if i in removed])
    _membership_changed(session, directory=directory, group=group, users=users, event=EventName.GROUP_USER_REMOVED)
    regroup(session, directory=directory, group_id=group.id, user_ids=[u["id"] for u in users])
    return len(users)


def replace_members(
    session: Session, *, directory: Directory, group: DirectoryGroup, members: Sequence[Member]
) -> None:
    """Make the member list exactly ``members`` (known ones), applied as a difference: only the members that come or
    go are written, whatever the group's size."""
    wanted = set(m.id for m in members)
    ordered = list(session.scalars(_MEMBER_IDS, {"group_id": group.id}))
    current = set(ordered)
    remove_members(session, directory=directory, group=group, user_ids=[i for i in ordered if i not in wanted])
    add_members(session, directory=directory, group=group, members=[m for m in members if m.id not in current])


def apply_member_changes(
    session: Session, *, directory: Directory, group: DirectoryGroup, changes: Sequence[MemberChange]
) -> None:
    """Apply a PATCH's member operations in order."""
    for change in changes:
        if change.kind == "add":
            add_members(session, directory=directory, group=group, members=change.members)
        elif change.kind == "remove":
            remove_members(session, directory=directory, group=group, user_ids=[m.id for m in change.members])
        elif change.kind == "replace":
            replace_members(session, directory=directory, group=group, members=change.members)
        else:
            # A filter other than `value eq …` (e.g. on display): the only case that reads the member list.
            assert change.where is not None
            members = related_members(session, GROUPS, [group.id]).get(group.id, [])
            chosen = [
                m.id
                for m in members
                if matches(
                    change.where,
                    {"value": m.id, "display": m.display, "type": "User"},
                    resource="Group",
                    parent="members",
                )
            ]
            remove_members(session, directory=directory, group=group, user_ids=chosen)


GROUPS: ResourceKind[DirectoryGroup] = ResourceKind(
    name="Group",
    model=DirectoryGroup,
    payload=group_payload,
    updated=EventName.GROUP_UPDATED,
    deleted=EventName.GROUP_DELETED,
    own_key=col(GroupMembership.group_id),
    related_key=col(GroupMembership.user_id),
    related_model=DirectoryUser,
    # The display the client gave when adding the member, else the user's own name.
    related_display=func.coalesce(
        col(GroupMembership.display), col(DirectoryUser.display_name), col(DirectoryUser.user_name)
    ),
)
