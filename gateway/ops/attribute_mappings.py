"""Custom attribute definitions (per organization) and mappings (per directory): shared by the CLI, GraphQL and the
dashboard. A change re-evaluates the directory's users in the background (``gateway.ops.rule_evaluator``).

``scope`` is the caller's organization (an organization API key; anything else looks missing), None an admin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.ops.attribute_paths import parse_path
from gateway.ops.custom_attributes import STANDARD, default_paths
from gateway.ops.directory_rules import directories_of, directory_in_scope, rules_changed
from gateway.ops.inputs import InvalidInput, NotFound, get_or_not_found
from gateway.store.ids import new_id
from gateway.store.models import AttributeDefinition, AttributeMapping, Directory, Organization, utcnow

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class AttributeDefinitionView:
    """One attribute an organization's users may carry: standard (WorkOS's set) or its own."""

    name: str
    standard: bool
    id: str | None = None


@dataclass(frozen=True)
class AttributeMappingView:
    """Where one directory reads one attribute: ``source`` ``default`` (its provider's), ``custom`` (the admin's),
    or ``none`` (not read; ``path`` None)."""

    directory_id: str
    name: str
    path: str | None
    source: str


def clean_attribute_name(name: str) -> str:
    cleaned = name.strip()
    if not _NAME.match(cleaned):
        raise InvalidInput("attribute name must be lower case letters, digits and '_', starting with a letter (<= 64)")
    return cleaned


def _organization(session: Session, organization_id: str, scope: str | None) -> Organization:
    if scope is not None and organization_id != scope:
        raise NotFound(f"organization {organization_id} not found")
    return get_or_not_found(session, Organization, organization_id, "organization")


def list_attribute_definitions(
    session: Session, *, organization_id: str, scope: str | None
) -> list[AttributeDefinitionView]:
    """The standard attributes, then the organization's own in name order."""
    _organization(session, organization_id, scope)
    own = session.scalars(
        select(AttributeDefinition)
        .where(col(AttributeDefinition.organization_id) == organization_id)
        .order_by(col(AttributeDefinition.name))
    )
    return [AttributeDefinitionView(name=n, standard=True) for n in STANDARD] + [
        AttributeDefinitionView(name=d.name, standard=False, id=d.id) for d in own
    ]


def define_attribute(
    session: Session, *, organization_id: str, name: str, scope: str | None
) -> AttributeDefinitionView:
    """Define one of the organization's own attributes (read once a directory maps it)."""
    _organization(session, organization_id, scope)
    cleaned = clean_attribute_name(name)
    exists = session.scalar(
        select(col(AttributeDefinition.id)).where(
            col(AttributeDefinition.organization_id) == organization_id, col(AttributeDefinition.name) == cleaned
        )
    )
    if cleaned in STANDARD or exists is not None:
        raise InvalidInput(f"attribute {cleaned!r} is already defined")
    definition = AttributeDefinition(id=new_id("attribute"), organization_id=organization_id, name=cleaned)
    session.add(definition)
    session.flush()
    return AttributeDefinitionView(name=cleaned, standard=False, id=definition.id)


def delete_attribute_definition(session: Session, *, organization_id: str, name: str, scope: str | None) -> None:
    """Forget one of the organization's own attributes: its mappings go, and users lose its value."""
    _organization(session, organization_id, scope)
    cleaned = name.strip()
    if cleaned in STANDARD:
        raise InvalidInput(f"{cleaned!r} is a standard attribute; unmap it per directory instead")
    found = session.scalar(
        select(AttributeDefinition).where(
            col(AttributeDefinition.organization_id) == organization_id, col(AttributeDefinition.name) == cleaned
        )
    )
    if found is None:
        raise NotFound(f"attribute {cleaned} not found")
    directory_ids = directories_of(session, organization_id=organization_id)
    session.delete(found)
    if directory_ids:
        session.execute(
            delete(AttributeMapping).where(
                col(AttributeMapping.directory_id).in_(directory_ids), col(AttributeMapping.name) == cleaned
            )
        )
    rules_changed(session, directory_ids=directory_ids)


def _defined(session: Session, directory: Directory) -> list[str]:
    own = session.scalars(
        select(col(AttributeDefinition.name)).where(
            col(AttributeDefinition.organization_id) == directory.organization_id
        )
    )
    return [*STANDARD, *sorted(own)]


def list_attribute_mappings(session: Session, *, directory_id: str, scope: str | None) -> list[AttributeMappingView]:
    """Every defined attribute and where this directory reads it."""
    directory = directory_in_scope(session, directory_id=directory_id, scope=scope)
    defaults = default_paths(directory.type)
    overrides = {
        m.name: m.path
        for m in session.scalars(select(AttributeMapping).where(col(AttributeMapping.directory_id) == directory.id))
    }
    views = []
    for name in _defined(session, directory):
        if name in overrides:
            path = overrides[name]
            views.append(AttributeMappingView(directory.id, name, path, "custom" if path is not None else "none"))
        elif name in defaults:
            views.append(AttributeMappingView(directory.id, name, defaults[name], "default"))
        else:
            views.append(AttributeMappingView(directory.id, name, None, "none"))
    return views


def map_attribute(
    session: Session, *, directory_id: str, name: str, path: str | None, scope: str | None
) -> AttributeMappingView:
    """Read ``name`` from ``path`` in this directory (None: do not read it, even where the provider has a default)."""
    directory = directory_in_scope(session, directory_id=directory_id, scope=scope)
    cleaned = name.strip()
    if cleaned not in _defined(session, directory):
        raise InvalidInput(f"attribute {cleaned!r} is not defined in this organization")
    text = None if path is None else parse_path(path).text
    found = session.scalar(
        select(AttributeMapping).where(
            col(AttributeMapping.directory_id) == directory.id, col(AttributeMapping.name) == cleaned
        )
    )
    if found is None:
        found = AttributeMapping(id=new_id("attribute_mapping"), directory_id=directory.id, name=cleaned, path=text)
        session.add(found)
    else:
        found.path = text
        found.updated_at = utcnow()
    rules_changed(session, directory_ids=[directory.id])
    return AttributeMappingView(directory.id, cleaned, text, "custom" if text is not None else "none")


def reset_attribute_mapping(
    session: Session, *, directory_id: str, name: str, scope: str | None
) -> AttributeMappingView:
    """Drop the admin's mapping of ``name``: the provider's default (if any) applies again."""
    directory = directory_in_scope(session, directory_id=directory_id, scope=scope)
    cleaned = name.strip()
    result = session.execute(
        delete(AttributeMapping).where(
            col(AttributeMapping.directory_id) == directory.id, col(AttributeMapping.name) == cleaned
        )
    )
    if result.rowcount:  # type: ignore[attr-defined]
        rules_changed(session, directory_ids=[directory.id])
    default = default_paths(directory.type).get(cleaned)
    return AttributeMappingView(directory.id, cleaned, default, "default" if default is not None else "none")
