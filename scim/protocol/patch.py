"""PATCH (RFC 7644 §3.5.2) applied to a resource's stored attributes.

Attribute operations edit a copy of ``raw_attributes``; the result goes through the normaliser again, so a PATCH can
never store what a PUT could not. Operations on a group's ``members`` are not applied here: they come back as
``MemberChange`` values that ``scim.backend.groups`` applies one edge at a time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.store.serialization import canonical
from scim.protocol import urns
from scim.protocol.errors import ScimError
from scim.protocol.filter_predicates import compile_filter
from scim.protocol.filters import And, Compare, Filter, Or, parse_path
from scim.protocol.limits import Limits
from scim.protocol.normalize import member_values, normalize_resource
from scim.protocol.render import Member
from scim.protocol.schemas import ResolvedPath, Resource, resolve_path
from scim.protocol.value_index import ValueIndexes, indexable

Op = Literal["add", "replace", "remove"]
_LIMITS = Limits()  # the defaults, for callers without settings (tests)


@dataclass(frozen=True)
class Operation:
    op: Op
    path: str | None
    value: Any


@dataclass(frozen=True)
class MemberChange:
    kind: Literal["add", "remove", "replace", "remove_where"]
    members: list[Member] = field(default_factory=list)
    where: Filter | None = None


def parse_patch(document: dict[str, Any], limits: Limits = _LIMITS) -> list[Operation]:
    schemas = document.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or urns.PATCH_OP not in schemas):
        raise ScimError(400, f"PATCH requests must declare the {urns.PATCH_OP} schema", "invalidSyntax")
    operations = next((v for k, v in document.items() if k.lower() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        raise ScimError(400, "PATCH needs a non-empty 'Operations' list", "invalidSyntax")
    limits.check_operations(len(operations))
    parsed: list[Operation] = []
    for item in operations:
        if not isinstance(item, dict):
            raise ScimError(400, "Each PATCH operation must be an object", "invalidSyntax")
        fields = {k.lower(): v for k, v in item.items()}
        op = fields.get("op")
        # Entra ID sends "Add"/"Replace"/"Remove": op names are matched case-insensitively.
        if not isinstance(op, str) or op.lower() not in ("add", "replace", "remove"):
            raise ScimError(400, f"Unsupported PATCH op {op!r}; use add, replace or remove", "invalidSyntax")
        path = fields.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise ScimError(400, "PATCH 'path' must be a non-empty string", "invalidPath")
        if op.lower() != "remove" and "value" not in fields:
            raise ScimError(400, f"PATCH '{op}' needs a 'value'", "invalidValue")
        parsed.append(Operation(op=op.lower(), path=path.strip() if path else None, value=fields.get("value")))  # type: ignore[arg-type]
    return parsed


def member_changes_only(operations: list[Operation], *, resource: Resource) -> list[MemberChange] | None:
    """The member changes of a Group PATCH whose every operation names ``members``, which needs nothing of the
    stored attributes (the way Okta, Entra and JumpCloud add and remove members); else None."""
    if resource != "Group" or not operations:
        return None
    changes: list[MemberChange] = []
    for operation in operations:
        if operation.path is None:
            return None
        try:
            target = parse_path(operation.path)
            resolved = resolve_path(resource, str(target.attribute))
            if resolved is None or resolved.attribute.name != "members" or resolved.sub is not None or target.sub:
                return None
            changes.append(_member_change(operation, target.value_filter))
        except ScimError:
            return None  # refused by the general path, once the request is authenticated
    return changes


def apply_patch(
    raw_attributes: dict[str, Any], operations: list[Operation], *, resource: Resource
) -> tuple[dict[str, Any], list[MemberChange]]:
    """The new attributes after ``operations``, and the member changes they ask for (Groups only)."""
    raw = copy.deepcopy(raw_attributes)
    changes: list[MemberChange] = []
    indexes = ValueIndexes()
    for operation in operations:
        if operation.path is None:
            if operation.op == "remove":
                raise ScimError(400, "A 'remove' operation needs a path", "noTarget")
            if not isinstance(operation.value, dict):
                raise ScimError(400, "A PATCH without a path needs an object value", "invalidValue")
            # Path-less add/replace: each key is a path of its own (dotted and URN-qualified keys included).
            for key, value in operation.value.items():
                if key.lower() in ("id", "meta", "schemas", "groups"):
                    continue  # read-only or structural, echoed back by some IdPs: ignored
                operation_of_key = Operation(operation.op, key, value)
                _apply(raw, changes, operation_of_key, indexes, resource=resource, explicit=False)
        else:
            _apply(raw, changes, operation, indexes, resource=resource, explicit=True)
    return normalize_resource(raw, resource=resource), changes


def _apply(
    raw: dict[str, Any],
    changes: list[MemberChange],
    operation: Operation,
    indexes: ValueIndexes,
    *,
    resource: Resource,
    explicit: bool,
) -> None:
    assert operation.path is not None
    target = parse_path(operation.path)
    attribute_path = str(target.attribute)
    resolved = resolve_path(resource, attribute_path)
    if resolved is None:
        if attribute_path.lower().startswith("urn:") and target.value_filter is None and target.sub is None:
            _apply_unknown_extension(raw, operation, attribute_path)
            return
        raise ScimError(400, f"Unknown attribute '{attribute_path}' in path '{operation.path}'", "invalidPath")
    if resource == "Group" and resolved.attribute.name == "members":
        changes.append(_member_change(operation, target.value_filter))
        return
    if resolved.attribute.mutability == "readOnly" or resolved.attribute.name == "id":
        if explicit:
            raise ScimError(400, f"Attribute '{resolved.attribute.name}' is read-only", "mutability")
        return
    container = _container(raw, resolved, create=operation.op != "remove")
    if container is None:
        return
    key = _existing_key(container, resolved.attribute.name)
    sub = resolved.sub.name if resolved.sub else target.sub
    if sub is not None and resolved.sub is None:
        known = resolved.attribute.sub_attribute(sub)
        if known is None and resolved.attribute.sub_attributes:
            raise ScimError(400, f"Unknown sub-attribute '{sub}' of '{resolved.attribute.name}'", "invalidPath")
        sub = known.name if known else sub
    if target.value_filter is not None:
        _apply_filtered(container, key, operation, target.value_filter, sub, indexes, resource=resource)
        return
    if sub is not None:
        indexes.forget(container.get(key))  # its entries change in ways the indexes do not follow
        _apply_sub(container, key, operation, sub)
    else:
        _apply_whole(
            container,
            key,
            operation,
            indexes,
            multi_valued=resolved.attribute.multi_valued,
            complex_=resolved.attribute.type == "complex",
        )


def _member_change(operation: Operation, where: Filter | None) -> MemberChange:
    if where is not None:
        if operation.op != "remove":
            raise ScimError(400, "Only 'remove' may filter members", "invalidPath")
        ids = _ids_from_value_filter(where)
        if ids is None:
            return MemberChange("remove_where", where=where)
        return MemberChange("remove", members=[Member(id=i, display=None) for i in ids])
    if operation.op == "remove" and operation.value in (None, [], ""):
        return MemberChange("replace", members=[])  # remove all members
    # A PATCH value may name a lone member, as it may any multi-valued attribute's value (``_apply_whole``).
    return MemberChange(operation.op, members=member_values(operation.value, lone=True))


def _ids_from_value_filter(where: Filter) -> list[str] | None:
    """``value eq "a"`` or ``value eq "a" or value eq "b"``: the ids without loading the member list."""
    if isinstance(where, Or):
        ids: list[str] = []
        for operand in where.operands:
            found = _ids_from_value_filter(operand)
            if found is None:
                return None
            ids.extend(found)
        return ids
    if (
        isinstance(where, Compare)
        and where.op == "eq"
        and where.path.uri is None
        and where.path.sub is None
        and where.path.name.lower() == "value"
        and isinstance(where.value, str)
    ):
        return [where.value]
    return None


def _container(raw: dict[str, Any], resolved: ResolvedPath, *, create: bool) -> dict[str, Any] | None:
    if resolved.is_core or resolved.is_extension_root:
        return raw
    key = _existing_key(raw, resolved.schema.id)
    if not isinstance(raw.get(key), dict):
        if not create:
            return None
        raw[key] = {}
    container: dict[str, Any] = raw[key]
    return container


def _existing_key(container: dict[str, Any], name: str) -> str:
    lowered = name.lower()
    return next((k for k in container if k.lower() == lowered), name)


def _apply_whole(
    container: dict[str, Any],
    key: str,
    operation: Operation,
    indexes: ValueIndexes,
    *,
    multi_valued: bool,
    complex_: bool,
) -> None:
    value = operation.value
    current = container.get(key)
    if not (multi_valued and operation.op == "add" and isinstance(current, list)):
        indexes.forget(current)  # replaced or filtered below: a new list the indexes know nothing of
    if operation.op == "remove":
        if multi_valued and isinstance(value, list) and value and isinstance(current, list):
            # Remove only the listed elements (compared by their 'value').
            gone = {canonical(v.get("value") if isinstance(v, dict) else v) for v in value}
            container[key] = [e for e in current if canonical(e.get("value") if isinstance(e, dict) else e) not in gone]
        else:
            container.pop(key, None)
        return
    if multi_valued:
        items = value if isinstance(value, list) else [value]
        if operation.op == "add" and isinstance(current, list):
            # New values only, compared through the list's index: linear in the stored and the added values.
            container[key] = indexes.extended(current, items)
            return
        else:
            container[key] = items
    elif complex_ and isinstance(value, dict) and isinstance(current, dict):
        # RFC 7644 §3.5.2.1/3: sub-attributes not named in the value are left unchanged.
        merged = dict(current)
        for sub_key, sub_value in value.items():
            merged[_existing_key(merged, sub_key)] = sub_value
        container[key] = merged
    else:
        container[key] = value


def _apply_sub(container: dict[str, Any], key: str, operation: Operation, sub: str) -> None:
    current = container.get(key)
    if isinstance(current, list):  # e.g. "emails.value" without a filter: every element
        for element in current:
            if isinstance(element, dict):
                _set_or_remove(element, sub, operation)
        if not current and operation.op != "remove":
            container[key] = [{sub: operation.value}]
        return
    if not isinstance(current, dict):
        if operation.op == "remove":
            return
        current = container[key] = {}
    _set_or_remove(current, sub, operation)


def _set_or_remove(element: dict[str, Any], sub: str, operation: Operation) -> None:
    sub_key = _existing_key(element, sub)
    if operation.op == "remove":
        element.pop(sub_key, None)
    else:
        element[sub_key] = operation.value


def _apply_filtered(
    container: dict[str, Any],
    key: str,
    operation: Operation,
    where: Filter,
    sub: str | None,
    indexes: ValueIndexes,
    *,
    resource: Resource,
) -> None:
    current = container.get(key)
    elements: list[Any] = current if isinstance(current, list) else []
    narrowed = indexable(where, resource=resource, parent=key)
    candidates = elements if narrowed is None else indexes.candidates(elements, *narrowed)
    test = compile_filter(where, resource=resource, parent=key)
    selected = [e for e in candidates if isinstance(e, dict) and test(e)]
    if operation.op == "remove":
        if not selected:
            return
        if sub is None:
            gone = {id(e) for e in selected}
            remaining = [e for e in elements if id(e) not in gone]
            indexes.removed(elements, remaining, selected)
            container[key] = remaining
        else:
            for element in selected:
                _edit(indexes, elements, element, sub, operation)
        return
    if not selected:
        # `emails[type eq "work"].value` on a user without a work email creates that element.
        seed = _seed_from_filter(where)
        if seed is None:
            raise ScimError(400, f"No '{key}' value matches the filter in the path", "noTarget")
        grown = elements + [seed]
        indexes.appended(elements, grown, seed)
        elements = container[key] = grown
        selected = [seed]
    for element in selected:
        if sub is not None:
            _edit(indexes, elements, element, sub, operation)
        elif isinstance(operation.value, dict):
            for sub_key, sub_value in operation.value.items():
                _edit(indexes, elements, element, sub_key, Operation("replace", None, sub_value))
        else:
            raise ScimError(400, "A filtered path without a sub-attribute needs an object value", "invalidValue")


def _edit(indexes: ValueIndexes, elements: list[Any], element: dict[str, Any], sub: str, operation: Operation) -> None:
    """Set or remove one sub-attribute of an entry, keeping the PATCH's indexes in step."""
    indexes.editing(elements, element)
    _set_or_remove(element, sub, operation)
    indexes.edited(elements, element)


def _seed_from_filter(where: Filter) -> dict[str, Any] | None:
    """The element a filter of ``eq`` comparisons joined by ``and`` describes, e.g. ``{"type": "work"}``."""
    if isinstance(where, Compare) and where.op == "eq" and where.path.uri is None and where.path.sub is None:
        return {where.path.name: where.value}
    if isinstance(where, And):
        seed: dict[str, Any] = {}
        for operand in where.operands:
            part = _seed_from_filter(operand)
            if part is None:
                return None
            seed.update(part)
        return seed
    return None


def _apply_unknown_extension(raw: dict[str, Any], operation: Operation, path: str) -> None:
    """A vendor extension we have no schema for: stored and removed as sent, by its full key."""
    key = _existing_key(raw, path)
    if operation.op == "remove":
        raw.pop(key, None)
    elif operation.op == "add" and isinstance(raw.get(key), dict) and isinstance(operation.value, dict):
        raw[key] = {**raw[key], **operation.value}
    else:
        raw[key] = operation.value
