"""A user's role(s) and custom attributes, computed from its directory's rules: on every SCIM write (in the write's
own transaction), and for a set of users at once after a rule changed (``gateway.ops.rule_evaluator``).

A user's ``roles`` are the roles of all its mapped groups, highest priority first (ties: the lower slug); its
``role`` is the first of them. A user in no mapped group has the organization's default role (if any). An inactive
user has no role at all: deprovisioning takes its access away; reactivating it gives it back from its groups.
Each change of a user's role(s) or custom attributes is one ``dsync.user.updated`` whose ``previous_attributes``
carry the old values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from sqlalchemy import JSON, Table, bindparam, select, update
from sqlalchemy.orm import Session

from gateway.events.log import record_events
from gateway.events.payloads import EventData, EventName, UserData, previous_attributes, user_payload
from gateway.ops.custom_attributes import evaluate_attributes
from gateway.ops.directory_rules import DirectoryRules, queue_evaluation, rules_of
from gateway.store.models import (
    Directory,
    DirectoryUser,
    GroupMembership,
    Role,
    RoleMapping,
    RuleEvaluation,
    UserState,
    utcnow,
)

# A mapped group with more members than this, deleted, is re-evaluated in the background, not in the SCIM request.
INLINE_LIMIT = 1000

_users: Table = DirectoryUser.__table__  # type: ignore[attr-defined]
_memberships: Table = GroupMembership.__table__  # type: ignore[attr-defined]
_mappings: Table = RoleMapping.__table__  # type: ignore[attr-defined]
_roles: Table = Role.__table__  # type: ignore[attr-defined]

# Prebuilt (see ``scim.backend.groups``): executed with parameters they hit SQLAlchemy's compiled cache.
_USERS = select(_users).where(
    _users.c.directory_id == bindparam("directory_id"), _users.c.id.in_(bindparam("ids", expanding=True))
)
# Every mapped role of a set of users, in one query.
_ROLES_OF = (
    select(_memberships.c.user_id, _roles.c.slug, _mappings.c.priority)
    .select_from(
        _memberships.join(_mappings, _mappings.c.group_id == _memberships.c.group_id).join(
            _roles, _roles.c.id == _mappings.c.role_id
        )
    )
    .where(_memberships.c.user_id.in_(bindparam("ids", expanding=True)))
)
_MEMBERS = select(_memberships.c.user_id).where(_memberships.c.group_id == bindparam("group_id"))
_SAVE = (
    update(_users)
    .where(_users.c.id == bindparam("b_id"))
    .values(
        role=bindparam("b_role"),
        roles=bindparam("b_roles", type_=_users.c.roles.type),
        custom_attributes=bindparam("b_custom", type_=_users.c.custom_attributes.type),
        version=bindparam("b_version"),
        updated_at=bindparam("b_now"),
    )
)
assert isinstance(_users.c.roles.type, JSON)


def _ranked(found: Iterable[tuple[str, int]], default: str | None) -> list[str]:
    """Role slugs, highest priority first, ties by slug; the default role when there is none."""
    best: dict[str, int] = {}
    for slug, priority in found:
        best[slug] = max(priority, best.get(slug, priority))
    ranked = sorted(best, key=lambda slug: (-best[slug], slug))
    return ranked or ([default] if default else [])


def roles_of(session: Session, *, rules: DirectoryRules, user_ids: list[str]) -> dict[str, list[str]]:
    """The ranked roles of each of these (active) users, in one query."""
    found: dict[str, list[tuple[str, int]]] = {i: [] for i in user_ids}
    if rules.mapped_groups and user_ids:
        for user_id, slug, priority in session.execute(_ROLES_OF, {"ids": user_ids}):
            found[user_id].append((slug, priority))
    return {i: _ranked(f, rules.default_role) for i, f in found.items()}


def apply_rules(session: Session, *, directory: Directory, columns: dict[str, Any], user: DirectoryUser | None) -> None:
    """Complete a user's new ``columns`` (a SCIM create or replace) with its custom attributes and role(s).

    Roles change on a write only when the user is created, deactivated or reactivated: its groups change through
    group writes (``regroup``), which recompute them there."""
    rules = rules_of(session, directory=directory)
    columns["custom_attributes"] = evaluate_attributes(columns["raw_attributes"], rules.paths)
    inactive = columns["state"] == UserState.INACTIVE
    if inactive:
        ranked: list[str] = []
    elif user is None:
        ranked = [rules.default_role] if rules.default_role else []  # a new user is in no group
    elif user.state == UserState.INACTIVE:
        ranked = roles_of(session, rules=rules, user_ids=[user.id])[user.id]
    else:
        return
    columns["roles"] = ranked
    columns["role"] = ranked[0] if ranked else None


def regroup(session: Session, *, directory: Directory, group_id: str, user_ids: list[str]) -> None:
    """Members joined or left a group: when it is mapped to a role, recompute theirs."""
    if user_ids and group_id in rules_of(session, directory=directory).mapped_groups:
        reevaluate_users(session, directory=directory, user_ids=user_ids, attributes=False)


def members_to_regroup(session: Session, *, directory: Directory, group_id: str) -> list[str]:
    """Before a group is deleted: the members whose roles its deletion changes (none if it is not mapped). A big
    group's members are left to the background evaluation this queues, so the deletion stays quick."""
    if group_id not in rules_of(session, directory=directory).mapped_groups:
        return []
    members = list(session.scalars(_MEMBERS.limit(INLINE_LIMIT + 1), {"group_id": group_id}))
    if len(members) > INLINE_LIMIT:
        queue_evaluation(session, directory_id=directory.id, group_id=None)
        return []
    return members


