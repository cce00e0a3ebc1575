"""What the request log (``gateway.observe.request_log``) keeps of one answered SCIM request: taken from the request
line and the answer only, never from a body or a header (no tokens, no passwords)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from gateway.observe.request_log import RequestLog
from scim.protocol.errors import ScimError


def started() -> float:
    return time.perf_counter()


def note(request: Request, response: Response, error: ScimError | None, since: float) -> None:
    """Log the request if its caller authenticated as the directory; note a wrong token's time otherwise."""
    log: RequestLog | None = getattr(request.app.state, "request_log", None)
    call = getattr(request.state, "scim_call", None)
    if log is None or call is None:
        return  # refused before the directory was looked at (e.g. a NUL in the path)
    if call.directory is None:
        if response.status_code == 401:
            log.rejected_token(call.directory_id)
        return
    resource_id = request.path_params.get("id")
    location = response.headers.get("location")
    if resource_id is None and location:
        resource_id = location.rsplit("/", 1)[-1]
    scope = request.scope  # read raw: building request.url and query_params costs more than the rest together
    log.record(
        directory_id=call.directory.id,
        method=scope["method"],
        path=scope["path"],
        filter=request.query_params.get("filter") if b"filter" in scope["query_string"] else None,
        status=response.status_code,
        scim_type=error.scim_type if error is not None else None,
        detail=error.detail if error is not None else None,
        duration_ms=(time.perf_counter() - since) * 1000,
        resource_id=resource_id,
    )
