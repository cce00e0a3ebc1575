"""The events' names and their WorkOS-compatible payloads: one typed definition for whoever writes the log (SCIM,
the operations) and whoever reads it (GraphQL, subscriptions, later webhooks and the WorkOS API).

Payloads are stored as JSON, so they are ``TypedDict``s: the writer builds them with the functions below, and a
reader gets them back typed through :func:`user_of` / :func:`group_of` instead of probing keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter, itemgetter
from typing import Any, Literal, NotRequired, TypedDict, cast

from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, Organization
from gateway.store.serialization import Encoded, dumps_bytes, encoded

# The most one event stores (its data as JSON). A SCIM body may be 2 MiB, and an update used to carry it whole (and
# its changed keys again in previous_attributes): above this the raw attributes are left out (see ``bounded``).
MAX_EVENT_BYTES = 64 * 1024


class EventName(StrEnum):
    """Every event the log holds, named as WorkOS names them."""

    ACTIVATED = "dsync.activated"
    DELETED = "dsync.deleted"
    USER_CREATED = "dsync.user.created"
    USER_UPDATED = "dsync.user.updated"
    USER_DELETED = "dsync.user.deleted"
    GROUP_CREATED = "dsync.group.created"
    GROUP_UPDATED = "dsync.group.updated"
    GROUP_DELETED = "dsync.group.deleted"
    GROUP_USER_ADDED = "dsync.group.user_added"
    GROUP_USER_REMOVED = "dsync.group.user_removed"


class DomainData(TypedDict):
    """One of the organization's domains, as ``dsync.activated`` lists them."""

    object: Literal["organization_domain"]
    domain: str


class DirectoryData(TypedDict):
    """``dsync.activated`` and ``dsync.deleted``."""

    object: Literal["directory"]
    id: str
    organization_id: str
    name: str
    type: str
    state: str
    created_at: str
    updated_at: str
    domains: NotRequired[list[DomainData]]


class RoleData(TypedDict):
    """A role as WorkOS shows it on a directory user."""

    slug: str


class UserData(TypedDict):
    """``dsync.user.*``; ``previous_attributes`` on updates only."""

    object: Literal["directory_user"]
    id: str
    directory_id: str
    organization_id: str
    idp_id: str | None
    username: str
    email: str | None
    emails: list[dict[str, Any]]
    first_name: str | None
    last_name: str | None
    display_name: str | None
    job_title: str | None
    state: str
    role: RoleData | None
    roles: list[RoleData]
    custom_attributes: dict[str, Any]
    raw_attributes: dict[str, Any]
    created_at: str
    updated_at: str
    previous_attributes: NotRequired[dict[str, Any]]


class GroupData(TypedDict):
    """``dsync.group.created|updated|deleted``; ``previous_attributes`` on updates only."""

    object: Literal["directory_group"]
    id: str
    idp_id: str
    directory_id: str
    organization_id: str
    name: str
    raw_attributes: dict[str, Any]
    created_at: str
    updated_at: str
    previous_attributes: NotRequired[dict[str, Any]]


class MembershipData(TypedDict):
    """``dsync.group.user_added`` and ``dsync.group.user_removed``."""

    directory_id: str
    user: UserData
    group: GroupData


EventData = DirectoryData | UserData | GroupData | MembershipData

_USER_EVENTS = frozenset({EventName.USER_CREATED, EventName.USER_UPDATED, EventName.USER_DELETED})
_GROUP_EVENTS = frozenset({EventName.GROUP_CREATED, EventName.GROUP_UPDATED, EventName.GROUP_DELETED})
_MEMBERSHIP_EVENTS = frozenset({EventName.GROUP_USER_ADDED, EventName.GROUP_USER_REMOVED})


def iso(value: datetime) -> str:
    """A timestamp as WorkOS writes it: UTC, milliseconds, ``Z``."""
    # SQLite hands back naive datetimes; everything is stored in UTC. Naive and UTC values (every event payload has
    # two) are formatted as they are: converting them first cost more than the formatting.
    if value.tzinfo is None:
        return f"{value.isoformat(timespec='milliseconds')}Z"
    if value.tzinfo is UTC:
        return f"{value.isoformat(timespec='milliseconds')[:-6]}Z"  # without its "+00:00"
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def directory_payload(directory: Directory, *, organization: Organization | None = None) -> DirectoryData:
    """The directory as its events carry it (with the organization's domains when given)."""
    payload: DirectoryData = {
        "object": "directory",
        "id": directory.id,
        "organization_id": directory.organization_id,
        "name": directory.name,
        "type": directory.type,
        "state": directory.state,
        "created_at": iso(directory.created_at),
        "updated_at": iso(directory.updated_at),
    }
    if organization is not None:
        payload["domains"] = [{"object": "organization_domain", "domain": d} for d in organization.domains]
    return payload


