"""The endpoints of a SCIM resource type (RFC 7644 §3.2–3.6), one skeleton for Users and Groups.

``Collection`` answers ``/Users`` and ``/Groups`` (list, create), ``Item`` answers ``/Users/{id}`` and
``/Groups/{id}`` (read, replace, patch, delete). ``scim.api.users`` and ``scim.api.groups`` give each its resource
kind and what really differs: how a body is read, and what a create, replace or patch does to the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.ops.costly_work import CostlyWork
from gateway.store.batch_driver import Later, mapped
from gateway.store.models import Directory, DirectoryUser
from gateway.store.prepared import Reader
from scim.api.calls import Call, Parsed, database_of, limits_of, parse_body, respond, settings_of
from scim.api.http import ListParams, ScimEndpoint, list_params, scim_response
from scim.backend.lookups import Found, find_by, find_by_id, reads_related, render, rendered_one
from scim.backend.resources import (
    NO_CONTENT,
    Outcome,
    R,
    ResourceKind,
    delete_resource,
    list_resources,
    read_resource,
    read_resource_together,
    render_resources,
)
from scim.backend.users import delete_user_by_id
from scim.protocol import urns
from scim.protocol.errors import ScimError
from scim.protocol.filter_sql import translate_filter
from scim.protocol.filters import Compare, as_lookup, parse_filter
from scim.protocol.limits import Limits, patch_work
from scim.protocol.patch import MemberChange, Operation, apply_patch, member_changes_only, parse_patch
from scim.protocol.render import Member, check_if_match, etag
from scim.protocol.schemas import Resource

P = TypeVar("P")
# What a create does with a parsed body, or a replace or patch with the resource (its If-Match already checked).
Create = Callable[[Session, Directory, P, Call], Outcome]
Change = Callable[[Session, Directory, R, P, Call], Outcome]
Parse = Callable[[dict[str, Any], Limits], P]  # a request body (a JSON object) to what the change needs
# A PATCH's attempts at applying its operations outside the write job before the last one applies them inside it.
_PATCH_ATTEMPTS = 3
# Values a PATCH reads (``patch_work``) from which it is applied in a costly-work process: a few milliseconds of CPU
# (the largest allowed, 100 filtered operations on 100 values, reads ~10,000), well above what IdPs send (tens).
_PROCESS_WORK = 1_000


@dataclass(frozen=True, slots=True)
class _View:
    """What a list page's resources show (``scim.backend.resources.View``)."""

    base_url: str
    attributes: list[str] | None
    excluded: list[str] | None


@dataclass(frozen=True, slots=True)
class Patched:
    """A PATCH applied to the resource's attributes: the new ones (None when unchanged) and its member changes."""

    raw: dict[str, Any] | None
    changes: list[MemberChange]


Save = Callable[[Session, Directory, R, Patched, Call], Outcome]
# A PATCH that only adds members, applied without reading the resource first (its id, the members): the answer, or
# the 404 when there is no such resource.
AddUnread = Callable[[Session, Directory, str, list[Member]], Outcome | ScimError | Later[Outcome | ScimError]]


class _Conflict:
    """The resource changed between the PATCH's read and its write: apply it again to what is stored now."""


_CONFLICT = _Conflict()


