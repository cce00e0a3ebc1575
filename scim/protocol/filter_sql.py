"""SCIM filters compiled to SQL: :func:`translate_filter` turns a parsed :data:`~scim.protocol.filters.Filter` into a
SQLAlchemy WHERE condition.

Filters always run in the database, so listing a directory never loads rows just to discard them; values reach it
as bound parameters only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    FromClause,
    String,
    and_,
    case,
    cast,
    column,
    func,
    inspect,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

from gateway.store.models import DirectoryGroup, DirectoryUser, DirectoryUserEmail, GroupMembership, UserState
from scim.protocol.filters import (
    TEXT_TYPES,
    And,
    AttrPath,
    Compare,
    Filter,
    Not,
    Or,
    Present,
    ValuePath,
    as_bool,
    check_operator,
    filter_error,
    parse_datetime,
)
from scim.protocol.schemas import Attribute, ResolvedPath, Resource, resolve_path


@dataclass(frozen=True)
class _Value:
    """A scalar the database can compare: a column, the text of a JSON member, or a constant."""

    expr: ColumnElement[Any]
    nullable: bool = True


@dataclass(frozen=True)
class _Truth:
    """A boolean attribute as two conditions; both are false when the attribute is absent."""

    is_true: ColumnElement[bool]
    is_false: ColumnElement[bool]


_Operand = _Value | _Truth


class _Scope(Protocol):
    """The sub-attributes of one element of a multi-valued attribute, and EXISTS over those elements."""

    def operand(self, name: str) -> tuple[Attribute, _Operand]: ...

    def exists(self, condition: ColumnElement[bool]) -> ColumnElement[bool]: ...


def _table(model: type[Any]) -> FromClause:
    table: FromClause = inspect(model).local_table
    return table


_USERS, _GROUPS, _MEMBERSHIPS = _table(DirectoryUser), _table(DirectoryGroup), _table(GroupMembership)
_EMAILS = _table(DirectoryUserEmail)
_Columns = dict[tuple[str, str | None], _Operand]


def _resource_columns(resource: Resource) -> _Columns:
    """Attributes with a column of their own: comparisons on them can use its indexes."""
    table = _USERS if resource == "User" else _GROUPS
    c = table.c
    columns: _Columns = {
        ("id", None): _Value(c.id, nullable=False),
        ("meta", "created"): _Value(c.created_at, nullable=False),
        ("meta", "lastModified"): _Value(c.updated_at, nullable=False),
        ("meta", "resourceType"): _Value(literal(resource, String), nullable=False),
    }
    if resource == "Group":
        return columns | {("externalId", None): _Value(c.external_id), ("displayName", None): _Value(c.name, False)}
    return columns | {
        ("externalId", None): _Value(c.idp_id),
        ("userName", None): _Value(c.user_name, nullable=False),
        ("displayName", None): _Value(c.display_name),
        ("name", "givenName"): _Value(c.first_name),
        ("name", "familyName"): _Value(c.last_name),
        ("title", None): _Value(c.job_title),
        ("active", None): _Truth(c.state == UserState.ACTIVE.value, c.state != UserState.ACTIVE.value),
    }


class _Json:
    """JSON access in each dialect: SQLite's JSON1 functions, PostgreSQL's jsonb ones."""

    def __init__(self, dialect: str) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"SCIM filters do not support the {dialect!r} dialect")
        self.sqlite = dialect == "sqlite"

    @staticmethod
    def _path(keys: tuple[str, ...]) -> str:
        return "$" + "".join(f'."{key}"' for key in keys)  # quoted: URNs contain ':' and '.'

    def text(self, doc: ColumnElement[Any], keys: tuple[str, ...]) -> ColumnElement[Any]:
        if self.sqlite:
            return func.json_extract(doc, self._path(keys), type_=String)
        return func.jsonb_extract_path_text(doc, *keys, type_=String)

    def truth(self, doc: ColumnElement[Any], keys: tuple[str, ...]) -> _Truth:
        """Lower-cased so that the strings "True"/"False" some IdPs store count as booleans too."""
        text: ColumnElement[Any]
        if self.sqlite:  # json_extract turns true into 1; json_type tells true from 1
            kind = func.json_type(doc, self._path(keys))
            text = case((kind.in_(("true", "false")), kind), else_=func.lower(self.text(doc, keys)))
        else:
            text = func.lower(self.text(doc, keys))
        text = func.coalesce(text, "")
        return _Truth(text == "true", text == "false")

    def elements(self, doc: ColumnElement[Any], keys: tuple[str, ...]) -> tuple[FromClause, ColumnElement[Any]]:
        """A FROM item over the elements of the JSON array at ``keys``, and each element as a JSON object.

        Elements that are not objects read as NULL, so malformed IdP data cannot make the query fail.
        """
        if self.sqlite:
            each = func.json_each(doc, self._path(keys)).table_valued("value", "type", joins_implicitly=True)
            return each, case((each.c.type == "object", each.c.value))
        array = func.jsonb_extract_path(doc, *keys, type_=JSONB)
        # jsonb_array_elements raises on anything but an array.
        safe = case((func.jsonb_typeof(array) == "array", array), else_=cast(literal("[]"), JSONB))
        each = func.jsonb_array_elements(safe).table_valued(column("value", JSONB), joins_implicitly=True)
        return each, each.c.value


@dataclass
class _Elements:
    """Elements of a multi-valued attribute stored as a JSON array in ``raw_attributes``."""

    compiler: _Compiler
    attribute: Attribute
    source: FromClause
    doc: ColumnElement[Any]

    def operand(self, name: str) -> tuple[Attribute, _Operand]:
        sub = self.attribute.sub_attribute(name)
        if sub is None:
            raise filter_error(f"unknown attribute '{self.attribute.name}.{name}'")
        return sub, self.compiler.json_operand(self.doc, (sub.name,), sub)

    def exists(self, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return select(literal(1)).select_from(self.source).where(condition).exists()


class _Memberships:
    """Group ``members`` and User ``groups``: rows of ``group_memberships``, not JSON."""

    def __init__(self, resource: Resource, attribute: Attribute) -> None:
        self.attribute = attribute
        self.rows = _MEMBERSHIPS.alias()
        if resource == "Group":
            self.owner = self.rows.c.group_id == _GROUPS.c.id
            self.other = _USERS.alias()
            self.on = self.other.c.id == self.rows.c.user_id
            value, display, kind = self.rows.c.user_id, self.other.c.display_name, "User"
        else:
            self.owner = self.rows.c.user_id == _USERS.c.id
            self.other = _GROUPS.alias()
            self.on = self.other.c.id == self.rows.c.group_id
            value, display, kind = self.rows.c.group_id, self.other.c.name, "direct"
        self.columns = {
            "value": _Value(value, nullable=False),
            "display": _Value(display),
            "type": _Value(literal(kind, String), nullable=False),
        }
        self.joined = False  # join the other side only when a filter reads its display name

    def operand(self, name: str) -> tuple[Attribute, _Operand]:
        sub = self.attribute.sub_attribute(name)
        if sub is None or sub.name not in self.columns:
            raise filter_error(f"'{self.attribute.name}.{name}' cannot be filtered on")
        self.joined = self.joined or sub.name == "display"
        # value holds a resource id, and ids are caseExact (RFC 7643 §3.1) although §8.7.1 marks value caseExact
        # false: comparing exactly keeps the (group_id, user_id) primary key usable.
        return (replace(sub, case_exact=True) if sub.name == "value" else sub), self.columns[sub.name]

    def exists(self, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        source = self.rows.join(self.other, self.on) if self.joined else self.rows
        return select(literal(1)).select_from(source).where(self.owner, condition).exists()


def _rebase(node: Filter, base: AttrPath) -> Filter:
    """``name[givenName eq "x"]`` on a singular complex attribute is ``name.givenName eq "x"``."""
    if isinstance(node, And | Or):
        return type(node)(tuple(_rebase(n, base) for n in node.operands))
    if isinstance(node, Not):
        return Not(_rebase(node.operand, base))
    if isinstance(node, ValuePath):
        raise filter_error("value filters cannot be nested")
    return replace(node, path=AttrPath(base.uri, base.name, node.path.name))


def _wrap(op: str, body: str, wildcard: str) -> str:
    return {"co": f"{wildcard}{body}{wildcard}", "sw": f"{body}{wildcard}", "ew": f"{wildcard}{body}"}[op]


_SQL_TESTS: dict[str, Callable[[ColumnElement[Any], Any], ColumnElement[bool]]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _is_value(path: AttrPath) -> bool:
    return path.uri is None and path.sub is None and path.name.lower() == "value"


class _Compiler:
    def __init__(self, resource: Resource, dialect: str, directory_id: ColumnElement[str]) -> None:
        self.resource = resource
        self.directory_id = directory_id
        self.json = _Json(dialect)
        self.raw = (_USERS if resource == "User" else _GROUPS).c.raw_attributes
        self.columns = _resource_columns(resource)

    def condition(self, node: Filter, scope: _Scope | None = None) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*(self.condition(n, scope) for n in node.operands))
        if isinstance(node, Or):
            return or_(*(self.condition(n, scope) for n in node.operands))
        if isinstance(node, Not):
            return not_(self.condition(node.operand, scope))
        if isinstance(node, ValuePath):
            if scope is not None:
                raise filter_error("value filters cannot be nested")
            return self.value_path(node)
        if scope is None:
            return self.leaf(node)
        if node.path.uri or node.path.sub:
            raise filter_error(f"only sub-attribute names are allowed inside '[...]', not '{node.path}'")
        return self.test(node, *scope.operand(node.path.name))

    def resolve(self, path: AttrPath) -> ResolvedPath:
        resolved = resolve_path(self.resource, str(path))
        if resolved is None:
            raise filter_error(f"unknown attribute '{path}' for {self.resource} resources")
        if resolved.is_extension_root or resolved.target.returned == "never":
            raise filter_error(f"'{path}' cannot be filtered on")
        return resolved

    def keys(self, resolved: ResolvedPath) -> tuple[str, ...]:
        """Where the attribute sits in ``raw_attributes``: extensions nest under their URN (RFC 7643 §3.3)."""
        keys = () if resolved.is_core else (resolved.schema.id,)
        return keys + (resolved.attribute.name,) + ((resolved.sub.name,) if resolved.sub else ())

    def json_operand(self, doc: ColumnElement[Any], keys: tuple[str, ...], attribute: Attribute) -> _Operand:
        return self.json.truth(doc, keys) if attribute.type == "boolean" else _Value(self.json.text(doc, keys))

    def collection(self, resolved: ResolvedPath) -> _Scope:
        if resolved.is_core and resolved.attribute.name in ("members", "groups"):
            return _Memberships(self.resource, resolved.attribute)
        source, doc = self.json.elements(self.raw, self.keys(replace(resolved, sub=None)))
        return _Elements(self, resolved.attribute, source, doc)

    def leaf(self, node: Compare | Present) -> ColumnElement[bool]:
        resolved = self.resolve(node.path)
        attribute, sub = resolved.attribute, resolved.sub
        if resolved.is_core:
            mapped = self.columns.get((attribute.name, sub.name if sub else None))
            if mapped is not None:
                return self.test(node, resolved.target, mapped)
            if attribute.name == "meta":  # the rest of meta is computed on the way out, never stored
                if sub is None and isinstance(node, Present):
                    return true()
                raise filter_error(f"'{node.path}' cannot be filtered on")
        if attribute.multi_valued:
            scope = self.collection(resolved)
            if sub is None and isinstance(node, Compare):
                sub = attribute.sub_attribute("value")  # RFC 7644 §3.4.2.2: ``emails eq "x"`` tests emails.value
                if sub is None:
                    raise filter_error(f"'{node.path}' is complex: compare one of its sub-attributes instead")
            exists = scope.exists(true() if sub is None else self.test(node, *scope.operand(sub.name)))
            if isinstance(node, Compare) and node.op == "eq" and sub is not None and sub.name == "value":
                return self.narrowed(resolved, node.value, exists)
            return exists
        if attribute.type == "complex" and sub is None:
            if isinstance(node, Compare):
                check_operator(node, attribute)
            # A complex attribute is present when any of its sub-attributes is.
            path = node.path
            return or_(*(self.leaf(Present(AttrPath(path.uri, path.name, s.name))) for s in attribute.sub_attributes))
        return self.test(node, resolved.target, self.json_operand(self.raw, self.keys(resolved), resolved.target))

    def value_path(self, node: ValuePath) -> ColumnElement[bool]:
        resolved = self.resolve(node.path)
        if resolved.sub is None and resolved.attribute.multi_valued:
            scope = self.collection(resolved)
            exists = scope.exists(self.condition(node.filter, scope))
            operands = node.filter.operands if isinstance(node.filter, And) else [node.filter]
            for operand in operands:  # ``[value eq "…"]``, alone or with others under an ``and``
                if isinstance(operand, Compare) and operand.op == "eq" and _is_value(operand.path):
                    return self.narrowed(resolved, operand.value, exists)
            return exists
        if resolved.sub is None and resolved.attribute.type == "complex":
            return self.condition(_rebase(node.filter, node.path))
        raise filter_error(f"'{node.path}' is not a complex attribute, so it takes no '[...]' filter")

    def narrowed(self, resolved: ResolvedPath, value: Any, exists: ColumnElement[bool]) -> ColumnElement[bool]:
        """``exists`` (some email's value equals ``value``), first narrowed through the index of addresses: the
        users it names are a superset of those the comparison keeps, found without reading any JSON."""
        if not (self.resource == "User" and resolved.is_core and resolved.attribute.name == "emails"):
            return exists
        if not isinstance(value, str) or value == "":
            return exists
        addresses = select(_EMAILS.c.user_id).where(
            _EMAILS.c.directory_id == self.directory_id, _EMAILS.c.value == func.lower(literal(value, String))
        )
        return and_(_USERS.c.id.in_(addresses), exists)

    def test(self, node: Compare | Present, attribute: Attribute, operand: _Operand) -> ColumnElement[bool]:
        """The comparison, two-valued: an absent attribute equals nothing, so ``ne`` and ``not`` match it."""
        if isinstance(operand, _Truth):
            present = or_(operand.is_true, operand.is_false)
        else:
            present = operand.expr.is_not(None) if operand.nullable else true()
            if attribute.type in TEXT_TYPES:
                present = and_(present, operand.expr != "")
        if isinstance(node, Present):
            return present
        check_operator(node, attribute)
        if node.value is None:  # ``eq null`` asks for absence
            return not_(present) if node.op == "eq" else present
        if isinstance(operand, _Truth):
            hit = operand.is_true if as_bool(node.value) else operand.is_false
            return hit if node.op == "eq" else not_(hit)
        compared = self.compare(node, attribute, operand.expr)
        if not operand.nullable:
            return compared
        if node.op == "ne":
            return or_(operand.expr.is_(None), compared)
        return and_(operand.expr.is_not(None), compared)

    def compare(self, node: Compare, attribute: Attribute, expr: ColumnElement[Any]) -> ColumnElement[bool]:
        if attribute.type == "dateTime":
            return _SQL_TESTS[node.op](expr, parse_datetime(node.value, node.path))
        if attribute.type not in TEXT_TYPES:
            raise filter_error(f"'{node.path}' cannot be filtered on")
        text = node.value if isinstance(node.value, str) else json.dumps(node.value)
        # caseExact false (RFC 7643 §2.2): lower() on both sides, which is also what the userName index holds.
        lhs = expr if attribute.case_exact else func.lower(expr)
        if node.op in ("co", "sw", "ew"):
            return self.like(lhs, node.op, text, attribute.case_exact)
        rhs = literal(text, String)
        return _SQL_TESTS[node.op](lhs, rhs if attribute.case_exact else func.lower(rhs))

    def like(self, lhs: ColumnElement[Any], op: str, text: str, case_exact: bool) -> ColumnElement[bool]:
        if case_exact and self.json.sqlite:
            # SQLite's LIKE ignores ASCII case; GLOB is its case-sensitive twin, escaping by bracketing.
            body = re.sub(r"[*?\[]", r"[\g<0>]", text)
            return lhs.op("GLOB", is_comparison=True)(literal(_wrap(op, body, "*"), String))
        body = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
        pattern = literal(_wrap(op, body, "%"), String)
        return lhs.like(pattern if case_exact else func.lower(pattern), escape="/")


def translate_filter(
    filter: Filter, *, resource: Resource, dialect: str, directory_id: str | ColumnElement[str] | None = None
) -> ColumnElement[bool]:
    """Compile ``filter`` to a WHERE condition on ``directory_users`` or ``directory_groups``.

    ``dialect`` is the engine's dialect name ("sqlite" or "postgresql"): JSON arrays are walked with
    ``json_each`` or ``jsonb_array_elements``. Unknown attributes and meaningless comparisons are invalidFilter.
    ``directory_id``, the directory the rows are read from (a value or a bound parameter), lets index lookups
    that are not on the table itself (email addresses) start from that directory's entries.
    """
    directory: ColumnElement[str]
    if directory_id is None:
        directory = (_USERS if resource == "User" else _GROUPS).c.directory_id
    elif isinstance(directory_id, str):
        directory = literal(directory_id, String)
    else:
        directory = directory_id
    return _Compiler(resource, dialect, directory).condition(filter)
