"""Store rows as WorkOS objects (``directory``, ``directory_user``, ``directory_group``, ``event``,
``webhook_endpoint``): the event payloads' shapes (gateway/events/payloads.py), plus what WorkOS's objects carry that
the log's payloads do not.
A field WorkOS has and the gateway does not store gets WorkOS's empty value (``""``, ``[]``, ``null``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.events.payloads import EventName, group_payload, iso, user_payload
from gateway.store.models import DirectoryType

# WorkOS spells one provider differently from the store's type string (which the event log already carries).
_WORKOS_TYPES = {DirectoryType.JUMPCLOUD.value: "jump cloud scim v2.0"}
_DIRECTORY_EVENTS = frozenset({EventName.ACTIVATED.value, EventName.DELETED.value})
_USER_EVENTS = frozenset({"dsync.user.created", "dsync.user.updated", "dsync.user.deleted"})
_MEMBERSHIP_EVENTS = frozenset({EventName.GROUP_USER_ADDED.value, EventName.GROUP_USER_REMOVED.value})


def directory_type(value: str) -> str:
    """The directory type as WorkOS names it."""
    return _WORKOS_TYPES.get(value, value)


def directory_object(directory: Any) -> dict[str, Any]:
    """A ``directories`` row as WorkOS's ``directory``."""
    return {
        "object": "directory",
        "id": directory.id,
        "organization_id": directory.organization_id,
        "external_key": "",  # WorkOS's key for its own hosted endpoint: the gateway has none
        "type": directory_type(directory.type),
        "state": directory.state,
        "name": directory.name,
        "domain": None,
        "created_at": iso(directory.created_at),
        "updated_at": iso(directory.updated_at),
    }


def group_object(group: Any, *, organization_id: str) -> dict[str, Any]:
    """A ``directory_groups`` row as WorkOS's ``directory_group``."""
    return dict(group_payload(group, organization_id=organization_id))


def user_object(user: Any, *, organization_id: str, groups: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A ``directory_users`` row with its groups (WorkOS objects) as WorkOS's ``directory_user``."""
    payload = _user_fields(dict(user_payload(user, organization_id=organization_id)))
    payload["groups"] = list(groups)
    return payload


def _user_fields(user: dict[str, Any]) -> dict[str, Any]:
    # WorkOS's idp_id is a string: a user the IdP sent without externalId has the empty one.
    if user.get("idp_id") is None:
        user["idp_id"] = ""
    # Events logged before roles existed: WorkOS's empty values.
    user.setdefault("role", None)
    user.setdefault("roles", [])
    return user


def event_object(row: Any) -> dict[str, Any]:
    """An event log row as WorkOS's ``event``."""
    return {
        "object": "event",
        "id": row.id,
        "event": row.event,
        "data": _event_data(row.event, dict(row.data)),
        "created_at": iso(row.created_at),
    }


def _event_data(event: str, data: dict[str, Any]) -> dict[str, Any]:
    if event in _DIRECTORY_EVENTS:
        data["type"] = directory_type(data.get("type", ""))
        data.setdefault("external_key", "")
        if event == EventName.ACTIVATED.value:
            # WorkOS's organization domains have ids; the gateway's are plain names.
            data["domains"] = [{"id": "", **domain} for domain in data.get("domains", [])]
    elif event in _USER_EVENTS:
        data = _user_fields(data)
    elif event in _MEMBERSHIP_EVENTS and isinstance(data.get("user"), dict):
        data["user"] = _user_fields(dict(data["user"]))
    return data


def webhook_endpoint_object(endpoint: Any, *, secret: str = "") -> dict[str, Any]:
    """A ``webhook_endpoints`` row as WorkOS's ``webhook_endpoint``. The signing secret is shown once, when the
    endpoint is created; every later answer carries WorkOS's empty string in its place (the SDKs require the field).
    ``events`` empty means every event."""
    return {
        "object": "webhook_endpoint",
        "id": endpoint.id,
        "endpoint_url": endpoint.url,
        "secret": secret,
        "status": "enabled" if endpoint.enabled else "disabled",
        "events": list(endpoint.events),
        "organization_id": endpoint.organization_id,
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }
