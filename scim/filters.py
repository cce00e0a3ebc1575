"""SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): parse, evaluate on JSON, compile to SQL.

Filters always run in the database: :func:`translate_filter` builds SQLAlchemy expressions (bound parameters
only), so listing a directory never loads rows just to discard them.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

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

from gateway.models import DirectoryGroup, DirectoryUser, GroupMembership, UserState
from scim.errors import ScimError, ScimType
from scim.schemas import Attribute, ResolvedPath, Resource, find_attribute, resolve_path

MAX_LENGTH = 4096  # characters; real IdP filters are a few dozen
MAX_DEPTH = 32  # nested parentheses, brackets and not(...), bounding recursion

CompareOp = Literal["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]
_OPS: dict[str, CompareOp] = {
    "eq": "eq",
    "ne": "ne",
    "co": "co",
    "sw": "sw",
    "ew": "ew",
    "gt": "gt",
    "ge": "ge",
    "lt": "lt",
    "le": "le",
}
_LITERALS: dict[str, bool | None] = {"true": True, "false": False, "null": None}
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class AttrPath:
    """``[uri:]name[.sub]`` (RFC 7644 §3.4.2.2 ``attrPath``); names keep the client's spelling."""

    uri: str | None
    name: str
    sub: str | None = None

    def __str__(self) -> str:
        text = f"{self.uri}:{self.name}" if self.uri else self.name
        return f"{text}.{self.sub}" if self.sub else text


@dataclass(frozen=True)
class Compare:
    path: AttrPath
    op: CompareOp
    value: Scalar


@dataclass(frozen=True)
class Present:
    path: AttrPath


@dataclass(frozen=True)
class And:
    operands: tuple[Filter, ...]  # n-ary, so long chains do not nest deeply


@dataclass(frozen=True)
class Or:
    operands: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    operand: Filter


@dataclass(frozen=True)
class ValuePath:
    """``attr[filter]``: one element of ``attr`` must satisfy the whole inner filter (paths inside are relative)."""

    path: AttrPath
    filter: Filter


Filter = Compare | Present | And | Or | Not | ValuePath


@dataclass(frozen=True)
class PatchPath:
    """RFC 7644 §3.5.2 ``PATH``: ``attribute[.sub]`` or ``attribute[value_filter][.sub]``."""

    attribute: AttrPath  # never carries the sub-attribute: that is ``sub``
    value_filter: Filter | None = None
    sub: str | None = None

    @property
    def target(self) -> str:
        """The attribute the operation changes, spelled as :func:`scim.schemas.find_attribute` accepts it."""
        return f"{self.attribute}.{self.sub}" if self.sub else str(self.attribute)


