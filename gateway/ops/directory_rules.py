"""A directory's rules as the write path applies them: the custom attribute paths it reads, the organization's
default role and which of its groups map to roles; cached per process and keyed by ``Directory.rules_version``.

Every SCIM job reads its directory row afresh, so the cache costs nothing while the rules stay put; a rule change
bumps the version in its own transaction (``rules_changed``), and the next job of any process sees it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.ops.attribute_paths import AttributePath, parse_path
from gateway.ops.custom_attributes import default_paths
from gateway.ops.inputs import NotFound
from gateway.store.models import (
    AttributeMapping,
    Directory,
    Role,
    RoleMapping,
    RuleEvaluation,
    utcnow,
)


@dataclass(frozen=True)
class DirectoryRules:
    """What the write path needs to compute a user's role(s) and custom attributes in one directory."""

    version: int
    paths: dict[str, AttributePath]
    default_role: str | None
    mapped_groups: frozenset[str]


_cache: dict[str, DirectoryRules] = {}
_lock = threading.Lock()
# Bumped (in this process) by every rule change: the background evaluator's cue that work may be waiting.
_changes = 0


def changes_seen() -> int:
    """How many rule changes this process has made (committed or not): a change means work may be queued."""
    return _changes


def rules_of(session: Session, *, directory: Directory) -> DirectoryRules:
    """The directory's rules, from the cache when its version still holds."""
    cached = _cache.get(directory.id)
    if cached is not None and cached.version == directory.rules_version:
        return cached
    rules = _load(session, directory=directory)
    with _lock:
        _cache[directory.id] = rules
    return rules


def _load(session: Session, *, directory: Directory) -> DirectoryRules:
    paths = {name: parse_path(path) for name, path in default_paths(directory.type).items()}
    overrides = session.execute(
        select(col(AttributeMapping.name), col(AttributeMapping.path)).where(
            col(AttributeMapping.directory_id) == directory.id
        )
    )
    for name, path in overrides:
        if path is None:
            paths.pop(name, None)
        else:
            paths[name] = parse_path(path)
    default_role = session.scalar(
        select(col(Role.slug)).where(col(Role.organization_id) == directory.organization_id, col(Role.is_default))
    )
    mapped = session.scalars(select(col(RoleMapping.group_id)).where(col(RoleMapping.directory_id) == directory.id))
    return DirectoryRules(
        version=directory.rules_version, paths=paths, default_role=default_role, mapped_groups=frozenset(mapped)
    )


_BUMP = (
    update(Directory)
    .where(col(Directory.id).in_(bindparam("ids", expanding=True)))
    .values(rules_version=col(Directory.rules_version) + 1)
)


def directories_of(session: Session, *, organization_id: str) -> list[str]:
    """The ids of an organization's directories (whose rules an organization-wide change touches)."""
    return list(session.scalars(select(col(Directory.id)).where(col(Directory.organization_id) == organization_id)))


def rules_changed(session: Session, *, directory_ids: Iterable[str], group_ids: Iterable[str] | None = None) -> None:
    """Record, in the change's own transaction, that these directories' rules changed: their cached rules are stale
    and their users are re-evaluated in the background: only the members of ``group_ids`` (a role mapping of those
    groups changed), else every user of each directory."""
    ids = list(dict.fromkeys(directory_ids))
    if not ids:
        return
    session.execute(_BUMP, {"ids": ids})
    if group_ids is None:
        for directory_id in ids:
            queue_evaluation(session, directory_id=directory_id, group_id=None)
    else:
        [directory_id] = ids  # group scoped: groups belong to one directory
        for group_id in dict.fromkeys(group_ids):
            queue_evaluation(session, directory_id=directory_id, group_id=group_id)


def queue_evaluation(session: Session, *, directory_id: str, group_id: str | None) -> None:
    """Ask the background evaluator to re-evaluate a group's members (None: every user of the directory) without
    changing the rules (e.g. a big mapped group was deleted)."""
    global _changes
    # The same evaluation not started yet does it all (several changes in one transaction, or in a quick row).
    waiting = session.scalar(
        select(col(RuleEvaluation.id))
        .where(
            col(RuleEvaluation.directory_id) == directory_id,
            col(RuleEvaluation.group_id).is_(None) if group_id is None else col(RuleEvaluation.group_id) == group_id,
            col(RuleEvaluation.after_user_id) == "",
        )
        # One being evaluated right now (locked by an evaluator on PostgreSQL) may have read the old rules.
        .with_for_update(skip_locked=True)
    )
    if waiting is None:
        session.add(RuleEvaluation(directory_id=directory_id, group_id=group_id, created_at=utcnow()))
        session.flush()
    with _lock:
        _changes += 1


def directory_in_scope(session: Session, *, directory_id: str, scope: str | None) -> Directory:
    """The directory, if the caller (``scope``: its organization, None: an admin) may see it; else ``NotFound``."""
    directory = session.get(Directory, directory_id)
    if directory is None or (scope is not None and directory.organization_id != scope):
        raise NotFound(f"directory {directory_id} not found")
    return directory
