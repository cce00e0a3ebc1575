"""From a normalised SCIM resource to the table columns derived from it (what the store indexes and WorkOS shows)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.store.models import DirectoryType, UserState
from scim.protocol import urns

# Enterprise extension attributes surfaced as WorkOS-style custom attributes.
_CUSTOM_FROM_ENTERPRISE = {
    "employeeNumber": "employee_number",
    "costCenter": "cost_center",
    "organization": "organization",
    "division": "division",
    "department": "department",
}


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
    enterprise = raw.get(urns.ENTERPRISE_USER)
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
