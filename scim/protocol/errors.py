"""The one SCIM error type (RFC 7644 §3.12) and its response."""

from __future__ import annotations

from typing import Any, Literal

from starlette.responses import JSONResponse

from gateway.store.serialization import dumps_bytes
from scim.protocol import urns

SCIM_MEDIA_TYPE = "application/scim+json"

ScimType = Literal[
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
]


class ScimJSONResponse(JSONResponse):
    media_type = SCIM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return dumps_bytes(content)


class ScimError(Exception):
    def __init__(
        self, status: int, detail: str, scim_type: ScimType | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = dict(headers or {})
        if status == 401:
            self.headers.setdefault("WWW-Authenticate", 'Bearer realm="scim"')

    def to_response(self) -> JSONResponse:
        body: dict[str, object] = {"schemas": [urns.ERROR], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return ScimJSONResponse(body, status_code=self.status, headers=self.headers)
