"""The WorkOS API's route table: one endpoint class per resource. Each resource is a module; a new one (webhook
endpoints, say) is one more module and one more line here."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.workos.directories import DirectoriesEndpoint, DirectoryEndpoint
from gateway.workos.directory_groups import DirectoryGroupEndpoint, DirectoryGroupsEndpoint
from gateway.workos.directory_users import DirectoryUserEndpoint, DirectoryUsersEndpoint
from gateway.workos.errors import no_route
from gateway.workos.events import EventsEndpoint
from gateway.workos.webhook_endpoints import WebhookEndpointEndpoint, WebhookEndpointsEndpoint

PREFIX = "/workos"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def resource_routes(prefix: str) -> list[Route]:
    """The resources under ``prefix``: ``/workos``, or ``""`` for SDKs that take a host but no path."""
    return [
        Route(f"{prefix}/directories", DirectoriesEndpoint),
        Route(f"{prefix}/directories/{{id}}", DirectoryEndpoint),
        Route(f"{prefix}/directory_users", DirectoryUsersEndpoint),
        Route(f"{prefix}/directory_users/{{id}}", DirectoryUserEndpoint),
        Route(f"{prefix}/directory_groups", DirectoryGroupsEndpoint),
        Route(f"{prefix}/directory_groups/{{id}}", DirectoryGroupEndpoint),
        Route(f"{prefix}/events", EventsEndpoint),
        Route(f"{prefix}/webhook_endpoints", WebhookEndpointsEndpoint),
        Route(f"{prefix}/webhook_endpoints/{{id}}", WebhookEndpointEndpoint),
    ]


async def _unrouted(request: Request) -> Response:
    return no_route(request.url.path).response()


def routes() -> list[Route]:
    """``/workos/…``, with WorkOS's 404 for every other path under it."""
    return [*resource_routes(PREFIX), Route(f"{PREFIX}/{{rest:path}}", _unrouted, methods=_ALL_METHODS)]
