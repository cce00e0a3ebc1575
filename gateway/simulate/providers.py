"""How each identity provider talks SCIM 2.0: the requests it sends first, its body shapes and its PATCH style.

A ``Provider`` holds only pure functions from roster entries to request bodies; ``gateway.simulate.session`` plays
the same session with any of them. The shapes follow what these providers send to SCIM 2.0 applications (see the
replayed sessions in ``tests/scim/test_*_session.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.simulate.roster import Person, Roster, Team

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# Entra declares this Microsoft schema next to the core one when it creates a group.
ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"

Json = dict[str, Any]
Members = Sequence[tuple[str, Person]]  # (SCIM id, person)
Removal = Literal["deactivate", "delete"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # relative to the SCIM endpoint: "Users", "Groups/{id}", "ServiceProviderConfig"
    params: dict[str, str] | None = None
    body: Json | None = None


@dataclass(frozen=True)
class Provider:
    name: str
    title: str
    connection_test: Callable[[Roster], list[Request]]
    creates_test_objects: bool  # Test Connection also creates and deletes a user and a group
    user_lookup: Callable[[Person], dict[str, str]]  # query parameters of the lookup before each create
    user_body: Callable[[Person], Json]
    group_lookup: Callable[[Team], dict[str, str]]
    group_body: Callable[[Team], Json]
    add_members: Callable[[str, str, Members], Json]  # (group id, group name, members) -> PATCH body
    members_per_request: int
    remove_member: Callable[[str, str, str], Json]  # (group id, group name, user id) -> PATCH body
    rename_group: Callable[[str, str], Json]  # (group id, new name) -> PATCH body
    update_user: Callable[[str, Person, Person], tuple[str, Json]]  # (id, before, after) -> (method, body)
    deactivate: Json  # PATCH body
    removal: tuple[Removal, ...]  # what unassigning a user sends
    reads_before_update: bool = False
    link_manager: Callable[[str], Json] | None = None  # (manager id) -> PATCH body, sent once both exist
    unpushes_group: bool = False  # removal also deletes a pushed group


def patch(*operations: Json) -> Json:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def _eq(attribute: str, value: str) -> str:
    return f'{attribute} eq "{value}"'


def _guid(key: int) -> str:
    return str(uuid.UUID(int=key))


def _base62(key: int, length: int) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    digits = []
    for _ in range(length):
        key, digit = divmod(key, 62)
        digits.append(alphabet[digit])
    return "".join(digits)


_CITIES = ("Boulder", "Denver", "Austin", "Toronto", "Dublin", "Berlin", "Lisbon", "Singapore")


# -- JumpCloud: Test Connection looks up a test user, creates and deletes a user and a group; PUT for profile
# changes, one PATCH per membership change, DELETE when a user is unassigned.


def _jumpcloud_user(person: Person) -> Json:
    return {
        "schemas": [USER, ENTERPRISE],
        "externalId": f"{person.key >> 32:024x}",
        "userName": person.user_name,
        "name": {"givenName": person.first_name, "familyName": person.last_name, "formatted": person.display_name},
        "displayName": person.display_name,
        "title": person.title,
        "active": True,
        "emails": [{"value": person.user_name, "type": "work", "primary": True}],
        "phoneNumbers": [{"value": f"tel:+1-555-01{person.index % 100:02d}", "type": "work"}],
        "addresses": [{"type": "work", "locality": _CITIES[person.key % len(_CITIES)], "country": "US"}],
        ENTERPRISE: {"department": person.department, "employeeNumber": person.employee_number},
    }


def _jumpcloud_connection_test(roster: Roster) -> list[Request]:
    return [
        Request("GET", "ServiceProviderConfig"),
        Request("GET", "Users", {"filter": _eq("userName", roster.test_person.user_name)}),
    ]


JUMPCLOUD = Provider(
    name="jumpcloud",
    title="JumpCloud",
    connection_test=_jumpcloud_connection_test,
    creates_test_objects=True,
    user_lookup=lambda person: {"filter": _eq("userName", person.user_name)},
    user_body=_jumpcloud_user,
    group_lookup=lambda team: {"filter": _eq("displayName", team.name)},
    group_body=lambda team: {"schemas": [GROUP], "displayName": team.name, "externalId": f"{team.key >> 32:024x}"},
    add_members=lambda _gid, _name, members: patch(
        {"op": "add", "path": "members", "value": [{"value": user_id} for user_id, _ in members]}
    ),
    members_per_request=1,
    remove_member=lambda _gid, _name, user_id: patch({"op": "remove", "path": f"members[{_eq('value', user_id)}]"}),
    rename_group=lambda gid, name: patch({"op": "replace", "value": {"id": gid, "displayName": name}}),
    update_user=lambda _id, _before, after: ("PUT", _jumpcloud_user(after)),
    deactivate=patch({"op": "replace", "path": "active", "value": False}),
    removal=("delete",),
)


# -- Okta: a two-user listing as the connection test, lookups with paging parameters, a password and "active" on
# create, full PUT for profile pushes, Push Groups PATCHes that re-assert the group's id and name, path-less
# replaces for activation; users are never deleted (unassignment deactivates), unpushed groups are.


def _okta_user(person: Person) -> Json:
    return {
        "schemas": [USER],
        "userName": person.user_name,
        "name": {"givenName": person.first_name, "familyName": person.last_name},
        "emails": [{"primary": True, "value": person.user_name, "type": "work"}],
        "displayName": person.display_name,
        "title": person.title,
        "locale": "en-US",
        "externalId": f"00u{_base62(person.key, 17)}",
        "groups": [],
        "password": _base62(person.key >> 64, 12),
        "active": True,
    }


def _okta_put(user_id: str, _before: Person, after: Person) -> tuple[str, Json]:
    body = {key: value for key, value in _okta_user(after).items() if key != "password"}
    return "PUT", {**body, "id": user_id}


def _okta_group_ref(gid: str, name: str) -> Json:
    return {"op": "replace", "value": {"id": gid, "displayName": name}}


OKTA = Provider(
    name="okta",
    title="Okta",
    connection_test=lambda _roster: [Request("GET", "Users", {"startIndex": "1", "count": "2"})],
    creates_test_objects=False,
    user_lookup=lambda person: {"filter": _eq("userName", person.user_name), "startIndex": "1", "count": "100"},
    user_body=_okta_user,
    group_lookup=lambda team: {"filter": _eq("displayName", team.name), "startIndex": "1", "count": "100"},
    group_body=lambda team: {"schemas": [GROUP], "displayName": team.name, "members": []},
    add_members=lambda gid, name, members: patch(
        _okta_group_ref(gid, name),
        {
            "op": "add",
            "path": "members",
            "value": [{"value": user_id, "display": person.user_name} for user_id, person in members],
        },
    ),
    members_per_request=25,
    remove_member=lambda gid, name, user_id: patch(
        _okta_group_ref(gid, name), {"op": "remove", "path": f"members[{_eq('value', user_id)}]"}
    ),
    rename_group=lambda gid, name: patch(_okta_group_ref(gid, name)),
    update_user=_okta_put,
    deactivate=patch({"op": "replace", "value": {"active": False}}),
    removal=("deactivate",),
    unpushes_group=True,
)


# -- Microsoft Entra ID (default dialect): Test Connection looks up random GUIDs, groups are looked up without
# members, capitalised ops with one operation per changed attribute, booleans as strings, the manager linked once
# both users exist, a read before each update, soft delete (active "False") before the hard DELETE.


def _entra_user(person: Person) -> Json:
    return {
        "schemas": [USER, ENTERPRISE],
        "externalId": person.user_name.partition("@")[0],
        "userName": person.user_name,
        "active": True,
        "displayName": person.display_name,
        "title": person.title,
        "emails": [{"primary": True, "type": "work", "value": person.user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": person.display_name, "familyName": person.last_name, "givenName": person.first_name},
        "addresses": [
            {"type": "work", "country": "US", "locality": _CITIES[person.key % len(_CITIES)], "primary": False}
        ],
        "roles": [],
        ENTERPRISE: {"department": person.department, "employeeNumber": person.employee_number},
    }


def _entra_update(_id: str, before: Person, after: Person) -> tuple[str, Json]:
    changes = [
        ("displayName", before.display_name, after.display_name),
        ("name.familyName", before.last_name, after.last_name),
        ("title", before.title, after.title),
        (f"{ENTERPRISE}:department", before.department, after.department),
    ]
    return "PATCH", patch(*({"op": "Replace", "path": p, "value": new} for p, old, new in changes if old != new))


def _entra_connection_test(roster: Roster) -> list[Request]:
    return [
        Request("GET", "Users", {"filter": _eq("userName", _guid(roster.probe_key))}),
        Request(
            "GET",
            "Groups",
            {"excludedAttributes": "members", "filter": _eq("displayName", _guid(roster.probe_key ^ 1))},
        ),
    ]


ENTRA = Provider(
    name="entra",
    title="Microsoft Entra ID",
    connection_test=_entra_connection_test,
    creates_test_objects=False,
    user_lookup=lambda person: {"filter": _eq("userName", person.user_name)},
    user_body=_entra_user,
    group_lookup=lambda team: {"excludedAttributes": "members", "filter": _eq("displayName", team.name)},
    group_body=lambda team: {
        "schemas": [GROUP, ADSCIM_GROUP],
        "externalId": _guid(team.key),
        "displayName": team.name,
        "meta": {"resourceType": "Group"},
    },
    add_members=lambda _gid, _name, members: patch(
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": user_id} for user_id, _ in members]}
    ),
    members_per_request=10,
    remove_member=lambda _gid, _name, user_id: patch(
        {"op": "Remove", "path": "members", "value": [{"value": user_id}]}
    ),
    rename_group=lambda _gid, name: patch({"op": "Replace", "path": "displayName", "value": name}),
    update_user=_entra_update,
    deactivate=patch({"op": "Replace", "path": "active", "value": "False"}),
    removal=("deactivate", "delete"),
    reads_before_update=True,
    link_manager=lambda manager_id: patch({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager_id}),
)

PROVIDERS: dict[str, Provider] = {provider.name: provider for provider in (JUMPCLOUD, OKTA, ENTRA)}