def listing(
    session: Session, kind: ResourceKind[R], directory: Directory, params: ListParams, *, base_url: str
) -> Outcome:
    """A ListResponse page (RFC 7644 §3.4.2): a GET on the collection, or a POST to its ``.search``."""
    where = None
    if params.filter is not None:
        dialect = session.get_bind().dialect.name
        where = translate_filter(
            parse_filter(params.filter), resource=kind.name, dialect=dialect, directory_id=directory.id
        )
    total, rows = list_resources(
        session, kind, directory_id=directory.id, where=where, start_index=params.start_index, count=params.count
    )
    resources = render_resources(
        session, kind, rows, base_url=base_url, attributes=params.attributes, excluded=params.excluded
    )
    body = {
        "schemas": [urns.LIST_RESPONSE],
        "totalResults": total,
        "startIndex": params.start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
    return Outcome(body)


class Collection(ScimEndpoint, Generic[R]):
    kind: ResourceKind[R]

    async def get(self, request: Request) -> Response:
        params = list_params(request.query_params, settings_of(request))
        call, kind = Call(request), self.kind
        node = as_lookup(params.filter, resource=kind.name) if params.start_index == 1 and params.count else None
        if node is not None:
            return scim_response(await self._lookup(request, call, node, params))
        outcome = await call.read(
            lambda session, directory: listing(session, kind, directory, params, base_url=call.base_url)
        )
        return scim_response(outcome.body)

    async def _lookup(self, request: Request, call: Call, node: Compare, params: ListParams) -> dict[str, Any]:
        """A first page by ``attribute eq "value"`` on an indexed attribute (``scim.backend.lookups``)."""
        kind, dialect = self.kind, database_of(request).dialect
        view = _View(call.base_url, params.attributes, params.excluded)

        related = reads_related(kind.name, view, dialect=dialect)

        def find(reader: Reader) -> Found:
            directory_id, count = call.directory_id, params.count
            return find_by(reader, kind, node, dialect=dialect, directory_id=directory_id, count=count, related=related)

        def page(reader: Reader, _directory: Directory, found: Found) -> dict[str, Any]:
            return {
                "schemas": [urns.LIST_RESPONSE],
                "totalResults": found.total,
                "startIndex": 1,
                "itemsPerPage": len(found.rows),
                "Resources": [render(reader, kind, row, view=view, found=found.related) for row in found.rows],
            }

        return await call.lookup(find, page)

    async def create(self, request: Request, parse: Parse[P], create: Create[P]) -> Response:
        call = Call(request)
        body = await parse_body(request, parse)
        work = partial(_create, create, body, call)
        return respond(await call.write(work, light=body.small))


class Item(ScimEndpoint, Generic[R]):
    kind: ResourceKind[R]

    async def get(self, request: Request) -> Response:
        call, kind, resource_id = Call(request), self.kind, request.path_params["id"]
        related = reads_related(kind.name, call, dialect=database_of(request).dialect)

        def find(reader: Reader) -> Found:
            return find_by_id(reader, kind, directory_id=call.directory_id, resource_id=resource_id, related=related)

        def fetch(reader: Reader, _directory: Directory, found: Found) -> Outcome | ScimError:
            if not found.rows:
                return ScimError(404, f"{kind.name} {resource_id} not found")
            row = found.rows[0]
            if call.if_none_match == etag(row.version):
                return Outcome(None, 304, etag(row.version))
            return rendered_one(reader, kind, row, view=call, found=found.related)

        return respond(await call.lookup(find, fetch))

    async def delete(self, request: Request) -> Response:
        kind = self.kind
        if kind.model is DirectoryUser:
            call = Call(request)
            if call.if_match is None:  # nothing to check against the user: delete it unread
                unread = partial(_delete_user_unread, resource_id=request.path_params["id"])
                return respond(await call.write(unread, light=True))

        def remove(session: Session, directory: Directory, row: R, _body: None, _call: Call) -> Outcome:
            delete_resource(session, kind, directory=directory, row=row)
            return NO_CONTENT

        # A user's deletion touches the few groups it is in; a group's, every one of its members.
        return await self.change(request, None, remove, light=kind.name == "User")

    async def change(
        self,
        request: Request,
        parse: Parse[P] | None,
        change: Change[R, P],
        *,
        light: bool = False,
        together: bool = False,
    ) -> Response:
        """The skeleton of PUT, PATCH and DELETE: the body parsed (if any), then in one write transaction the
        resource (or 404), its ``If-Match`` checked, and ``change`` applied. ``light``: a change of one resource
        that stays small with a small body (``Call.write``). ``together``: ``change`` writes nothing but the
        resource's own row (and events), so the resource may be read together with other jobs' reads
        (``read_resource_together``)."""
        call, kind, resource_id = Call(request), self.kind, request.path_params["id"]
        body: Parsed[P] = _NO_BODY if parse is None else await parse_body(request, parse)

        def apply(session: Session, directory: Directory, read: R | ScimError) -> Outcome | ScimError:
            row = _matching(read, call)
            if isinstance(row, ScimError):
                return row
            return body.error or change(session, directory, row, body.get(), call)

        def write(session: Session, directory: Directory) -> Outcome | ScimError | Later[Outcome | ScimError]:
            read = (
                read_resource_together(session, kind, directory_id=directory.id, resource_id=resource_id)
                if together
                else _read(session, kind, directory, resource_id)
            )
            return mapped(read, partial(apply, session, directory))

        return respond(await call.write(write, light=light and body.small))

    async def patched(self, request: Request, save: Save[R], *, add_unread: AddUnread | None = None) -> Response:
        """PATCH (RFC 7644 §3.5.2), its CPU work kept out of the write job and off the event loop: the stored
        attributes are read, the operations applied on a thread, and the write job stores the result only if the
        attributes are still the ones read (else it all runs again: no lost update). The last attempt applies the
        operations inside the write job, bounded by the request limits, so a hot resource still makes progress."""
        call, kind, resource_id = Call(request), self.kind, request.path_params["id"]
        body = await parse_body(request, parse_patch)
        limits = limits_of(request)
        if add_unread is not None and body.error is None and call.if_match is None and not _projected(call):
            # One add operation (what IdPs send), nothing to check against the resource and no body to answer.
            members = member_changes_only(body.get(), resource=kind.name)
            if members is not None and len(members) == 1 and members[0].kind == "add":
                added = members[0].members
                unread = partial(_add_unread_job, add_unread, resource_id, added)
                return respond(await call.write(unread, light=body.small))
        for attempt in range(_PATCH_ATTEMPTS):
            snapshot: dict[str, Any] | None = None
            patched: Patched | None = None
            members = None if body.error else member_changes_only(body.get(), resource=kind.name)
            if members is not None:
                # Only members change: nothing stored is needed to apply it, and it conflicts with nothing.
                patched = Patched(None, members)
            elif attempt < _PATCH_ATTEMPTS - 1:

                def read(session: Session, directory: Directory) -> dict[str, Any] | ScimError:
                    row = _target(session, kind, directory, resource_id, call)
                    return row if isinstance(row, ScimError) else row.raw_attributes

                snapshot = await call.read(read)
                operations = body.get()  # a body's refusal is raised here
                work = patch_work(snapshot, operations)
                if attempt == 0:
                    _charge_work(call, work, settings_of(request).scim_patch_values_per_request)
                patched = await _apply_off_loop(
                    request, call, snapshot, operations, kind=kind, limits=limits, work=work
                )
            job = _PatchJob(kind, resource_id, call, body, limits, save, snapshot=snapshot, patched=patched)
            # Light unless it may replace or empty a group's members, which are as many as the group is large.
            light = body.small and patched is not None and all(c.kind in ("add", "remove") for c in patched.changes)
            outcome: Outcome | _Conflict = await call.write(job.write, light=light)
            if not isinstance(outcome, _Conflict):
                return respond(outcome)
        raise AssertionError("the last attempt applies the PATCH in its write job")  # pragma: no cover


@dataclass(frozen=True)
class _PatchJob(Generic[R]):
    """One attempt's write job: store ``patched`` if the attributes are still ``snapshot``; without them, apply the
    operations here."""

    kind: ResourceKind[R]
    resource_id: str
    call: Call
    body: Parsed[list[Operation]]
    limits: Limits
    save: Save[R]
    snapshot: dict[str, Any] | None
    patched: Patched | None

    def write(self, session: Session, directory: Directory) -> Outcome | ScimError | _Conflict:
        row = _target(session, self.kind, directory, self.resource_id, self.call)
        if isinstance(row, ScimError):
            return row
        patched = self.patched
        if patched is None:
            if self.body.error is not None:
                return self.body.error
            try:
                patched = _apply(row.raw_attributes, self.body.get(), kind=self.kind, limits=self.limits)
            except ScimError as refusal:
                return refusal
        elif patched.raw is not None and row.raw_attributes != self.snapshot:
            return _CONFLICT
        return self.save(session, directory, row, patched, self.call)


def _create(create: Create[P], body: Parsed[P], call: Call, session: Session, directory: Directory) -> Outcome:
    return create(session, directory, body.get(), call)


def _add_unread_job(
    add_unread: AddUnread, resource_id: str, added: list[Member], session: Session, directory: Directory
) -> Outcome | ScimError | Later[Outcome | ScimError]:
    return add_unread(session, directory, resource_id, added)


def _delete_user_unread(
    session: Session, directory: Directory, *, resource_id: str
) -> Outcome | ScimError | Later[Outcome | ScimError]:
    def answer(found: bool) -> Outcome | ScimError:
        return NO_CONTENT if found else ScimError(404, f"User {resource_id} not found")

    return mapped(delete_user_by_id(session, directory=directory, user_id=resource_id), answer)


def _projected(call: Call) -> bool:
    return call.attributes is not None or call.excluded is not None


def _target(
    session: Session, kind: ResourceKind[R], directory: Directory, resource_id: str, call: Call
) -> R | ScimError:
    """The resource a change is about, if it exists and its ``If-Match`` holds; else the refusal (returned, not
    raised: see ``Call.write``). A Core snapshot, not an ORM entity: changes are Core statements too."""
    return _matching(_read(session, kind, directory, resource_id), call)


def _read(session: Session, kind: ResourceKind[R], directory: Directory, resource_id: str) -> R | ScimError:
    try:
        return read_resource(session, kind, directory_id=directory.id, resource_id=resource_id)
    except ScimError as refusal:
        return refusal


def _matching(row: R | ScimError, call: Call) -> R | ScimError:
    """``row`` if its ``If-Match`` holds; else the refusal."""
    if isinstance(row, ScimError):
        return row
    try:
        check_if_match(call.if_match, etag(row.version))
    except ScimError as refusal:
        return refusal
    return row


def _charge_work(call: Call, work: int, values_per_request: int) -> None:
    """A PATCH pays one request per ``values_per_request`` values it reads, the one it was admitted with included."""
    if values_per_request > 0:
        call.charge(work / values_per_request - 1)


async def _apply_off_loop(
    request: Request,
    call: Call,
    raw: dict[str, Any],
    operations: list[Operation],
    *,
    kind: ResourceKind[R],
    limits: Limits,
    work: int,
) -> Patched:
    """The PATCH applied off the event loop: on a thread, or in a costly-work process when it reads many values (on
    a thread, its CPU would hold the GIL the loop needs for every other request: gateway.ops.costly_work)."""
    costly: CostlyWork | None = getattr(request.app.state, "costly_work", None)
    if costly is not None and costly.started and work >= _PROCESS_WORK:
        directory = call.directory  # authenticated by the read: its organization waits for its own costly work
        owner = directory.organization_id if directory is not None else None
        return await costly.run(_apply_to, raw, operations, resource=kind.name, limits=limits, owner=owner)
    return await asyncio.to_thread(_apply, raw, operations, kind=kind, limits=limits)


def _apply(raw: dict[str, Any], operations: list[Operation], *, kind: ResourceKind[R], limits: Limits) -> Patched:
    return _apply_to(raw, operations, resource=kind.name, limits=limits)


def _apply_to(raw: dict[str, Any], operations: list[Operation], *, resource: Resource, limits: Limits) -> Patched:
    new_raw, changes = apply_patch(raw, operations, resource=resource)
    if new_raw == raw:
        return Patched(None, changes)
    limits.check_values(new_raw)
    return Patched(new_raw, changes)


_NO_BODY: Parsed[Any] = Parsed(None)