# --- parsing ---------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<punct>[()\[\]])
      | (?P<string>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")
      | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?![\w.:$-])
      | (?P<word>[A-Za-z$.][\w.:$-]*)""",
    re.VERBOSE | re.ASCII,
)
_ATTRNAME = r"(?:\$ref|[A-Za-z][\w-]*)"
_ATTR_PATH = re.compile(rf"(?:(?P<uri>urn:[\w.:-]+):)?(?P<name>{_ATTRNAME})(?:\.(?P<sub>{_ATTRNAME}))?", re.I | re.A)
_SUB_SUFFIX = re.compile(rf"\.({_ATTRNAME})", re.A)


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")", "[", "]", "string", "number", "word" or "end"
    text: str
    pos: int
    value: Scalar = None


class _Parser:
    """Recursive descent over RFC 7644 §3.4.2.2's grammar; ``and`` binds tighter than ``or``."""

    def __init__(self, text: str, scim_type: ScimType, what: str) -> None:
        self.scim_type, self.what = scim_type, what
        if len(text) > MAX_LENGTH:
            raise self.error(f"{what} is longer than {MAX_LENGTH} characters")
        self.tokens = self._tokenize(text)
        self.index = 0
        self.depth = 0

    def error(self, message: str) -> ScimError:
        return ScimError(400, message, self.scim_type)

    def fail(self, message: str, token: _Token) -> ScimError:
        where = f"at end of {self.what}" if token.kind == "end" else f"at position {token.pos + 1}"
        return self.error(f"Invalid {self.what}: {message} {where}")

    def _tokenize(self, text: str) -> list[_Token]:
        tokens: list[_Token] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                what = "unterminated or malformed string" if text[pos] == '"' else f"unexpected character {text[pos]!r}"
                raise self.fail(what, _Token("?", text[pos], pos))
            kind, lexeme = match.lastgroup or "", match.group()
            if kind in ("string", "number"):
                value = json.loads(lexeme)
                if isinstance(value, str) and re.search("[\ud800-\udfff]", value):
                    raise self.fail("string contains an unpaired surrogate escape", _Token(kind, lexeme, pos))
                tokens.append(_Token(kind, lexeme, pos, value))
            elif kind != "space":
                tokens.append(_Token(lexeme if kind == "punct" else kind, lexeme, pos))
            pos = match.end()
        tokens.append(_Token("end", "", len(text)))
        return tokens

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text.lower() == word:
            self.take()
            return True
        return False

    def finish(self) -> None:
        token = self.peek()
        if token.kind != "end":
            hint = " (unbalanced parentheses or brackets)" if token.kind in (")", "]") else ""
            raise self.fail(f"unexpected {token.text!r}{hint}", token)

    def group(self, opener: _Token, closer: str, inner: bool) -> Filter:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} levels", opener)
        result = self.disjunction(inner)
        token = self.take()
        if token.kind != closer:
            raise self.fail(f"expected {closer!r} to close {opener.text!r} from position {opener.pos + 1}", token)
        self.depth -= 1
        return result

    def disjunction(self, inner: bool) -> Filter:
        operands = [self.conjunction(inner)]
        while self.keyword("or"):
            operands.append(self.conjunction(inner))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self, inner: bool) -> Filter:
        operands = [self.unary(inner)]
        while self.keyword("and"):
            operands.append(self.unary(inner))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self, inner: bool) -> Filter:
        token = self.take()
        if token.kind == "(":
            return self.group(token, ")", inner)
        if token.kind == "word" and token.text.lower() == "not":
            following = self.peek()
            if following.kind == "(":
                return Not(self.group(self.take(), ")", inner))
            if following.kind != "word" or following.text.lower() not in (*_OPS, "pr"):
                raise self.fail("'not' must be followed by '('", following)
        if token.kind != "word":
            raise self.fail("expected an attribute name, '(' or 'not'", token)
        path = self.attr_path(token, inner)
        opener = self.peek()
        if opener.kind != "[":
            return self.attr_expression(path, token)
        if inner:
            raise self.fail("value filters cannot be nested", opener)
        if path.sub:
            raise self.fail(f"a value filter must follow a top-level attribute, not {token.text!r}", opener)
        result = ValuePath(path, self.group(self.take(), "]", inner=True))
        if self.peek().kind == "word" and self.peek().text.startswith("."):
            raise self.fail("a sub-attribute after ']' is only allowed in PATCH paths", self.peek())
        return result

    def attr_path(self, token: _Token, inner: bool) -> AttrPath:
        match = _ATTR_PATH.fullmatch(token.text)
        if match is None:
            raise self.fail(f"invalid attribute path {token.text!r}", token)
        path = AttrPath(match["uri"], match["name"], match["sub"])
        if inner and (path.uri or path.sub):
            raise self.fail(f"only sub-attribute names are allowed inside '[...]', not {token.text!r}", token)
        return path

    def attr_expression(self, path: AttrPath, path_token: _Token) -> Filter:
        token = self.take()
        if token.kind != "word":
            raise self.fail(f"expected an operator after {path_token.text!r}", token)
        if token.text.lower() == "pr":
            return Present(path)
        op = _OPS.get(token.text.lower())
        if op is None:
            raise self.fail(f"unknown operator {token.text!r}", token)
        value = self.take()
        if value.kind in ("string", "number"):
            return Compare(path, op, value.value)
        if value.kind == "word" and value.text.lower() in _LITERALS:
            return Compare(path, op, _LITERALS[value.text.lower()])
        if value.kind == "word":
            raise self.fail(f"{value.text!r} is not a value; strings must be double-quoted", value)
        raise self.fail(f"missing comparison value after {token.text!r}", value)


