"""``/Groups`` and ``/Groups/{id}``: what a Group's create, replace and patch do, members included, on
``scim.api.resources``' skeleton."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.store.batch_driver import Later, mapped
from gateway.store.models import Directory, DirectoryGroup
from scim.api.calls import Call
from scim.api.resources import Collection, Item, Patched
from scim.backend.groups import (
    GROUPS,
    add_members_unread,
    add_one_member_unread,
    apply_member_changes,
    create_group,
    replace_members,
    save_group,
)
from scim.backend.resources import Outcome, rendered
from scim.protocol.errors import ScimError
from scim.protocol.limits import Limits
from scim.protocol.normalize import member_values, normalize_resource
from scim.protocol.render import Member, etag

# A group's body: its attributes, and its members (in a replacement, None when not asserted).
_New = tuple[dict[str, Any], list[Member]]
_Body = tuple[dict[str, Any], list[Member] | None]


def _members_of(document: dict[str, Any]) -> Any:
    return next((v for k, v in document.items() if k.lower() == "members"), None)


def _group(document: dict[str, Any], limits: Limits) -> dict[str, Any]:
    raw = normalize_resource(document, resource="Group")
    limits.check_values(raw)
    return raw


def _new_group(document: dict[str, Any], limits: Limits) -> _New:
    return _group(document, limits), member_values(_members_of(document))


def _replacement(document: dict[str, Any], limits: Limits) -> _Body:
    # An omitted `members` is not asserted (RFC 7644 §3.5.1): memberships stay; `[]` empties the group.
    asserted = any(k.lower() == "members" for k in document)
    return _group(document, limits), member_values(_members_of(document)) if asserted else None


def _create(session: Session, directory: Directory, body: _New, call: Call) -> Outcome:
    raw, members = body
    group = create_group(session, directory=directory, raw=raw, members=members)
    return rendered(session, GROUPS, group, view=call, status=201)


def _replace(session: Session, directory: Directory, group: DirectoryGroup, body: _Body, call: Call) -> Outcome:
    raw, members = body
    save_group(session, directory=directory, group=group, raw=raw)
    if members is not None:
        replace_members(session, directory=directory, group=group, members=members)
    return rendered(session, GROUPS, group, view=call)


def _patch(session: Session, directory: Directory, group: DirectoryGroup, patched: Patched, call: Call) -> Outcome:
    if patched.raw is not None:
        save_group(session, directory=directory, group=group, raw=patched.raw)
    changes = patched.changes
    apply_member_changes(session, directory=directory, group=group, changes=changes)
    # 204 unless the request asks for attributes/excludedAttributes, then 200 with the projected group (RFC 7644
    # §3.5.2 allows either): a 10,000-member group is never rendered to add one member.
    if call.attributes is None and call.excluded is None:
        return Outcome(None, 204, etag(group.version))
    return rendered(session, GROUPS, group, view=call)


def _add_unread(
    session: Session, directory: Directory, group_id: str, members: list[Member]
) -> Outcome | ScimError | Later[Outcome | ScimError]:
    """A PATCH adding members without reading the group first (``add_members_unread`` on PostgreSQL: one statement,
    perhaps sent with others; ``add_one_member_unread`` on SQLite); 204 as ``_patch`` answers."""

    def answer(group: DirectoryGroup | None) -> Outcome | ScimError:
        if group is None:
            return ScimError(404, f"Group {group_id} not found")
        return Outcome(None, 204, etag(group.version))

    if session.get_bind().dialect.name == "postgresql":
        return mapped(add_members_unread(session, directory=directory, group_id=group_id, members=members), answer)
    return answer(add_one_member_unread(session, directory=directory, group_id=group_id, members=members))


class GroupsEndpoint(Collection[DirectoryGroup]):
    kind = GROUPS

    async def post(self, request: Request) -> Response:
        return await self.create(request, _new_group, _create)


class GroupEndpoint(Item[DirectoryGroup]):
    kind = GROUPS

    async def put(self, request: Request) -> Response:
        # Not light: asserted members are compared with every stored one, as many as the group is large.
        return await self.change(request, _replacement, _replace)

    async def patch(self, request: Request) -> Response:
        return await self.patched(request, _patch, add_unread=_add_unread)