def reevaluate_users(
    session: Session,
    *,
    directory: Directory,
    user_ids: list[str],
    attributes: bool,
    rules: DirectoryRules | None = None,
) -> int:
    """Recompute these users' role(s) (and their custom attributes too with ``attributes``) in a few set-based
    statements; save and announce only those that changed. Returns how many changed."""
    if not user_ids:
        return 0
    rules = rules_of(session, directory=directory)
    rows = [dict(r) for r in session.execute(_USERS, {"directory_id": directory.id, "ids": user_ids}).mappings()]
    active = [r["id"] for r in rows if r["state"] != UserState.INACTIVE]
    ranked = roles_of(session, rules=rules, user_ids=active)
    now = utcnow()
    org = directory.organization_id
    saves: list[dict[str, Any]] = []
    events: list[tuple[EventName, EventData]] = []
    for row in rows:
        roles = ranked.get(row["id"], [])
        custom = evaluate_attributes(row["raw_attributes"], rules.paths) if attributes else row["custom_attributes"]
        if roles == list(row["roles"] or []) and custom == row["custom_attributes"]:
            continue
        after = {**row, "roles": roles, "role": roles[0] if roles else None, "custom_attributes": custom}
        after.update(version=row["version"] + 1, updated_at=now)
        saves.append(_save_parameters(after))
        data = user_payload(DirectoryUser.model_construct(**after), organization_id=org)
        data["previous_attributes"] = _previous(row, data)
        events.append((EventName.USER_UPDATED, data))
    if saves:
        session.execute(_SAVE, saves)
        record_events(session, organization_id=org, directory_id=directory.id, events=events)
    return len(saves)


_EVALUATIONS: Table = RuleEvaluation.__table__  # type: ignore[attr-defined]
_directories: Table = Directory.__table__  # type: ignore[attr-defined]
_NEXT = select(_EVALUATIONS).order_by(_EVALUATIONS.c.id).limit(1)
_DIRECTORY = select(_directories).where(_directories.c.id == bindparam("id"))
_GROUP_CHUNK = (
    select(_memberships.c.user_id)
    .where(_memberships.c.group_id == bindparam("group_id"), _memberships.c.user_id > bindparam("after"))
    .order_by(_memberships.c.user_id)
    .limit(bindparam("size"))
)
_DIRECTORY_CHUNK = (
    select(_users.c.id)
    .where(_users.c.directory_id == bindparam("directory_id"), _users.c.id > bindparam("after"))
    .order_by(_users.c.id)
    .limit(bindparam("size"))
)


def has_pending(session: Session) -> bool:
    """Whether any re-evaluation waits."""
    return session.execute(_NEXT).first() is not None


def evaluate_next_chunk(session: Session, *, size: int) -> int | None:
    """Re-evaluate the next ``size`` users of the oldest pending evaluation, in this transaction, and record its
    progress (or its end). Returns how many users changed; None when nothing is pending."""
    postgres = session.get_bind().dialect.name == "postgresql"
    # Of several instances, each takes a different evaluation.
    pending = session.execute(_NEXT.with_for_update(skip_locked=True) if postgres else _NEXT).mappings().first()
    if pending is None:
        return None
    # Locked like a SCIM write of the directory (``scim.backend.auth``): the two never interleave on one user.
    lookup = _DIRECTORY.with_for_update(key_share=True) if postgres else _DIRECTORY
    found = session.execute(lookup, {"id": pending["directory_id"]}).mappings().first()
    if found is None:
        return 0  # the directory is gone, and its evaluations with it
    directory = Directory.model_construct(**found)
    group_id = pending["group_id"]
    if group_id is not None:
        parameters = {"group_id": group_id, "after": pending["after_user_id"], "size": size}
        ids = list(session.scalars(_GROUP_CHUNK, parameters))
    else:
        parameters = {"directory_id": directory.id, "after": pending["after_user_id"], "size": size}
        ids = list(session.scalars(_DIRECTORY_CHUNK, parameters))
    changed = reevaluate_users(session, directory=directory, user_ids=ids, attributes=group_id is None)
    row = _EVALUATIONS.c.id == pending["id"]
    if len(ids) < size:
        session.execute(_EVALUATIONS.delete().where(row))
    else:
        session.execute(_EVALUATIONS.update().where(row).values(after_user_id=ids[-1]))
    return changed


def _previous(row: Mapping[str, Any], after: UserData) -> dict[str, Any]:
    """``previous_attributes`` of a rules-only change, as ``previous_attributes`` would diff the whole payload: only
    role, roles and custom attributes can differ (and ``updated_at``, which it leaves out)."""
    before: dict[str, Any] = {
        "role": {"slug": row["role"]} if row["role"] else None,
        "roles": [{"slug": slug} for slug in row["roles"] or ()],
        "custom_attributes": row["custom_attributes"],
    }
    return previous_attributes(cast(UserData, before), cast(UserData, {k: after[k] for k in before}))  # type: ignore[literal-required]


def _save_parameters(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "b_id": row["id"],
        "b_role": row["role"],
        "b_roles": row["roles"],
        "b_custom": row["custom_attributes"],
        "b_version": row["version"],
        "b_now": row["updated_at"],
    }
