"""Discovery endpoints (RFC 7644 §4): what this server really supports, nothing more."""

from __future__ import annotations

from typing import Any

from gateway.settings import Settings
from scim.protocol import urns
from scim.protocol.errors import ScimError
from scim.protocol.schemas import SCHEMAS, schema_resource


def _list(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [urns.LIST_RESPONSE],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def service_provider_config(base_url: str, settings: Settings) -> dict[str, Any]:
    return {
        "schemas": [urns.SERVICE_PROVIDER_CONFIG],
        "documentationUri": "https://github.com/directory-sync-gateway/directory-sync-gateway#readme",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": settings.scim_max_page_size},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "The per-directory bearer token issued with the SCIM endpoint.",
                "primary": True,
            }
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base_url}/ServiceProviderConfig"},
    }


def _resource_type(base_url: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemas": [urns.RESOURCE_TYPE],
        "id": name,
        "name": name,
        "endpoint": f"/{name}s",
        "description": "User Account" if name == "User" else "Group",
        "schema": urns.USER if name == "User" else urns.GROUP,
        "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/{name}"},
    }
    if name == "User":
        body["schemaExtensions"] = [{"schema": urns.ENTERPRISE_USER, "required": False}]
    return body


def resource_types(base_url: str, name: str | None) -> dict[str, Any]:
    if name is None:
        return _list([_resource_type(base_url, n) for n in ("User", "Group")])
    if name not in ("User", "Group"):
        raise ScimError(404, f"Resource type {name} not found")
    return _resource_type(base_url, name)


def schemas(base_url: str, urn: str | None) -> dict[str, Any]:
    if urn is None:
        return _list([schema_resource(s, base_url) for s in SCHEMAS.values()])
    schema = SCHEMAS.get(urn)
    if schema is None:
        raise ScimError(404, f"Schema {urn} not found")
    return schema_resource(schema, base_url)
