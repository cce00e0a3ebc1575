"""The one SCIM error type (RFC 7644 §3.12) and its body; ``scim.api.http`` turns it into an HTTP response."""

from __future__ import annotations

from typing import Any, Literal

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

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a costly-work process (gateway.ops.costly_work), it is pickled back to the server's.
        return (_rebuilt, (self.status, self.detail, self.scim_type, self.headers))

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"schemas": [urns.ERROR], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


def _rebuilt(status: int, detail: str, scim_type: ScimType | None, headers: dict[str, str]) -> ScimError:
    return ScimError(status, detail, scim_type, headers=headers)
