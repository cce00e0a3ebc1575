"""Bodies no identity provider sends, each refused with 400 and nothing written (README "SCIM conformance"): the
IdP session tests play them amid their real traffic, so strictness and the tolerances they rely on are checked
together."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from gateway.store.database import Database
from gateway.store.models import DirectoryGroup, DirectoryUser, Event, GroupMembership

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"

# (method, resource path, body): a user's or group's id fills ``{user}`` / ``{group}``.
ODD_FORMS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "Users", {"schemas": [GROUP], "displayName": "Posted to Users", "userName": "odd1@acme.test"}),
    ("POST", "Groups", {"schemas": [USER], "displayName": "Posted to Groups"}),
    ("POST", "Users", {"schemas": USER, "userName": "odd2@acme.test"}),
    ("POST", "Users", {"schemas": [USER], "userName": "odd7@acme.test", GROUP: {"displayName": "Nested"}}),
    ("POST", "Users", {"schemas": [USER], "userName": 31337}),
    ("POST", "Users", {"schemas": [USER], "userName": "odd3@acme.test", "displayName": 7}),
    ("POST", "Groups", {"schemas": [GROUP], "displayName": 42}),
    ("POST", "Users", {"schemas": [USER], "userName": "odd4@acme.test", "emails": {"value": "odd4@acme.test"}}),
    ("POST", "Users", {"schemas": [USER], "userName": "odd5@acme.test", "phoneNumbers": {"value": "+1 555 0100"}}),
    ("POST", "Groups", {"schemas": [GROUP], "displayName": "Lone member", "members": {"value": "{user}"}}),
    ("PUT", "Users/{user}", {"schemas": [GROUP], "userName": "odd6@acme.test"}),
    ("PUT", "Groups/{group}", {"schemas": [GROUP], "displayName": "Odd", "members": {"value": "{user}"}}),
]


async def _counts(database: Database) -> list[int]:
    async with database.read() as session:
        return [
            await session.scalar(select(func.count()).select_from(model)) or 0
            for model in (DirectoryUser, DirectoryGroup, GroupMembership, Event)
        ]


def _filled(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _filled(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, ids) for v in value]
    return value


async def assert_odd_forms_refused(
    client: httpx.AsyncClient, database: Database, *, base: str, headers: dict[str, str], user: str, group: str
) -> None:
    """Each odd form answers 400 (``invalidValue`` or ``invalidSyntax``) and writes no row and no event."""
    before = await _counts(database)
    ids = {"user": user, "group": group}
    for method, path, body in ODD_FORMS:
        response = await client.request(
            method, f"{base}/{path.format(**ids)}", json=_filled(body, ids), headers=headers
        )
        assert response.status_code == 400, (method, path, body, response.text)
        assert response.json()["scimType"] in ("invalidValue", "invalidSyntax"), response.text
    assert await _counts(database) == before
