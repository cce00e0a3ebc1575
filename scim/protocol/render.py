"""SCIM resources as the API shows them (RFC 7643): rendering from the tables, ETags and ``If-Match`` (RFC 7644
§3.14), and attribute projection (RFC 7644 §3.4.2.5)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.events.payloads import iso
from gateway.store.models import DirectoryGroup, DirectoryUser
from scim.protocol import urns
from scim.protocol.errors import ScimError
from scim.protocol.filters import matches, parse_path
from scim.protocol.schemas import Resource


@dataclass(frozen=True)
class Member:
    """One edge as rendered in a group's ``members`` or a user's ``groups``."""

    id: str
    display: str | None


@dataclass(frozen=True)
class _Shape:
    """What tells a rendered User from a rendered Group: the rest of the rendering is the same."""

    endpoint: str
    schema: str
    related: str  # the computed, multi-valued attribute listing the other side of its memberships
    related_endpoint: str
    related_type: str


_SHAPES: dict[Resource, _Shape] = {
    "User": _Shape("Users", urns.USER, related="groups", related_endpoint="Groups", related_type="direct"),
    "Group": _Shape("Groups", urns.GROUP, related="members", related_endpoint="Users", related_type="User"),
}


def etag(version: int) -> str:
    return f'W/"{version}"'


def check_if_match(wanted: str | None, current_etag: str) -> None:
    """RFC 7644 §3.14: a stale ``If-Match`` answers 412 and changes nothing."""
    if wanted and wanted.strip() != "*" and current_etag not in [v.strip() for v in wanted.split(",")]:
        raise ScimError(412, "The resource changed since the given ETag")


def location(resource: Resource, base_url: str, resource_id: str) -> str:
    return f"{base_url}/{_SHAPES[resource].endpoint}/{resource_id}"


def related_attribute(resource: Resource) -> str:
    """``groups`` of a User, ``members`` of a Group: computed from the memberships, not stored with the resource."""
    return _SHAPES[resource].related


def render_resource(
    row: DirectoryUser | DirectoryGroup, *, resource: Resource, base_url: str, related: Iterable[Member] | None
) -> dict[str, Any]:
    """The resource as SCIM shows it; ``related`` (its groups or members) is left out when None."""
    shape = _SHAPES[resource]
    # A shallow copy: the body is only serialised, and project() copies before it edits anything.
    raw = dict(row.raw_attributes)
    schemas = raw.pop("schemas", None) or [shape.schema]
    body: dict[str, Any] = {"schemas": schemas, "id": row.id, **raw}
    if related is not None:
        prefix = f"{base_url}/{shape.related_endpoint}/"
        body[shape.related] = [
            {"value": m.id, "display": m.display, "$ref": prefix + m.id, "type": shape.related_type} for m in related
        ]
    body["meta"] = {
        "resourceType": resource,
        "created": iso(row.created_at),
        "lastModified": iso(row.updated_at),
        "location": f"{base_url}/{shape.endpoint}/{row.id}",
        "version": etag(row.version),
    }
    return body


# -- attributes / excludedAttributes (RFC 7644 §3.4.2.5) -------------------------------------------------------

_ALWAYS_RETURNED = frozenset({"id", "schemas"})


def _split(path: str, schema_urns: Iterable[str]) -> tuple[str | None, list[str]]:
    """``urn:…:User:name.givenName`` → (urn, ["name", "givenName"]); core URNs are dropped."""
    lowered = path.lower()
    for urn in sorted(schema_urns, key=len, reverse=True):
        if lowered.startswith(urn.lower() + ":"):
            rest = path[len(urn) + 1 :]
            return (None if urn in (urns.USER, urns.GROUP) else urn), rest.split(".")
        if lowered == urn.lower():
            return urn, []
    return None, path.split(".")


def _find_key(obj: Mapping[str, Any], name: str) -> str | None:
    lowered = name.lower()
    return next((k for k in obj if k.lower() == lowered), None)


def _pick(source: Any, parts: list[str]) -> Any:
    if not parts:
        return copy.deepcopy(source)
    if isinstance(source, list):
        picked = [_pick(item, parts) for item in source]
        return [p for p in picked if p not in (None, {}, [])]
    if not isinstance(source, dict):
        return None
    key = _find_key(source, parts[0])
    if key is None:
        return None
    value = _pick(source[key], parts[1:])
    return None if value in (None, {}, []) else {key: value}


def _merge(target: dict[str, Any], addition: dict[str, Any]) -> None:
    for key, value in addition.items():
        if key in target and isinstance(target[key], dict) and isinstance(value, dict):
            _merge(target[key], value)
        elif key in target and isinstance(target[key], list) and isinstance(value, list):
            for existing, extra in zip(target[key], value, strict=False):
                if isinstance(existing, dict) and isinstance(extra, dict):
                    _merge(existing, extra)
        else:
            target[key] = value


def _remove(source: Any, parts: list[str]) -> None:
    if isinstance(source, list):
        for item in source:
            _remove(item, parts)
        return
    if not isinstance(source, dict) or not parts:
        return
    key = _find_key(source, parts[0])
    if key is None:
        return
    if len(parts) == 1:
        del source[key]
    else:
        _remove(source[key], parts[1:])


def _matching_values(
    body: dict[str, Any], path: str, known_urns: list[str], resource: Resource, *, keep: bool
) -> dict[str, Any] | None:
    """``emails[type eq "work"]`` (RFC 7644 §3.10 path syntax, sent as ``attributes`` by Microsoft's tooling): the
    values of the multi-valued attribute that match (``keep``) or do not match the filter, sub-attribute
    ``[…].sub`` picked, as a fragment of ``body`` to merge; None when there is no such attribute."""
    target = parse_path(path)
    assert target.value_filter is not None
    urn, parts = _split(str(target.attribute), known_urns)
    source = body.get(urn) if urn else body
    key = _find_key(source, parts[0]) if isinstance(source, dict) and parts else None
    values = source.get(key) if isinstance(source, dict) and key is not None else None
    if key is None or not isinstance(values, list):
        return None
    where = target.value_filter
    chosen = [
        copy.deepcopy(v)
        for v in values
        if (isinstance(v, dict) and matches(where, v, resource=resource, parent=key)) is keep
    ]
    if target.sub is not None:
        chosen = [picked for picked in (_pick(v, [target.sub]) for v in chosen) if picked]
    if not chosen and keep:
        return None
    fragment: dict[str, Any] = {key: chosen or None}  # None: every value left out, so is the attribute
    return {urn: fragment} if urn else fragment


def project(
    body: dict[str, Any], *, resource: Resource, attributes: list[str] | None, excluded: list[str] | None
) -> dict[str, Any]:
    """Apply ``attributes`` (keep only these, plus id and schemas) or ``excludedAttributes``; a path with a value
    filter keeps (or leaves out) only the matching values of its multi-valued attribute."""
    known_urns = [u for u in body.get("schemas", []) if isinstance(u, str)] + [urns.USER, urns.GROUP]
    if attributes:
        result: dict[str, Any] = {k: body[k] for k in _ALWAYS_RETURNED if k in body}
        for path in attributes:
            if "[" in path:
                fragment = _matching_values(body, path, known_urns, resource, keep=True)
                if fragment:
                    _merge(result, fragment)
                continue
            urn, parts = _split(path, known_urns)
            source = body.get(urn, {}) if urn else body
            picked = _pick(source, parts) if parts else copy.deepcopy(source)
            if picked in (None, {}, []):
                continue
            _merge(result, {urn: picked} if urn else picked)
        return result
    if excluded:
        result = copy.deepcopy(body)
        for path in excluded:
            if "[" in path:
                fragment = _matching_values(result, path, known_urns, resource, keep=False)
                if fragment:
                    _replace_values(result, fragment)
                continue
            urn, parts = _split(path, known_urns)
            if not urn and parts and parts[0].lower() in _ALWAYS_RETURNED:
                continue
            if urn and not parts:
                result.pop(urn, None)
            else:
                _remove(result.get(urn) if urn else result, parts)
        return result
    return body


def _replace_values(target: dict[str, Any], fragment: dict[str, Any]) -> None:
    """Put ``fragment``'s (filtered) lists in place of the ones in ``target`` at the same keys."""
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _replace_values(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value


def mentions(paths: list[str] | None, attribute: str, *, whole: bool = False) -> bool:
    """Whether an attributes/excludedAttributes list names ``attribute`` (or one of its sub-attributes);
    ``whole``: without a value filter (``members[value eq "x"]`` names some of its values only)."""
    target = attribute.lower()
    for path in paths or []:
        if whole and "[" in path:
            continue
        tail = path.split("[", 1)[0].rsplit(":", 1)[-1].lower()
        if tail == target or tail.startswith(target + "."):
            return True
    return False
