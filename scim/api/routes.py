"""SCIM 2.0 under ``/scim/v2/{directory_id}/``: the route table, and the answer to every path it does not route.

Resource endpoint names are matched case-insensitively and a trailing slash is tolerated (Microsoft's reference
tooling sends ``/users``, ``/serviceproviderconfig`` and ``/Users/?filter=…``): the exact-case routes come first, so
provisioning traffic matches at once, and only a path they miss is normalised and routed again by the fallback.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, request_response
from starlette.types import Receive, Scope, Send

from scim.api.discovery import ResourceTypes, Schemas, ServiceProviderConfig
from scim.api.groups import GroupEndpoint, GroupsEndpoint
from scim.api.http import scim_endpoint
from scim.api.search import SearchEverything, SearchGroups, SearchUsers
from scim.api.users import UserEndpoint, UsersEndpoint
from scim.protocol.errors import ScimError

_PREFIX = "/scim/v2/{directory_id}"
# The resource endpoints by their lowercased name, spelled as routed (RFC 7644 §3.2 names them).
_ENDPOINT_NAMES = {
    name.lower(): name for name in ("Users", "Groups", "ServiceProviderConfig", "ResourceTypes", "Schemas", ".search")
}


def canonical_path(path: str) -> str | None:
    """``/scim/v2/{d}/users/`` → ``/scim/v2/{d}/Users``: the path with its endpoint names in their routed case and
    no trailing slash, or None when it is already so (or is no SCIM resource path). Ids are left as they are."""
    parts = path.split("/")  # ["", "scim", "v2", directory_id, endpoint, …]
    if len(parts) < 5 or parts[4] == "":
        return None
    rest = parts[4:]
    if len(rest) > 1 and rest[-1] == "":
        rest = rest[:-1]
    rest[0] = _ENDPOINT_NAMES.get(rest[0].lower(), rest[0])
    if len(rest) > 1 and rest[0] in ("Users", "Groups"):
        rest[1] = _ENDPOINT_NAMES.get(rest[1].lower(), rest[1]) if rest[1].lower() == ".search" else rest[1]
    canonical = "/".join(parts[:4] + rest)
    return None if canonical == path else canonical


async def _unrouted(request: Request) -> Response:
    """405 with ``Allow`` when the path exists for other methods, else 404 (both in SCIM's error shape)."""
    allowed: set[str] = set()
    scope = request.scope
    canonical = canonical_path(scope["path"])
    if canonical is not None:
        scope = {**scope, "path": canonical}
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.endpoint is not _fallback and route.methods:
            match, _ = route.matches(scope)
            if match == Match.PARTIAL:
                allowed |= route.methods
    if allowed:
        raise ScimError(405, f"{request.method} is not supported here", headers={"Allow": ", ".join(sorted(allowed))})
    raise ScimError(404, f"No SCIM endpoint at {request.url.path}")


_catch_all = scim_endpoint(_unrouted)
_unrouted_app = request_response(_catch_all)
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class _Fallback:
    """The last SCIM route: a path the exact routes missed is normalised (``canonical_path``) and routed again;
    what still matches nothing is answered by ``_unrouted``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        canonical = canonical_path(scope["path"])
        if canonical is not None:
            child = {**scope, "path": canonical, "raw_path": canonical.encode()}
            for route in scope["app"].router.routes:
                if not isinstance(route, Route) or route.endpoint is _fallback:
                    continue
                match, matched = route.matches(child)
                if match == Match.FULL:
                    # In place too, so the metrics label this request with the route that answered it.
                    scope.update(matched, route=route)
                    child.update(matched, route=route)
                    await route.handle(child, receive, send)
                    return
        await _unrouted_app(scope, receive, send)


_fallback = _Fallback()


def routes() -> list[Route]:
    prefix = _PREFIX
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
        Route(f"{prefix}/{{rest:path}}", _fallback, methods=_ALL_METHODS),
    ]


class Shortcut:
    """The provisioning routes (``/Users``, ``/Users/{id}``, ``/Groups``, ``/Groups/{id}``, the paths nearly all of an
    IdP's requests take) found straight from their path, ahead of Starlette's router and error middlewares (the
    application, ``gateway.app``, sends them to their endpoint itself).

    The route table above is still what answers: the matching ``Route``'s endpoint is called as the router would call
    it, with the same ``path_params`` and ``route`` in the scope (the metrics label requests by it). Only the generic
    work is skipped: trying the routes' regular expressions in turn, and two middlewares whose errors a SCIM endpoint
    never raises (``scim.api.http.answer`` answers every failure in SCIM's shape). Anything else (another verb, a
    ``.search``, a path in another case or with a trailing slash, a root path) goes the usual way."""

    def __init__(self, routes: list[Route]) -> None:
        by_path = {route.path: route for route in routes}
        # parts[4] of the path -> (the collection's route, the item's route)
        self._routes = {
            name: (by_path[f"{_PREFIX}/{name}"], by_path[f"{_PREFIX}/{name}/{{id}}"]) for name in ("Users", "Groups")
        }

    def route_for(self, scope: Scope) -> Route | None:
        """The provisioning route of this HTTP request, its ``path_params``, ``endpoint`` and ``route`` set in
        ``scope`` as the router would; None: the request goes the usual way."""
        if not scope["path"].startswith("/scim/v2/") or scope.get("root_path"):
            return None
        parts = scope["path"].split("/")  # ["", "scim", "v2", directory_id, endpoint, id?]
        pair = self._routes.get(parts[4]) if len(parts) in (5, 6) else None
        if pair is None or not parts[3]:
            return None
        route = pair[len(parts) - 5]
        if route.methods is None or scope["method"] not in route.methods or (len(parts) == 6 and not parts[5]):
            return None
        params = {"directory_id": parts[3]}
        if len(parts) == 6:
            params["id"] = parts[5]
        scope["path_params"] = params
        scope["endpoint"] = route.endpoint
        scope["route"] = route
        return route
