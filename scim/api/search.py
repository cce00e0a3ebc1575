"""POST ``/Users/.search`` and ``/Groups/.search`` (RFC 7644 §3.4.3): a list query with its parameters in the body,
so filters never appear in URLs or access logs; and the root ``/.search``, which is not supported."""

from __future__ import annotations

from typing import Any, Generic

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.store.models import Directory, DirectoryGroup, DirectoryUser
from scim.api.calls import Call, nothing, parse_body, settings_of
from scim.api.http import ListParams, ScimEndpoint, list_params, scim_response
from scim.api.resources import listing
from scim.backend.groups import GROUPS
from scim.backend.resources import Outcome, R, ResourceKind
from scim.backend.users import USERS
from scim.protocol.errors import ScimError
from scim.protocol.limits import Limits


class Search(ScimEndpoint, Generic[R]):
    kind: ResourceKind[R]

    async def post(self, request: Request) -> Response:
        settings = settings_of(request)

        def params(document: dict[str, Any], _limits: Limits) -> ListParams:
            return list_params(document, settings)

        body = await parse_body(request, params)
        call, kind = Call(request), self.kind

        def search(session: Session, directory: Directory) -> Outcome:
            return listing(session, kind, directory, body.get(), base_url=call.base_url)

        return scim_response((await call.read(search)).body)


class SearchUsers(Search[DirectoryUser]):
    kind = USERS


class SearchGroups(Search[DirectoryGroup]):
    kind = GROUPS


class SearchEverything(ScimEndpoint):
    async def post(self, request: Request) -> Response:
        await Call(request).read(nothing)
        raise ScimError(
            501, "Searching several resource types at once is not supported; use /Users/.search or /Groups/.search"
        )
