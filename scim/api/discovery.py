"""The discovery endpoints (RFC 7644 §4): ``/ServiceProviderConfig``, ``/ResourceTypes`` and ``/Schemas``, answered
to an authenticated (and rate-limited) caller like every other SCIM request."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from scim.api.calls import Call, nothing, settings_of
from scim.api.http import ScimEndpoint, scim_response
from scim.protocol import discovery


async def _admitted(request: Request) -> Call:
    call = Call(request)
    await call.read(nothing)
    return call


class ServiceProviderConfig(ScimEndpoint):
    async def get(self, request: Request) -> Response:
        call = await _admitted(request)
        return scim_response(discovery.service_provider_config(call.base_url, settings_of(request)))


class ResourceTypes(ScimEndpoint):
    """All of them, or ``/ResourceTypes/{name}``."""

    async def get(self, request: Request) -> Response:
        call = await _admitted(request)
        return scim_response(discovery.resource_types(call.base_url, request.path_params.get("name")))


class Schemas(ScimEndpoint):
    """All of them, or ``/Schemas/{urn}``."""

    async def get(self, request: Request) -> Response:
        call = await _admitted(request)
        return scim_response(discovery.schemas(call.base_url, request.path_params.get("urn")))
