"""The reads an IdP sends before most writes, by index and over a ``gateway.store.prepared.Reader``: a resource by
id, and a page of resources by ``attribute eq value`` on an attribute with an index of its own (``userName``,
``externalId``, ``id``).

Each reads the directory's row in the same statement as the resource(s) (a LEFT JOIN from the directory), so a
request is authenticated by what that statement returns, as fresh as the read itself, without a statement (or, on
PostgreSQL, a round trip) of its own; there it also reads each resource's ``groups`` / ``members`` (a JSON array)
when they are shown, so a GET is one round trip. Statements are prebuilt Core, so the same SQL runs on every store;
the filter's condition is the one ``scim.protocol.filter_sql`` compiles, with its value made a bound parameter.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, Table, and_, bindparam, func, select
from sqlalchemy.sql.visitors import replacement_traverse

from gateway.store.models import Directory
from gateway.store.prepared import Reader, Row
from scim.backend.resources import Outcome, R, ResourceKind, View, members_of_json, related_json
from scim.protocol.filter_sql import translate_filter
from scim.protocol.filters import AttrPath, Compare
from scim.protocol.render import Member, etag, mentions, project, related_attribute, render_resource
from scim.protocol.schemas import Resource

_DIRECTORIES: Table = Directory.__table__  # type: ignore[attr-defined]
_DIRECTORY_COLUMNS = tuple(column.name for column in _DIRECTORIES.c)
# Stands for the filter's value while its condition is compiled, then is replaced by a bound parameter.
_PLACEHOLDER = "\x00dsync-lookup-value\x00"


@dataclass(frozen=True, slots=True)
class Found:
    """What a lookup read: the directory's row (None: no such directory), the resources (maybe none), and how many
    match in all (more than ``rows`` when a page is full); and, when read with them, each one's ``groups`` /
    ``members`` by its id."""

    directory: dict[str, Any] | None
    rows: list[Any]
    total: int = 0
    related: dict[str, list[Member]] | None = None


def _split(kind: ResourceKind[R], rows: list[Row], *, with_related: bool = False) -> Found:
    if not rows:
        return Found(None, [])
    split = len(_DIRECTORY_COLUMNS)
    directory = dict(zip(_DIRECTORY_COLUMNS, rows[0][:split], strict=True))
    names = kind.columns
    end = split + len(names)
    matched = [row for row in rows if row[split + names.index("id")] is not None]  # a LEFT JOIN's NULLs: none
    resources = [kind.model.model_construct(**dict(zip(names, row[split:end], strict=True))) for row in matched]
    related = None
    if with_related:
        related = {r.id: members_of_json(row[end]) for r, row in zip(resources, matched, strict=True)}
    return Found(directory, resources, len(resources), related)


@functools.cache
def _by_id_with_related(kind: ResourceKind[Any]) -> Select[Any]:
    return kind.with_directory.add_columns(related_json(kind))


def find_by_id(
    reader: Reader, kind: ResourceKind[R], *, directory_id: str, resource_id: str, related: bool = False
) -> Found:
    """The resource by id; with its ``groups`` / ``members`` in the same statement if ``related`` (PostgreSQL)."""
    parameters = {"resource_id": resource_id, "directory_id": directory_id}
    statement = _by_id_with_related(kind) if related else kind.with_directory
    return _split(kind, reader.rows(statement, parameters), with_related=related)


@functools.cache
def _lookup_statements(
    kind: ResourceKind[Any], attribute: str, dialect: str, related: bool = False
) -> tuple[Select[Any], Select[Any]]:
    """``attribute eq :value``: the page (LIMIT :count, from the directory's row; with each one's ``groups`` /
    ``members`` if ``related``) and the count of all matches."""
    table: Table = kind.model.__table__
    template = translate_filter(
        Compare(AttrPath(None, attribute), "eq", _PLACEHOLDER),
        resource=kind.name,
        dialect=dialect,
        directory_id=bindparam("directory_id"),
    )

    def parameter(element: Any, **_kw: Any) -> Any:
        if isinstance(element, BindParameter) and element.value == _PLACEHOLDER:
            return bindparam("value", type_=element.type)
        return None

    options: dict[str, Any] = {}
    condition: ColumnElement[bool] = replacement_traverse(template, options, parameter)
    joined = _DIRECTORIES.outerjoin(table, and_(table.c.directory_id == _DIRECTORIES.c.id, condition))
    page = (
        select(*_DIRECTORIES.c, *table.c, *([related_json(kind)] if related else []))
        .select_from(joined)
        .where(_DIRECTORIES.c.id == bindparam("directory_id"))
        .order_by(table.c.id)
        .limit(bindparam("count"))
    )
    count = select(func.count()).select_from(table).where(table.c.directory_id == bindparam("directory_id"), condition)
    return page, count


def find_by(
    reader: Reader,
    kind: ResourceKind[R],
    node: Compare,
    *,
    dialect: str,
    directory_id: str,
    count: int,
    related: bool = False,
) -> Found:
    """The first ``count`` (at least 1) resources matching ``node`` (``scim.protocol.filters.as_lookup``), in id
    order, and how many match in all; with their ``groups`` / ``members`` if ``related`` (PostgreSQL)."""
    assert isinstance(node.value, str) and count > 0
    page, counting = _lookup_statements(kind, node.path.name.lower(), dialect, related)
    parameters = {"directory_id": directory_id, "value": node.value}
    found = _split(kind, reader.rows(page, {**parameters, "count": count}), with_related=related)
    if found.directory is not None and found.total == count:  # the page is full: there may be more
        total = int(reader.rows(counting, parameters)[0][0])
        return Found(found.directory, found.rows, total, found.related)
    return found


def reads_related(resource: Resource, view: View, *, dialect: str) -> bool:
    """Whether a lookup reads the shown ``groups`` / ``members`` in its own statement: on PostgreSQL, where a
    statement is a round trip (SQLite's second statement costs microseconds)."""
    return dialect == "postgresql" and wants_related(resource, view)


def wants_related(resource: Resource, view: View) -> bool:
    """Whether the view shows ``groups`` / ``members`` (computed from the memberships: read only when shown)."""
    name = related_attribute(resource)
    attributes, excluded = view.attributes, view.excluded
    return (not attributes or mentions(attributes, name)) and not mentions(excluded, name, whole=True)


def related_of(reader: Reader, kind: ResourceKind[R], resource_id: str) -> list[Member]:
    return [Member(id=i, display=d) for i, d in reader.rows(kind.related_one, {"resource_id": resource_id})]


def render(
    reader: Reader, kind: ResourceKind[R], row: R, *, view: View, found: dict[str, list[Member]] | None = None
) -> dict[str, Any]:
    """One resource as the view shows it, its ``groups`` / ``members`` read only when shown (``found``: already
    read with it)."""
    related = None
    if wants_related(kind.name, view):
        related = found[row.id] if found is not None else related_of(reader, kind, row.id)
    body = render_resource(row, resource=kind.name, base_url=view.base_url, related=related)
    return project(body, resource=kind.name, attributes=view.attributes, excluded=view.excluded)


def rendered_one(
    reader: Reader, kind: ResourceKind[R], row: R, *, view: View, found: dict[str, list[Member]] | None = None
) -> Outcome:
    return Outcome(render(reader, kind, row, view=view, found=found), 200, etag(row.version))