def parse_filter(text: str) -> Filter:
    """Parse a ``filter`` parameter; any malformation is ``ScimError(400, …, "invalidFilter")``."""
    parser = _Parser(text, "invalidFilter", "filter")
    if parser.peek().kind == "end":
        raise parser.error("Invalid filter: the filter is empty")
    result = parser.disjunction(inner=False)
    parser.finish()
    return result


def parse_path(text: str) -> PatchPath:
    """Parse a PATCH operation's ``path`` (RFC 7644 §3.5.2); errors are ``ScimError(400, …, "invalidPath")``."""
    parser = _Parser(text, "invalidPath", "path")
    token = parser.take()
    if token.kind != "word":
        raise parser.fail("expected an attribute name", token)
    path = parser.attr_path(token, inner=False)
    opener = parser.peek()
    if opener.kind != "[":
        parser.finish()
        return PatchPath(AttrPath(path.uri, path.name), sub=path.sub)
    if path.sub:
        raise parser.fail(f"a value filter must follow a top-level attribute, not {token.text!r}", opener)
    value_filter = parser.group(parser.take(), "]", inner=True)
    sub = None
    if parser.peek().kind == "word":
        suffix = parser.take()
        match = _SUB_SUFFIX.fullmatch(suffix.text)
        if match is None:
            raise parser.fail(f"expected '.subAttribute' after ']', not {suffix.text!r}", suffix)
        sub = match[1]
    parser.finish()
    return PatchPath(path, value_filter, sub)


def _filter_error(message: str) -> ScimError:
    return ScimError(400, message, "invalidFilter")


def _as_bool(value: Any) -> bool | None:
    """Booleans, tolerating the strings "True"/"False" that Azure AD sends."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _parse_datetime(value: Scalar, path: AttrPath) -> datetime:
    """An xsd:dateTime (RFC 7643 §2.3.5) in UTC; a value without offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise _filter_error(f"'{path}' is a dateTime: {value!r} is not an ISO 8601 date-time")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_TEXT_TYPES = ("string", "reference", "binary")


def _check_operator(node: Compare, attribute: Attribute) -> None:
    """RFC 7644 §3.4.2.2 defines co/sw/ew and ordering only where they make sense."""
    if node.value is None and node.op not in ("eq", "ne"):
        raise _filter_error(f"'{node.op}' cannot compare with null")
    if attribute.type == "complex":
        raise _filter_error(f"'{node.path}' is complex: compare one of its sub-attributes instead")
    if attribute.type == "boolean" and node.op not in ("eq", "ne"):
        raise _filter_error(f"'{node.op}' is not defined for boolean attribute '{node.path}'")
    if attribute.type == "boolean" and node.value is not None and _as_bool(node.value) is None:
        raise _filter_error(f"'{node.path}' is boolean: compare it with true or false")
    if attribute.type in _TEXT_TYPES and isinstance(node.value, bool):
        raise _filter_error(f"'{node.path}' is a string: compare it with a double-quoted value")
    if attribute.type == "dateTime" and node.op in ("co", "sw", "ew"):
        raise _filter_error(f"'{node.op}' is not defined for dateTime attribute '{node.path}'")


# --- evaluating on a JSON object -------------------------------------------------------------------------------


