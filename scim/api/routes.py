"""SCIM 2.0 under ``/scim/v2/{directory_id}/``: the route table, and the answer to every path it does not route."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from scim.api.discovery import ResourceTypes, Schemas, ServiceProviderConfig
from scim.api.groups import GroupEndpoint, GroupsEndpoint
from scim.api.http import scim_endpoint
from scim.api.search import SearchEverything, SearchGroups, SearchUsers
from scim.api.users import UserEndpoint, UsersEndpoint
from scim.protocol.errors import ScimError


async def _unrouted(request: Request) -> Response:
    """405 with ``Allow`` when the path exists for other methods, else 404 (both in SCIM's error shape)."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.endpoint is not _catch_all and route.methods:
            match, _ = route.matches(request.scope)
            if match == Match.PARTIAL:
                allowed |= route.methods
    if allowed:
        raise ScimError(405, f"{request.method} is not supported here", headers={"Allow": ", ".join(sorted(allowed))})
    raise ScimError(404, f"No SCIM endpoint at {request.url.path}")


_catch_all = scim_endpoint(_unrouted)
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def routes() -> list[Route]:
    prefix = "/scim/v2/{directory_id}"
    return [
        # The provisioning traffic first: Starlette tries routes in order.
        Route(f"{prefix}/Users", UsersEndpoint, methods=["GET", "POST"]),
        Route(f"{prefix}/Users/{{id}}", UserEndpoint, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(f"{prefix}/Groups", GroupsEndpoint, methods=["GET", "POST"]),
        Route(f"{prefix}/Groups/{{id}}", GroupEndpoint, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(f"{prefix}/ServiceProviderConfig", ServiceProviderConfig, methods=["GET"]),
        Route(f"{prefix}/ResourceTypes", ResourceTypes, methods=["GET"]),
        Route(f"{prefix}/ResourceTypes/{{name}}", ResourceTypes, methods=["GET"]),
        Route(f"{prefix}/Schemas", Schemas, methods=["GET"]),
        Route(f"{prefix}/Schemas/{{urn}}", Schemas, methods=["GET"]),
        Route(f"{prefix}/.search", SearchEverything, methods=["POST"]),
        Route(f"{prefix}/Users/.search", SearchUsers, methods=["POST"], name="search_users"),
        Route(f"{prefix}/Groups/.search", SearchGroups, methods=["POST"], name="search_groups"),
        Route(f"{prefix}/{{rest:path}}", _catch_all, methods=_ALL_METHODS),
    ]
