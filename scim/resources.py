"""Mapping between SCIM resources (RFC 7643) and the tables: derived columns, rendering, attribute projection."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.events import iso
from gateway.models import DirectoryGroup, DirectoryType, DirectoryUser, UserState

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

# Enterprise extension attributes surfaced as WorkOS-style custom attributes.
_CUSTOM_FROM_ENTERPRISE = {
    "employeeNumber": "employee_number",
    "costCenter": "cost_center",
    "organization": "organization",
    "division": "division",
    "department": "department",
}


@dataclass(frozen=True)
class Member:
    """One edge as rendered in a group's ``members`` or a user's ``groups``."""

    id: str
    display: str | None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def primary_email(emails: list[dict[str, Any]], user_name: str) -> str | None:
    """``primary: true``, then ``type: work``, then the first, then a userName that is an email address."""
    valued = [e for e in emails if _text(e.get("value"))]
    for candidates in (
        [e for e in valued if e.get("primary") is True],
        [e for e in valued if str(e.get("type", "")).lower() == "work"],
        valued,
    ):
        if candidates:
            return str(candidates[0]["value"])
    return user_name if "@" in user_name else None


def user_columns(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The indexed columns derived from a normalised SCIM user."""
    user_name = str(raw["userName"])
    emails = [
        {k: e[k] for k in ("value", "type", "primary") if k in e}
        for e in raw.get("emails") or []
        if isinstance(e, dict) and _text(e.get("value"))
    ]
    name = raw.get("name")
    if not isinstance(name, dict):
        name = {}
    enterprise = raw.get(ENTERPRISE_SCHEMA)
    if not isinstance(enterprise, dict):
        enterprise = {}
    custom: dict[str, Any] = {
        key: enterprise[attr] for attr, key in _CUSTOM_FROM_ENTERPRISE.items() if enterprise.get(attr) not in (None, "")
    }
    manager = enterprise.get("manager")
    manager_id = manager.get("value") if isinstance(manager, dict) else manager
    if _text(manager_id):
        custom["manager_id"] = manager_id
    return {
        "idp_id": _text(raw.get("externalId")),
        "user_name": user_name,
        "email": primary_email(emails, user_name),
        "emails": emails,
        "first_name": _text(name.get("givenName")),
        "last_name": _text(name.get("familyName")),
        "display_name": _text(raw.get("displayName")) or _text(name.get("formatted")),
        "job_title": _text(raw.get("title")),
        "state": UserState.INACTIVE.value if raw.get("active") is False else UserState.ACTIVE.value,
        "custom_attributes": custom,
        "raw_attributes": dict(raw),
    }


def group_columns(raw: Mapping[str, Any], *, directory_type: str) -> dict[str, Any]:
    """The group's columns; ``idp_id`` is how its IdP identifies it: Okta's group push keys groups by their name
    (its externalId, when sent, is not stable across pushes), the others by externalId, else the name."""
    external_id = _text(raw.get("externalId"))
    name = str(raw["displayName"])
    idp_id = name if directory_type == DirectoryType.OKTA else external_id or name
    return {"external_id": external_id, "idp_id": idp_id, "name": name, "raw_attributes": dict(raw)}


def etag(version: int) -> str:
    return f'W/"{version}"'


def _meta(resource_type: str, location: str, created: Any, modified: Any, version: int) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "created": iso(created),
        "lastModified": iso(modified),
        "location": location,
        "version": etag(version),
    }


def render_user(user: DirectoryUser, *, base_url: str, groups: Iterable[Member] | None) -> dict[str, Any]:
    # A shallow copy: the body is only serialised, and project() copies before it edits anything.
    raw = dict(user.raw_attributes)
    schemas = raw.pop("schemas", None) or [USER_SCHEMA]
    body: dict[str, Any] = {"schemas": schemas, "id": user.id, **raw}
    if groups is not None:
        body["groups"] = [
            {"value": g.id, "display": g.display, "$ref": f"{base_url}/Groups/{g.id}", "type": "direct"} for g in groups
        ]
    body["meta"] = _meta("User", f"{base_url}/Users/{user.id}", user.created_at, user.updated_at, user.version)
    return body


def render_group(group: DirectoryGroup, *, base_url: str, members: Iterable[Member] | None) -> dict[str, Any]:
    raw = dict(group.raw_attributes)
    schemas = raw.pop("schemas", None) or [GROUP_SCHEMA]
    body: dict[str, Any] = {"schemas": schemas, "id": group.id, **raw}
    if members is not None:
        body["members"] = [
            {"value": m.id, "display": m.display, "$ref": f"{base_url}/Users/{m.id}", "type": "User"} for m in members
        ]
    body["meta"] = _meta("Group", f"{base_url}/Groups/{group.id}", group.created_at, group.updated_at, group.version)
    return body


# -- attributes / excludedAttributes (RFC 7644 §3.4.2.5) -------------------------------------------------------

_ALWAYS_RETURNED = frozenset({"id", "schemas"})


def _split(path: str, schema_urns: Iterable[str]) -> tuple[str | None, list[str]]:
    """``urn:…:User:name.givenName`` → (urn, ["name", "givenName"]); core URNs are dropped."""
    lowered = path.lower()
    for urn in sorted(schema_urns, key=len, reverse=True):
        if lowered.startswith(urn.lower() + ":"):
            rest = path[len(urn) + 1 :]
            return (None if urn in (USER_SCHEMA, GROUP_SCHEMA) else urn), rest.split(".")
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


def project(body: dict[str, Any], *, attributes: list[str] | None, excluded: list[str] | None) -> dict[str, Any]:
    """Apply ``attributes`` (keep only these, plus id and schemas) or ``excludedAttributes``."""
    urns = [u for u in body.get("schemas", []) if isinstance(u, str)] + [USER_SCHEMA, GROUP_SCHEMA]
    if attributes:
        result: dict[str, Any] = {k: body[k] for k in _ALWAYS_RETURNED if k in body}
        for path in attributes:
            urn, parts = _split(path, urns)
            source = body.get(urn, {}) if urn else body
            picked = _pick(source, parts) if parts else copy.deepcopy(source)
            if picked in (None, {}, []):
                continue
            _merge(result, {urn: picked} if urn else picked)
        return result
    if excluded:
        result = copy.deepcopy(body)
        for path in excluded:
            urn, parts = _split(path, urns)
            if not urn and parts and parts[0].lower() in _ALWAYS_RETURNED:
                continue
            if urn and not parts:
                result.pop(urn, None)
            else:
                _remove(result.get(urn) if urn else result, parts)
        return result
    return body


def mentions(paths: list[str] | None, attribute: str) -> bool:
    """Whether an attributes/excludedAttributes list names ``attribute`` (or one of its sub-attributes)."""
    target = attribute.lower()
    for path in paths or []:
        tail = path.rsplit(":", 1)[-1].lower()
        if tail == target or tail.startswith(target + "."):
            return True
    return False
