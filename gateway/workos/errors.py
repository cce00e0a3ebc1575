"""The one error type of the WorkOS API, rendered in WorkOS's shapes: ``{"message", "code", ...}`` with the status
the SDKs map to their exceptions (401 authentication, 404 ``entity_not_found``, 422 ``invalid_request_parameters``
with ``errors: [{"field", "code"}]``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response


class WorkOSError(Exception):
    """A request the API refuses; ``body`` is the JSON it answers."""

    def __init__(self, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def unauthorized(message: str) -> WorkOSError:
    return WorkOSError(401, {"message": message, "code": "unauthorized"})


def not_found(what: str, entity_id: str) -> WorkOSError:
    # Another organization's object answers exactly like a missing one.
    return WorkOSError(
        404, {"message": f"{what} not found: '{entity_id}'.", "code": "entity_not_found", "entity_id": entity_id}
    )


def invalid(field: str, problem: str) -> WorkOSError:
    """422 for one bad parameter; ``problem`` is a readable sentence (the SDKs print the errors' codes)."""
    return WorkOSError(
        422,
        {
            "message": "Validation failed",
            "code": "invalid_request_parameters",
            "errors": [{"field": field, "code": problem}],
        },
    )


def no_route(path: str) -> WorkOSError:
    return WorkOSError(404, {"message": f"No WorkOS API endpoint at {path}", "code": "not_found"})


def method_not_allowed(method: str, allowed: list[str]) -> WorkOSError:
    return WorkOSError(
        405,
        {"message": f"{method} is not supported here", "code": "method_not_allowed"},
        headers={"Allow": ", ".join(allowed)},
    )
