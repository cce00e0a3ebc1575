"""The endpoints of a SCIM resource type (RFC 7644 §3.2–3.6), one skeleton for Users and Groups.

``Collection`` answers ``/Users`` and ``/Groups`` (list, create), ``Item`` answers ``/Users/{id}`` and
``/Groups/{id}`` (read, replace, patch, delete). ``scim.api.users`` and ``scim.api.groups`` give each its resource
kind and what really differs: how a body is read, and what a create, replace or patch does to the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.store.models import Directory
from gateway.store.prepared import Reader
from scim.api.calls import Call, Parsed, database_of, limits_of, parse_body, respond, settings_of
from scim.api.http import ListParams, ScimEndpoint, list_params, scim_response
from scim.backend.lookups import Found, find_by, find_by_id, render, rendered_one
from scim.backend.resources import (
    NO_CONTENT,
    Outcome,
    R,
    ResourceKind,
    delete_resource,
    list_resources,
    read_resource,
    render_resources,
)
from scim.protocol import urns
from scim.protocol.errors import ScimError
from scim.protocol.filter_sql import translate_filter
from scim.protocol.filters import Compare, as_lookup, parse_filter
from scim.protocol.limits import Limits, patch_work
from scim.protocol.patch import MemberChange, Operation, apply_patch, member_changes_only, parse_patch
from scim.protocol.render import check_if_match, etag

P = TypeVar("P")
# What a create does with a parsed body, or a replace or patch with the resource (its If-Match already checked).
Create = Callable[[Session, Directory, P, Call], Outcome]
Change = Callable[[Session, Directory, R, P, Call], Outcome]
Parse = Callable[[dict[str, Any], Limits], P]  # a request body (a JSON object) to what the change needs
# A PATCH's attempts at applying its operations outside the write job before the last one applies them inside it.
_PATCH_ATTEMPTS = 3


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
        where = translate_filter(parse_filter(params.filter), resource=kind.name, dialect=dialect)
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

        def find(reader: Reader) -> Found:
            return find_by(reader, kind, node, dialect=dialect, directory_id=call.directory_id, count=params.count)

        def page(reader: Reader, _directory: Directory, found: Found) -> dict[str, Any]:
            return {
                "schemas": [urns.LIST_RESPONSE],
                "totalResults": found.total,
                "startIndex": 1,
                "itemsPerPage": len(found.rows),
                "Resources": [render(reader, kind, row, view=view) for row in found.rows],
            }

        return await call.lookup(find, page)

    async def create(self, request: Request, parse: Parse[P], create: Create[P]) -> Response:
        call = Call(request)
        body = await parse_body(request, parse)
        return respond(await call.write(lambda session, directory: create(session, directory, body.get(), call)))


class Item(ScimEndpoint, Generic[R]):
    kind: ResourceKind[R]

    async def get(self, request: Request) -> Response:
        call, kind, resource_id = Call(request), self.kind, request.path_params["id"]

        def find(reader: Reader) -> Found:
            return find_by_id(reader, kind, directory_id=call.directory_id, resource_id=resource_id)

        def fetch(reader: Reader, _directory: Directory, found: Found) -> Outcome | ScimError:
            if not found.rows:
                return ScimError(404, f"{kind.name} {resource_id} not found")
            row = found.rows[0]
            if call.if_none_match == etag(row.version):
                return Outcome(None, 304, etag(row.version))
            return rendered_one(reader, kind, row, view=call)

        return respond(await call.lookup(find, fetch))

    async def delete(self, request: Request) -> Response:
        kind = self.kind

        def remove(session: Session, directory: Directory, row: R, _body: None, _call: Call) -> Outcome:
            delete_resource(session, kind, directory=directory, row=row)
            return NO_CONTENT

        return await self.change(request, None, remove)

    async def change(self, request: Request, parse: Parse[P] | None, change: Change[R, P]) -> Response:
        """The skeleton of PUT, PATCH and DELETE: the body parsed (if any), then in one write transaction the
        resource (or 404), its ``If-Match`` checked, and ``change`` applied."""
        call, kind, resource_id = Call(request), self.kind, request.path_params["id"]
        body: Parsed[P] = _NO_BODY if parse is None else await parse_body(request, parse)

        def write(session: Session, directory: Directory) -> Outcome | ScimError:
            row = _target(session, kind, directory, resource_id, call)
            if isinstance(row, ScimError):
                return row
            return body.error or change(session, directory, row, body.get(), call)

        return respond(await call.write(write))

    async def patched(self, request: Request, save: Save[R]) -> Response:
        """PATCH (RFC 7644 §3.5.2), its CPU work kept out of the write job and off the event loop: the stored
        attributes are read, the operations applied on a thread, and the write job stores the result only if the
        attributes are still the ones read (else it all runs again: no lost update). The last attempt applies the
        operations inside the write job, bounded by the request limits, so a hot resource still makes progress."""
        call, kind, resource_id = Call(request), self.kind, request.path_params["id"]
        body = await parse_body(request, parse_patch)
        limits = limits_of(request)
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
                if attempt == 0 and body.error is None:
                    _charge_work(call, snapshot, body.get(), settings_of(request).scim_patch_values_per_request)
                patched = await asyncio.to_thread(_apply, snapshot, body.get(), kind=kind, limits=limits)
            job = _PatchJob(kind, resource_id, call, body, limits, save, snapshot=snapshot, patched=patched)
            outcome: Outcome | _Conflict = await call.write(job.write)
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


def _target(
    session: Session, kind: ResourceKind[R], directory: Directory, resource_id: str, call: Call
) -> R | ScimError:
    """The resource a change is about, if it exists and its ``If-Match`` holds; else the refusal (returned, not
    raised: see ``Call.write``). A Core snapshot, not an ORM entity: changes are Core statements too."""
    try:
        row = read_resource(session, kind, directory_id=directory.id, resource_id=resource_id)
        check_if_match(call.if_match, etag(row.version))
    except ScimError as refusal:
        return refusal
    return row


def _charge_work(call: Call, raw: dict[str, Any], operations: list[Operation], values_per_request: int) -> None:
    """A PATCH pays one request per ``values_per_request`` values it reads, the one it was admitted with included."""
    if values_per_request > 0:
        call.charge(patch_work(raw, operations) / values_per_request - 1)


def _apply(raw: dict[str, Any], operations: list[Operation], *, kind: ResourceKind[R], limits: Limits) -> Patched:
    new_raw, changes = apply_patch(raw, operations, resource=kind.name)
    if new_raw == raw:
        return Patched(None, changes)
    limits.check_values(new_raw)
    return Patched(new_raw, changes)


_NO_BODY: Parsed[Any] = Parsed(None)
