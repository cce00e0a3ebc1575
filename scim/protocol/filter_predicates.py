"""A SCIM filter compiled into a predicate over one element, for filters evaluated on many elements (a PATCH's value
path ``emails[value co "x"]`` is tested on every entry of the attribute, for every operation).

``filters.matches`` looks the attribute's definition up, resolves its URN and checks the operator on every call; a
compiled predicate does that once, so the largest allowed PATCH on the largest allowed resource (100 filtered
operations × 100 values) costs a few milliseconds. It answers exactly what ``matches`` answers, errors included
(an operator the attribute does not support raises when the predicate is first applied, as ``matches`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from scim.protocol.errors import ScimError
from scim.protocol.filters import (
    And,
    AttrPath,
    Compare,
    Filter,
    Not,
    Or,
    Present,
    ValuePath,
    check_operator,
    compare_value,
    get_attribute,
    is_present,
)
from scim.protocol.schemas import Attribute, Resource, find_attribute, resolve_path

Predicate = Callable[[Mapping[str, Any]], bool]


def compile_filter(filter: Filter, *, resource: Resource, parent: str | None = None) -> Predicate:
    """``lambda element: matches(filter, element, resource=resource, parent=parent)``, with the lookups done once."""
    if isinstance(filter, And):
        parts = [compile_filter(f, resource=resource, parent=parent) for f in filter.operands]
        return lambda element: all(part(element) for part in parts)
    if isinstance(filter, Or):
        parts = [compile_filter(f, resource=resource, parent=parent) for f in filter.operands]
        return lambda element: any(part(element) for part in parts)
    if isinstance(filter, Not):
        inner = compile_filter(filter.operand, resource=resource, parent=parent)
        return lambda element: not inner(element)
    if isinstance(filter, ValuePath):
        scope = _scope(filter.path, resource)
        name = filter.path.name
        inner_parent = str(filter.path) if parent is None else f"{parent}.{filter.path}"
        nested = compile_filter(filter.filter, resource=resource, parent=inner_parent)

        def value_path(element: Mapping[str, Any]) -> bool:
            entries = get_attribute(scope(element), name)
            entries = entries if isinstance(entries, list) else [entries]
            return any(isinstance(e, Mapping) and nested(e) for e in entries)

        return value_path
    return _leaf(filter, resource=resource, parent=parent)


def _leaf(filter: Compare | Present, *, resource: Resource, parent: str | None) -> Predicate:
    path = filter.path
    attribute = find_attribute(resource, f"{parent}.{path}" if parent else str(path))
    top = find_attribute(resource, str(AttrPath(path.uri, path.name))) if parent is None else None
    scope = _scope(path, resource)
    name, sub = path.name, path.sub
    if sub is None and isinstance(filter, Compare) and top and top.multi_valued and top.sub_attribute("value"):
        sub, attribute = "value", top.sub_attribute("value")  # ``emails eq "x"`` compares emails.value
    declared_many = bool(top and top.multi_valued)

    def candidates(element: Mapping[str, Any]) -> list[Any]:
        node = get_attribute(scope(element), name)
        many = isinstance(node, list) or declared_many
        entries = node if isinstance(node, list) else ([] if many and node is None else [node])
        return [get_attribute(e, sub) for e in entries] if sub else entries

    if isinstance(filter, Present):
        return lambda element: any(is_present(c) for c in candidates(element))
    # Attributes outside the schema (custom extensions): caseExact false, typed after the filter's value.
    definition = attribute or Attribute(
        path.sub or path.name, "boolean" if isinstance(filter.value, bool) else "string"
    )
    try:
        check_operator(filter, definition)
    except ScimError as refusal:
        error = refusal

        def refuse(_element: Mapping[str, Any]) -> bool:
            raise error

        return refuse
    compare = _text_comparison(filter, definition) or (lambda actual: compare_value(filter, definition, actual))
    if filter.value is None:  # ``eq null`` asks for absence
        absent = filter.op == "ne"
        return lambda element: any(is_present(c) for c in candidates(element)) is absent
    if filter.op == "ne":
        return lambda element: any(c is None or not compare(c) for c in candidates(element))
    return lambda element: any(c is not None and compare(c) for c in candidates(element))


def _text_comparison(filter: Compare, definition: Attribute) -> Callable[[Any], bool] | None:
    """A string value against a string attribute (the common case: ``value co "x"``, ``type eq "work"``), with the
    expected value folded once; None for the others, which ``compare_value`` handles."""
    expected = filter.value
    if not isinstance(expected, str) or definition.type in ("boolean", "dateTime") or filter.op not in _TEXT:
        return None
    test = _TEXT[filter.op]
    if definition.case_exact:
        return lambda actual: isinstance(actual, str) and test(actual, expected)
    folded = expected.lower()
    return lambda actual: isinstance(actual, str) and test(actual.lower(), folded)


# A non-string value never equals, contains, starts or ends with a string (``compare_value`` answers False too).
_TEXT: dict[str, Callable[[str, str], bool]] = {
    "eq": str.__eq__,
    "co": lambda actual, expected: expected in actual,
    "sw": str.startswith,
    "ew": str.endswith,
}


def _scope(path: AttrPath, resource: Resource) -> Callable[[Mapping[str, Any]], Any]:
    """Where ``path.name`` lives in an element: an extension's attributes under its URN (RFC 7643 §3.3)."""
    if path.uri is None:
        return lambda element: element
    resolved = resolve_path(resource, str(path))
    if resolved is None or resolved.is_core:
        return lambda element: element
    uri = path.uri
    return lambda element: get_attribute(element, uri)