_USER_FIELDS = (
    "id",
    "directory_id",
    "idp_id",
    "user_name",
    "email",
    "emails",
    "first_name",
    "last_name",
    "display_name",
    "job_title",
    "state",
    "role",
    "roles",
    "custom_attributes",
    "raw_attributes",
    "created_at",
    "updated_at",
)
_user_row = itemgetter(*_USER_FIELDS)
_user_model = attrgetter(*_USER_FIELDS)


def user_payload(user: DirectoryUser | dict[str, Any], *, organization_id: str) -> UserData:
    """The user as its events (and membership events) carry it; ``user`` may be its row (by column name) as a write
    has it at hand: no model built just to be read here."""
    (
        user_id,
        directory_id,
        idp_id,
        user_name,
        email,
        emails,
        first_name,
        last_name,
        display_name,
        job_title,
        state,
        role,
        roles,
        custom_attributes,
        raw_attributes,
        created_at,
        updated_at,
    ) = _user_row(user) if isinstance(user, dict) else _user_model(user)
    return {
        "object": "directory_user",
        "id": user_id,
        "directory_id": directory_id,
        "organization_id": organization_id,
        "idp_id": idp_id,
        "username": user_name,
        "email": email,
        "emails": emails,
        "first_name": first_name,
        "last_name": last_name,
        "display_name": display_name,
        "job_title": job_title,
        "state": state,
        "role": {"slug": role} if role else None,
        "roles": [{"slug": slug} for slug in roles or ()],
        "custom_attributes": custom_attributes,
        "raw_attributes": raw_attributes,
        "created_at": iso(created_at),
        "updated_at": iso(updated_at),
    }


def group_payload(group: DirectoryGroup, *, organization_id: str) -> GroupData:
    """The group as its events (and membership events) carry it."""
    return {
        "object": "directory_group",
        "id": group.id,
        "idp_id": group.idp_id,
        "directory_id": group.directory_id,
        "organization_id": organization_id,
        "name": group.name,
        "raw_attributes": group.raw_attributes,
        "created_at": iso(group.created_at),
        "updated_at": iso(group.updated_at),
    }


def membership_payload(user: UserData, group: GroupData) -> MembershipData:
    """One membership edge that was added or removed."""
    return {"directory_id": group["directory_id"], "user": user, "group": group}


_NOT_COMPARED = frozenset({"updated_at", "created_at"})


def previous_attributes(before: UserData | GroupData, after: UserData | GroupData) -> dict[str, Any]:
    """Shallow diff: the old value of every top-level field that changed; for ``raw_attributes`` (and
    ``custom_attributes``) the old values of their changed keys, as WorkOS reports them."""
    old_fields = cast(dict[str, Any], before)
    new_fields = cast(dict[str, Any], after)
    previous: dict[str, Any] = {}
    for key, old in old_fields.items():
        if key in _NOT_COMPARED or new_fields.get(key) == old:
            continue
        new = new_fields.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            previous[key] = {k: old.get(k) for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        else:
            previous[key] = old
    return previous


def user_of(event: str, data: dict[str, Any]) -> UserData | None:
    """The user an event is about (user and membership events), read back from the log."""
    if event in _USER_EVENTS:
        return cast(UserData, data)
    if event in _MEMBERSHIP_EVENTS:
        return cast(MembershipData, data)["user"]
    return None


def group_of(event: str, data: dict[str, Any]) -> GroupData | None:
    """The group an event is about (group and membership events), read back from the log."""
    if event in _GROUP_EVENTS:
        return cast(GroupData, data)
    if event in _MEMBERSHIP_EVENTS:
        return cast(MembershipData, data)["group"]
    return None


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    """``data`` with ``key`` emptied in it, in the user and group it embeds, and dropped from previous_attributes."""
    trimmed = dict(data)
    if key in trimmed:
        trimmed[key] = {}
    for nested in ("user", "group"):
        if isinstance(trimmed.get(nested), dict):
            trimmed[nested] = _without(trimmed[nested], key)
    previous = trimmed.get("previous_attributes")
    if isinstance(previous, dict) and key in previous:
        trimmed["previous_attributes"] = {k: v for k, v in previous.items() if k != key}
    return trimmed


def stored(data: EventData) -> Encoded:
    """The payload as the log stores it, encoded once (the insert writes these bytes as they are): whole when it fits
    ``MAX_EVENT_BYTES``; else without the raw attributes (``raw_attributes`` then reads ``{}``, as WorkOS itself
    sends it since it deprecated the field), then without the custom attributes. The typed fields (names, emails,
    state, ...) and their previous values always stay."""
    whole = dumps_bytes(data)
    if len(whole) <= MAX_EVENT_BYTES:
        return encoded(whole)
    trimmed = _without(cast(dict[str, Any], data), "raw_attributes")
    text = dumps_bytes(trimmed)
    if len(text) > MAX_EVENT_BYTES:
        text = dumps_bytes(_without(trimmed, "custom_attributes"))
    return encoded(text)
