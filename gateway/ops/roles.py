"""Roles (per organization) and role mappings (a directory group's members get a role, with a priority): shared by
the CLI, GraphQL and the dashboard. Every change that can move a user's role re-evaluates the users it concerns in
the background (``gateway.ops.rule_evaluator``): a mapping, only its group's members; the default role, every user.

``scope`` is the caller's organization (an organization API key; anything else looks missing), None an admin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.ops.directory_rules import directories_of, directory_in_scope, rules_changed
from gateway.ops.inputs import InvalidInput, NotFound, clean_name, get_or_not_found
from gateway.store.ids import new_id
from gateway.store.models import DirectoryGroup, Organization, Role, RoleMapping, utcnow

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_PRIORITY = 1_000_000


@dataclass(frozen=True)
class RoleMappingView:
    """One mapped group of a directory with its role."""

    mapping: RoleMapping
    group_name: str
    role_slug: str


def clean_slug(slug: str) -> str:
    cleaned = slug.strip()
    if not _SLUG.match(cleaned):
        raise InvalidInput("role slug must be lower case letters, digits, '-' and '_' (1 to 64, not starting with -/_)")
    return cleaned


def _organization(session: Session, organization_id: str, scope: str | None) -> Organization:
    if scope is not None and organization_id != scope:
        raise NotFound(f"organization {organization_id} not found")
    return get_or_not_found(session, Organization, organization_id, "organization")


def _role(session: Session, role_id: str, scope: str | None) -> Role:
    role = session.get(Role, role_id)
    if role is None or (scope is not None and role.organization_id != scope):
        raise NotFound(f"role {role_id} not found")
    return role


def list_roles(session: Session, *, organization_id: str, scope: str | None) -> list[Role]:
    """The organization's roles in slug order."""
    _organization(session, organization_id, scope)
    statement = select(Role).where(col(Role.organization_id) == organization_id).order_by(col(Role.slug))
    return list(session.scalars(statement))


def _make_default(session: Session, role: Role) -> None:
    """``role`` becomes the organization's only default; users in no mapped group get it (in the background)."""
    session.execute(
        update(Role)
        .where(col(Role.organization_id) == role.organization_id, col(Role.id) != role.id, col(Role.is_default))
        .values(is_default=False, updated_at=utcnow())
    )
    role.is_default = True
    rules_changed(session, directory_ids=directories_of(session, organization_id=role.organization_id))


def create_role(
    session: Session, *, organization_id: str, slug: str, name: str, default: bool = False, scope: str | None
) -> Role:
    """A new role; ``default``: the role of users in no mapped group (replacing the previous default)."""
    _organization(session, organization_id, scope)
    cleaned = clean_slug(slug)
    taken = session.scalar(
        select(col(Role.id)).where(col(Role.organization_id) == organization_id, col(Role.slug) == cleaned)
    )
    if taken is not None:
        raise InvalidInput(f"role {cleaned!r} already exists in this organization")
    role = Role(id=new_id("role"), organization_id=organization_id, slug=cleaned, name=clean_name(name, "role"))
    session.add(role)
    session.flush()
    if default:
        _make_default(session, role)
    session.flush()
    return role


def update_role(
    session: Session, *, role_id: str, name: str | None = None, default: bool | None = None, scope: str | None
) -> Role:
    """Rename a role, or make it (or stop it being) the default. The slug never changes: applications hold it."""
    role = _role(session, role_id, scope)
    if name is not None:
        role.name = clean_name(name, "role")
    if default is True and not role.is_default:
        _make_default(session, role)
    elif default is False and role.is_default:
        role.is_default = False
        rules_changed(session, directory_ids=directories_of(session, organization_id=role.organization_id))
    role.updated_at = utcnow()
    session.flush()
    return role


def delete_role(session: Session, *, role_id: str, scope: str | None) -> None:
    """Delete a role with its mappings; its holders are re-evaluated (the mapped groups' members, or everyone when
    it was the default)."""
    role = _role(session, role_id, scope)
    mapped = session.execute(
        select(col(RoleMapping.directory_id), col(RoleMapping.group_id)).where(col(RoleMapping.role_id) == role.id)
    ).all()
    was_default = role.is_default
    session.delete(role)  # its mappings cascade
    session.flush()
    if was_default:
        rules_changed(session, directory_ids=directories_of(session, organization_id=role.organization_id))
        return
    by_directory: dict[str, list[str]] = {}
    for directory_id, group_id in mapped:
        by_directory.setdefault(directory_id, []).append(group_id)
    for directory_id, group_ids in by_directory.items():
        rules_changed(session, directory_ids=[directory_id], group_ids=group_ids)


def list_role_mappings(session: Session, *, directory_id: str, scope: str | None) -> list[RoleMappingView]:
    """The directory's mapped groups, highest priority first."""
    directory_in_scope(session, directory_id=directory_id, scope=scope)
    rows = session.execute(
        select(RoleMapping, col(DirectoryGroup.name), col(Role.slug))
        .join(DirectoryGroup, col(DirectoryGroup.id) == col(RoleMapping.group_id))
        .join(Role, col(Role.id) == col(RoleMapping.role_id))
        .where(col(RoleMapping.directory_id) == directory_id)
        .order_by(col(RoleMapping.priority).desc(), col(Role.slug), col(DirectoryGroup.name))
    )
    return [RoleMappingView(mapping=m, group_name=g, role_slug=s) for m, g, s in rows]


def map_group(
    session: Session, *, directory_id: str, group_id: str, role: str, priority: int = 0, scope: str | None
) -> RoleMappingView:
    """The group's members get ``role`` (a slug of the directory's organization); a user in several mapped groups
    has the role of the highest ``priority`` (ties: the lower slug). Re-mapping a group replaces its mapping."""
    directory = directory_in_scope(session, directory_id=directory_id, scope=scope)
    group = session.get(DirectoryGroup, group_id)
    if group is None or group.directory_id != directory.id:
        raise NotFound(f"group {group_id} not found in directory {directory.id}")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    target = session.scalar(
        select(Role).where(col(Role.organization_id) == directory.organization_id, col(Role.slug) == role.strip())
    )
    if target is None:
        raise NotFound(f"role {role.strip()} not found")
    mapping = session.scalar(select(RoleMapping).where(col(RoleMapping.group_id) == group.id))
    if mapping is None:
        mapping = RoleMapping(
            id=new_id("role_mapping"),
            directory_id=directory.id,
            group_id=group.id,
            role_id=target.id,
            priority=priority,
        )
        session.add(mapping)
    elif (mapping.role_id, mapping.priority) != (target.id, priority):
        mapping.role_id, mapping.priority, mapping.updated_at = target.id, priority, utcnow()
    else:
        return RoleMappingView(mapping=mapping, group_name=group.name, role_slug=target.slug)
    session.flush()
    rules_changed(session, directory_ids=[directory.id], group_ids=[group.id])
    return RoleMappingView(mapping=mapping, group_name=group.name, role_slug=target.slug)


def unmap_group(session: Session, *, directory_id: str, group_id: str, scope: str | None) -> None:
    """The group's members no longer get a role from it."""
    directory = directory_in_scope(session, directory_id=directory_id, scope=scope)
    mapping = session.scalar(
        select(RoleMapping).where(col(RoleMapping.group_id) == group_id, col(RoleMapping.directory_id) == directory.id)
    )
    if mapping is None:
        raise NotFound(f"group {group_id} has no role mapping")
    session.delete(mapping)
    session.flush()
    rules_changed(session, directory_ids=[directory.id], group_ids=[group_id])
