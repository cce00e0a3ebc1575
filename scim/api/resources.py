"""The endpoints of a SCIM resource type (RFC 7644 §3.2–3.6), one skeleton for Users and Groups.

``Collection`` answers ``/Users`` and ``/Groups`` (list, create), ``Item`` answers ``/Users/{id}`` and
``/Groups/{id}`` (read, replace, patch, delete). ``scim.api.users`` and ``scim.api.groups`` give each its resource
kind and what really differs: how a body is read, and what a create, replace or patch does to the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.store.models import Directory
from scim.api.calls import Call, Parsed, parse_body, respond, settings_of
from scim.api.http import ListParams, ScimEndpoint, list_params, scim_response
from scim.backend.resources import (
    NO_CONTENT,
    Outcome,
    R,
    ResourceKind,
    delete_resource,
    get_resource,
    list_resources,
    render_resources,
    rendered,
)
from scim.protocol import urns
from scim.protocol.filter_sql import translate_filter
from scim.protocol.filters import parse_filter
from scim.protocol.render import check_if_match, etag

P = TypeVar("P")
# What a create does with a parsed body, or a replace or patch with the resource (its If-Match already checked).
Create = Callable[[Session, Directory, P, Call], Outcome]
Change = Callable[[Session, Directory, R, P, Call], Outcome]


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
        outcome = await call.read(
            lambda session, directory: listing(session, kind, directory, params, base_url=call.base_url)
        )
        return scim_response(outcome.body)

    async def create(self, request: Request, parse: Callable[[dict[str, Any]], P], create: Create[P]) -> Response:
        call = Call(request)
        body = await parse_body(request, parse)
        return respond(await call.write(lambda session, directory: create(session, directory, body.get(), call)))


class Item(ScimEndpoint, Generic[R]):
    kind: ResourceKind[R]

    async def get(self, request: Request) -> Response:
        call, kind, resource_id = Call(request), self.kind, request.path_params["id"]

        def fetch(session: Session, directory: Directory) -> Outcome:
            row = get_resource(session, kind, directory_id=directory.id, resource_id=resource_id)
            if call.if_none_match == etag(row.version):
                return Outcome(None, 304, etag(row.version))
            return rendered(session, kind, row, view=call)

        return respond(await call.read(fetch))

    async def delete(self, request: Request) -> Response:
        kind = self.kind

        def remove(session: Session, directory: Directory, row: R, _body: None, _call: Call) -> Outcome:
            delete_resource(session, kind, directory=directory, row=row)
            return NO_CONTENT

        return await self.change(request, None, remove)

    async def change(
        self, request: Request, parse: Callable[[dict[str, Any]], P] | None, change: Change[R, P]
    ) -> Response:
        """The skeleton of PUT, PATCH and DELETE: the body parsed (if any), then in one write transaction the
        resource (or 404), its ``If-Match`` checked, and ``change`` applied."""
        call, kind, resource_id = Call(request), self.kind, request.path_params["id"]
        body: Parsed[P] = _NO_BODY if parse is None else await parse_body(request, parse)

        def write(session: Session, directory: Directory) -> Outcome:
            row = get_resource(session, kind, directory_id=directory.id, resource_id=resource_id)
            check_if_match(call.if_match, etag(row.version))
            return change(session, directory, row, body.get(), call)

        return respond(await call.write(write))


_NO_BODY: Parsed[Any] = Parsed(None)
