"""SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): parse and evaluate on JSON.

Compiling filters to SQL is :mod:`scim.filter_sql`'s job.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from scim.protocol.errors import ScimError, ScimType
from scim.protocol.schemas import Attribute, Resource, find_attribute, resolve_path

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
        """The attribute the operation changes, spelled as :func:`scim.protocol.schemas.find_attribute` accepts it."""
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
_BARE_VALUE = re.compile(r'[^\s()\[\]"\x00]+')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _is_unquoted_string(text: str) -> bool:
    return text.lower() not in _LITERALS and _NUMBER.fullmatch(text) is None


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
            bare = _BARE_VALUE.match(text, pos) if self._after_operator(tokens) else None
            if bare is not None and _is_unquoted_string(bare.group()):
                # An unquoted comparison value (`userName eq john@acme.com`), as some IdPs send: unambiguous when it
                # runs to the next space or bracket and is no literal or number.
                tokens.append(_Token("bare", bare.group(), pos, bare.group()))
                pos = bare.end()
                continue
            match = _TOKEN.match(text, pos)
            if match is None:
                what = "unterminated or malformed string" if text[pos] == '"' else f"unexpected character {text[pos]!r}"
                raise self.fail(what, _Token("?", text[pos], pos))
            kind, lexeme = match.lastgroup or "", match.group()
            if kind in ("string", "number"):
                value = json.loads(lexeme)
                # Neither can be stored (PostgreSQL text refuses NUL), so neither is worth asking the database about.
                if isinstance(value, str) and re.search("[\x00\ud800-\udfff]", value):
                    what = "a NUL character" if "\x00" in value else "an unpaired surrogate escape"
                    raise self.fail(f"string contains {what}", _Token(kind, lexeme, pos))
                tokens.append(_Token(kind, lexeme, pos, value))
            elif kind != "space":
                tokens.append(_Token(lexeme if kind == "punct" else kind, lexeme, pos))
            pos = match.end()
        tokens.append(_Token("end", "", len(text)))
        return tokens

    @staticmethod
    def _after_operator(tokens: list[_Token]) -> bool:
        return (
            len(tokens) >= 2
            and tokens[-1].kind == "word"
            and tokens[-1].text.lower() in _OPS
            and tokens[-2].kind == "word"
        )

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
        suffix = self.peek()
        if suffix.kind == "word" and suffix.text.startswith("."):
            # `emails[type eq "work"].value eq "x"`: outside RFC 7644's grammar, but Entra ID sends it for matching
            # attributes. It means one element satisfies both, i.e. `emails[type eq "work" and value eq "x"]`.
            sub = _SUB_SUFFIX.fullmatch(suffix.text)
            if sub is None:
                raise self.fail(f"invalid sub-attribute {suffix.text!r}", suffix)
            self.take()
            condition = self.attr_expression(AttrPath(None, sub.group(1)), suffix)
            return ValuePath(path, And((result.filter, condition)))
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
        if value.kind == "bare":
            return Compare(path, op, value.value)
        if value.kind == "word" and value.text.lower() in _LITERALS:
            return Compare(path, op, _LITERALS[value.text.lower()])
        if value.kind == "word":
            raise self.fail(f"{value.text!r} is not a value; strings must be double-quoted", value)
        raise self.fail(f"missing comparison value after {token.text!r}", value)


@functools.lru_cache(maxsize=256)
def parse_filter(text: str) -> Filter:
    """Parse a ``filter`` parameter; any malformation is ``ScimError(400, …, "invalidFilter")``. A parsed filter is
    immutable: the last ones are kept (a request checks whether it is a lookup, then compiles it)."""
    parser = _Parser(text, "invalidFilter", "filter")
    if parser.peek().kind == "end":
        raise parser.error("Invalid filter: the filter is empty")
    result = parser.disjunction(inner=False)
    parser.finish()
    return result


# Attributes a filter finds a resource by through an index of its own (``scim.protocol.filter_sql``'s columns).
_LOOKUP_ATTRIBUTES: dict[Resource, frozenset[str]] = {
    "User": frozenset({"id", "username", "externalid", "emails"}),
    "Group": frozenset({"id", "externalid"}),
}
_CORE_URNS = frozenset({"urn:ietf:params:scim:schemas:core:2.0:user", "urn:ietf:params:scim:schemas:core:2.0:group"})


def as_lookup(text: str | None, *, resource: Resource) -> Compare | None:
    """``filter`` parsed, if it is ``attribute eq "value"`` on an attribute with an index of its own (an IdP's
    ``userName eq "…"`` check): its answer is a few rows found through that index, however large the directory."""
    if text is None or len(text) > MAX_LENGTH:
        return None
    try:
        node = parse_filter(text)
    except ScimError:
        return None  # refused when the request compiles it
    if (
        isinstance(node, Compare)
        and node.op == "eq"
        and isinstance(node.value, str)
        and (node.path.sub is None or (node.path.name.lower() == "emails" and node.path.sub.lower() == "value"))
        and (node.path.uri is None or node.path.uri.lower() in _CORE_URNS)
        and node.path.name.lower() in _LOOKUP_ATTRIBUTES[resource]
    ):
        return node
    return None


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


def filter_error(message: str) -> ScimError:
    return ScimError(400, message, "invalidFilter")


def as_bool(value: Any) -> bool | None:
    """Booleans, tolerating the strings "True"/"False" that Azure AD sends."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def parse_datetime(value: Scalar, path: AttrPath) -> datetime:
    """An xsd:dateTime (RFC 7643 §2.3.5) in UTC; a value without offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        if parsed is not None:
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        parsed = None
    if parsed is None:
        raise filter_error(f"'{path}' is a dateTime: {value!r} is not an ISO 8601 date-time")
    return parsed


TEXT_TYPES = ("string", "reference", "binary")


def check_operator(node: Compare, attribute: Attribute) -> None:
    """RFC 7644 §3.4.2.2 defines co/sw/ew and ordering only where they make sense."""
    if node.value is None and node.op not in ("eq", "ne"):
        raise filter_error(f"'{node.op}' cannot compare with null")
    if attribute.type == "complex":
        raise filter_error(f"'{node.path}' is complex: compare one of its sub-attributes instead")
    if attribute.type == "boolean" and node.op not in ("eq", "ne"):
        raise filter_error(f"'{node.op}' is not defined for boolean attribute '{node.path}'")
    if attribute.type == "boolean" and node.value is not None and as_bool(node.value) is None:
        raise filter_error(f"'{node.path}' is boolean: compare it with true or false")
    if attribute.type in TEXT_TYPES and isinstance(node.value, bool):
        raise filter_error(f"'{node.path}' is a string: compare it with a double-quoted value")
    if attribute.type == "dateTime" and node.op in ("co", "sw", "ew"):
        raise filter_error(f"'{node.op}' is not defined for dateTime attribute '{node.path}'")


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
    check_operator(filter, definition)
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
        return as_bool(actual) == as_bool(expected)
    if attribute.type == "dateTime":
        expected = parse_datetime(expected, node.path)
        try:
            actual = parse_datetime(actual, node.path)
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


# For scim.protocol.filter_predicates, which compiles a filter tested on many elements.
get_attribute, is_present, compare_value = _get, _present, _compare