def _get(node: Any, key: str) -> Any:
    """Attribute names are case-insensitive (RFC 7643 §2.1), whatever the JSON's spelling."""
    if not isinstance(node, Mapping):
        return None
    if key in node:
        return node[key]
    wanted = key.lower()
    return next((value for name, value in node.items() if name.lower() == wanted), None)


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def matches(filter: Filter, element: Mapping[str, Any], *, resource: Resource, parent: str | None = None) -> bool:
    """Does ``element`` satisfy ``filter``? ``parent`` names the multi-valued attribute ``element`` is an entry of
    (``"emails"``, ``"members"``), so that ``type eq "work"`` reads ``emails.type``; None means a whole resource.

    Multi-valued attributes match when any entry does, as in the database translation.
    """
    if isinstance(filter, And):
        return all(matches(f, element, resource=resource, parent=parent) for f in filter.operands)
    if isinstance(filter, Or):
        return any(matches(f, element, resource=resource, parent=parent) for f in filter.operands)
    if isinstance(filter, Not):
        return not matches(filter.operand, element, resource=resource, parent=parent)
    if isinstance(filter, ValuePath):
        entries = _get(_scope(element, filter.path, resource), filter.path.name)
        entries = entries if isinstance(entries, list) else [entries]
        inner_parent = str(filter.path) if parent is None else f"{parent}.{filter.path}"
        return any(
            isinstance(e, Mapping) and matches(filter.filter, e, resource=resource, parent=inner_parent)
            for e in entries
        )
    path = filter.path
    attribute = find_attribute(resource, f"{parent}.{path}" if parent else str(path))
    top = find_attribute(resource, str(AttrPath(path.uri, path.name))) if parent is None else None
    node = _get(_scope(element, path, resource), path.name)
    sub = path.sub
    if sub is None and isinstance(filter, Compare) and top and top.multi_valued and top.sub_attribute("value"):
        sub, attribute = "value", top.sub_attribute("value")  # ``emails eq "x"`` compares emails.value
    many = isinstance(node, list) or bool(top and top.multi_valued)
    entries = node if isinstance(node, list) else ([] if many and node is None else [node])
    candidates = [_get(e, sub) for e in entries] if sub else entries
    if isinstance(filter, Present):
        return any(_present(c) for c in candidates)
    # Attributes outside the schema (custom extensions): caseExact false, typed after the filter's value.
    name = path.sub or path.name
    definition = attribute or Attribute(name, "boolean" if isinstance(filter.value, bool) else "string")
    _check_operator(filter, definition)
    if filter.value is None:  # ``eq null`` asks for absence
        return any(_present(c) for c in candidates) is (filter.op == "ne")
    if filter.op == "ne":
        return any(c is None or not _compare(filter, definition, c) for c in candidates)
    return any(c is not None and _compare(filter, definition, c) for c in candidates)


def _scope(element: Mapping[str, Any], path: AttrPath, resource: Resource) -> Any:
    """The object holding ``path.name``: an extension's attributes live under its URN (RFC 7643 §3.3)."""
    if path.uri is None:
        return element
    resolved = resolve_path(resource, str(path))
    return element if resolved is None or resolved.is_core else _get(element, path.uri)


def _compare(node: Compare, attribute: Attribute, actual: Any) -> bool:
    expected: Any = node.value
    if attribute.type == "boolean":
        return _as_bool(actual) == _as_bool(expected)
    if attribute.type == "dateTime":
        expected = _parse_datetime(expected, node.path)
        try:
            actual = _parse_datetime(actual, node.path)
        except ScimError:
            return False
    elif isinstance(actual, str) and not isinstance(expected, bool):
        expected = expected if isinstance(expected, str) else json.dumps(expected)
        if not attribute.case_exact:
            actual, expected = actual.lower(), expected.lower()
    if node.op in ("co", "sw", "ew"):
        return isinstance(actual, str) and isinstance(expected, str) and _TEXT_TESTS[node.op](actual, expected)
    try:
        return bool(_ORDER_TESTS[node.op](actual, expected))
    except TypeError:  # e.g. a number stored where a string was expected
        return False


_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "co": lambda actual, expected: expected in actual,
    "sw": str.startswith,
    "ew": str.endswith,
}
_ORDER_TESTS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.eq,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


# --- compiling to SQL ------------------------------------------------------------------------------------------


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
            raise _filter_error(f"unknown attribute '{self.attribute.name}.{name}'")
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
            raise _filter_error(f"'{self.attribute.name}.{name}' cannot be filtered on")
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
        raise _filter_error("value filters cannot be nested")
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


