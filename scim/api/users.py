"""``/Users`` and ``/Users/{id}``: what a User's create, replace and patch do, on ``scim.api.resources``' skeleton."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.store.models import Directory, DirectoryUser
from scim.api.calls import Call
from scim.api.resources import Collection, Item, Patched
from scim.backend.resources import Outcome, rendered
from scim.backend.users import USERS, create_user, save_user
from scim.protocol.limits import Limits
from scim.protocol.normalize import normalize_resource


def _user(document: dict[str, Any], limits: Limits) -> dict[str, Any]:
    raw = normalize_resource(document, resource="User")
    limits.check_values(raw)
    return raw


def _create(session: Session, directory: Directory, raw: dict[str, Any], call: Call) -> Outcome:
    user = create_user(session, directory=directory, raw=raw)
    return rendered(session, USERS, user, view=call, status=201, related=[])  # a new user is in no group


def _replace(session: Session, directory: Directory, user: DirectoryUser, raw: dict[str, Any], call: Call) -> Outcome:
    save_user(session, directory=directory, user=user, raw=raw)
    return rendered(session, USERS, user, view=call)


def _patch(session: Session, directory: Directory, user: DirectoryUser, patched: Patched, call: Call) -> Outcome:
    if patched.raw is None:  # nothing changed
        return rendered(session, USERS, user, view=call)
    return _replace(session, directory, user, patched.raw, call)


class UsersEndpoint(Collection[DirectoryUser]):
    kind = USERS

    async def post(self, request: Request) -> Response:
        return await self.create(request, _user, _create)


class UserEndpoint(Item[DirectoryUser]):
    kind = USERS

    async def put(self, request: Request) -> Response:
        return await self.change(request, _user, _replace, light=True, together=True)

    async def patch(self, request: Request) -> Response:
        return await self.patched(request, _patch)