class _Compiler:
    def __init__(self, resource: Resource, dialect: str) -> None:
        self.resource = resource
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
                raise _filter_error("value filters cannot be nested")
            return self.value_path(node)
        if scope is None:
            return self.leaf(node)
        if node.path.uri or node.path.sub:
            raise _filter_error(f"only sub-attribute names are allowed inside '[...]', not '{node.path}'")
        return self.test(node, *scope.operand(node.path.name))

    def resolve(self, path: AttrPath) -> ResolvedPath:
        resolved = resolve_path(self.resource, str(path))
        if resolved is None:
            raise _filter_error(f"unknown attribute '{path}' for {self.resource} resources")
        if resolved.is_extension_root or resolved.target.returned == "never":
            raise _filter_error(f"'{path}' cannot be filtered on")
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
                raise _filter_error(f"'{node.path}' cannot be filtered on")
        if attribute.multi_valued:
            scope = self.collection(resolved)
            if sub is None and isinstance(node, Compare):
                sub = attribute.sub_attribute("value")  # RFC 7644 §3.4.2.2: ``emails eq "x"`` tests emails.value
                if sub is None:
                    raise _filter_error(f"'{node.path}' is complex: compare one of its sub-attributes instead")
            return scope.exists(true() if sub is None else self.test(node, *scope.operand(sub.name)))
        if attribute.type == "complex" and sub is None:
            if isinstance(node, Compare):
                _check_operator(node, attribute)
            # A complex attribute is present when any of its sub-attributes is.
            path = node.path
            return or_(*(self.leaf(Present(AttrPath(path.uri, path.name, s.name))) for s in attribute.sub_attributes))
        return self.test(node, resolved.target, self.json_operand(self.raw, self.keys(resolved), resolved.target))

    def value_path(self, node: ValuePath) -> ColumnElement[bool]:
        resolved = self.resolve(node.path)
        if resolved.sub is None and resolved.attribute.multi_valued:
            scope = self.collection(resolved)
            return scope.exists(self.condition(node.filter, scope))
        if resolved.sub is None and resolved.attribute.type == "complex":
            return self.condition(_rebase(node.filter, node.path))
        raise _filter_error(f"'{node.path}' is not a complex attribute, so it takes no '[...]' filter")

    def test(self, node: Compare | Present, attribute: Attribute, operand: _Operand) -> ColumnElement[bool]:
        """The comparison, two-valued: an absent attribute equals nothing, so ``ne`` and ``not`` match it."""
        if isinstance(operand, _Truth):
            present = or_(operand.is_true, operand.is_false)
        else:
            present = operand.expr.is_not(None) if operand.nullable else true()
            if attribute.type in _TEXT_TYPES:
                present = and_(present, operand.expr != "")
        if isinstance(node, Present):
            return present
        _check_operator(node, attribute)
        if node.value is None:  # ``eq null`` asks for absence
            return not_(present) if node.op == "eq" else present
        if isinstance(operand, _Truth):
            hit = operand.is_true if _as_bool(node.value) else operand.is_false
            return hit if node.op == "eq" else not_(hit)
        compared = self.compare(node, attribute, operand.expr)
        if not operand.nullable:
            return compared
        if node.op == "ne":
            return or_(operand.expr.is_(None), compared)
        return and_(operand.expr.is_not(None), compared)

    def compare(self, node: Compare, attribute: Attribute, expr: ColumnElement[Any]) -> ColumnElement[bool]:
        if attribute.type == "dateTime":
            return _SQL_TESTS[node.op](expr, _parse_datetime(node.value, node.path))
        if attribute.type not in _TEXT_TYPES:
            raise _filter_error(f"'{node.path}' cannot be filtered on")
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


def translate_filter(filter: Filter, *, resource: Resource, dialect: str) -> ColumnElement[bool]:
    """Compile ``filter`` to a WHERE condition on ``directory_users`` or ``directory_groups``.

    ``dialect`` is the engine's dialect name ("sqlite" or "postgresql"): JSON arrays are walked with
    ``json_each`` or ``jsonb_array_elements``. Unknown attributes and meaningless comparisons are invalidFilter.
    """
    return _Compiler(resource, dialect).condition(filter)
