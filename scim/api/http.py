"""HTTP plumbing for SCIM: body limits and media types, query parameters, responses and errors as responses
(RFC 7644 §3.1, §3.4.2, §3.12), and the endpoint base that answers every failure in SCIM's shape."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.settings import Settings
from gateway.store.serialization import JSONDecodeError, contains_nul, dumps_bytes, fits_store, loads
from scim.api import request_recording
from scim.protocol.errors import SCIM_MEDIA_TYPE, ScimError
from scim.protocol.filters import parse_path

logger = logging.getLogger("dsync.scim")

_ACCEPTED_MEDIA_TYPES = frozenset({"application/scim+json", "application/json"})
_MAX_START_INDEX = 2**63 - 1
# Arrays and objects nested in a request body (the body itself is 1). A SCIM resource needs about 5; a deeper body
# answers 400 instead of reaching a store that cannot write it.
MAX_JSON_DEPTH = 32
# One name of a comma-separated list; a value filter's brackets may hold commas (``emails[value co ","]``).
_NAME = re.compile(r'(?:[^,\["]|"[^"]*"|\[(?:[^\]"]|"[^"]*")*\])+')


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without buffering them (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ScimError(413, f"Request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ScimError(413, f"Request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(request: Request, body: bytes) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type not in _ACCEPTED_MEDIA_TYPES:
        raise ScimError(415, f"Unsupported media type {media_type!r}; send application/scim+json")
    try:
        document = loads(body)
    except JSONDecodeError as exc:
        raise ScimError(400, f"Request body is not valid JSON: {exc}", "invalidSyntax") from None
    if not isinstance(document, dict):
        raise ScimError(400, "Request body must be a JSON object", "invalidSyntax")
    if not fits_store(document, max_depth=MAX_JSON_DEPTH):
        raise ScimError(400, f"Request body nests deeper than {MAX_JSON_DEPTH} levels", "invalidValue")
    if b"\\u0000" in body and contains_nul(document):
        # PostgreSQL text cannot hold U+0000: refused the same way on every store.
        raise ScimError(400, "Request body must not contain NUL characters (\\u0000)", "invalidValue")
    return document


@dataclass(frozen=True)
class ListParams:
    filter: str | None
    start_index: int
    count: int
    attributes: list[str] | None
    excluded: list[str] | None


def _int_param(source: Mapping[str, Any], name: str, default: int) -> int:
    raw = source.get(name)
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ScimError(400, f"{name} must be an integer", "invalidValue") from None


def _split_names(text: str) -> list[str]:
    """``a,b`` → ``["a", "b"]``, commas inside a value filter's brackets kept; a malformed filter stays one name,
    refused when it is parsed."""
    names: list[str] = []
    position = 0
    while position < len(text):
        if text[position] == ",":
            position += 1
            continue
        match = _NAME.match(text, position)
        if match is None or (match.end() < len(text) and text[match.end()] != ","):
            return names + [text[position:]]
        names.append(match.group())
        position = match.end() + 1
    return names


def _names_param(source: Mapping[str, Any], name: str) -> list[str] | None:
    """``attributes=a,b`` in a query, or ``"attributes": ["a", "b"]`` in a SearchRequest body."""
    raw = source.get(name)
    if not raw:
        return None
    if isinstance(raw, str):
        raw = _split_names(raw)
    if not isinstance(raw, list) or not all(isinstance(part, str) for part in raw):
        raise ScimError(400, f"{name} must be a list of attribute names", "invalidValue")
    names = [part.strip() for part in raw if part.strip()]
    for path in names:
        if "[" in path:
            parse_path(path)  # a malformed value filter is refused (400) even when no resource is rendered
    return names or None


def projection_params(request: Request) -> tuple[list[str] | None, list[str] | None]:
    query = request.query_params
    return _names_param(query, "attributes"), _names_param(query, "excludedAttributes")


def list_params(source: Mapping[str, Any], settings: Settings) -> ListParams:
    """Query parameters of a GET, or the body of a POST ``.search`` (RFC 7644 §3.4.3)."""
    # RFC 7644 §3.4.2.4: startIndex below 1 is read as 1, a negative count as 0; we cap count, and startIndex at the
    # largest OFFSET SQL takes (a page that far is empty either way).
    start_index = min(max(1, _int_param(source, "startIndex", 1)), _MAX_START_INDEX)
    count = min(max(0, _int_param(source, "count", settings.scim_default_page_size)), settings.scim_max_page_size)
    raw_filter = source.get("filter")
    if raw_filter is not None and not isinstance(raw_filter, str):
        raise ScimError(400, "filter must be a string", "invalidFilter")
    return ListParams(
        filter=raw_filter if raw_filter and raw_filter.strip() else None,
        start_index=start_index,
        count=count,
        attributes=_names_param(source, "attributes"),
        excluded=_names_param(source, "excludedAttributes"),
    )


class ScimJSONResponse(JSONResponse):
    media_type = SCIM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return dumps_bytes(content)


def scim_response(
    body: dict[str, Any] | None, *, status: int = 200, location: str | None = None, etag: str | None = None
) -> Response:
    headers: dict[str, str] = {}
    if location:
        headers["Location"] = location
    if etag:
        headers["ETag"] = etag
    if body is None:
        return Response(status_code=status, headers=headers)
    return ScimJSONResponse(body, status_code=status, headers=headers)


def error_response(error: ScimError) -> JSONResponse:
    return ScimJSONResponse(error.body(), status_code=error.status, headers=error.headers)


Handler = Callable[[Request], Awaitable[Response]]


async def answer(request: Request, handler: Handler) -> Response:
    """Every failure becomes a SCIM error response; an unexpected one is logged and answered 500 in SCIM's shape.
    Each answer goes to the directory's request log (``scim.api.request_recording``)."""
    since, error = request_recording.started(), None
    try:
        if any("\x00" in value for value in request.path_params.values()):
            # No id holds a NUL character (and PostgreSQL could not even be asked about one).
            raise ScimError(404, f"No SCIM endpoint at {request.url.path}")
        response = await handler(request)
    except ScimError as exc:
        error = _without_frames(exc)
        response = error_response(exc)
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        error = ScimError(500, "Internal server error")
        response = error_response(error)
    request_recording.note(request, response, error, since)
    if error is not None and _is_refusal(error):
        delay = request.app.state.settings.scim_refusal_delay_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)
    return response


def _without_frames(error: ScimError) -> ScimError:
    """The error without its traceback: its frames hold the request (body, parsed operations) and, where it was
    raised from a local or a ``Call``'s refusal, the error itself. Kept, that cycle leaves every refused request to
    the cyclic collector: a client that ignores its refusals (hundreds a second, each with a parsed PATCH) made
    collections of ~17,000 dead objects that stopped every thread for 5-15 ms. Nothing reads the frames: a
    ``ScimError`` is an answer, never logged with its traceback."""
    error.__traceback__ = None
    error.__context__ = None
    return error


def _is_refusal(error: ScimError) -> bool:
    """A wrong or missing token, a rate limit, a body over the limits: answered after DSYNC_SCIM_REFUSAL_DELAY_MS, so
    a client that ignores them cannot have them answered as fast as the CPU allows. Answers an IdP meets in a normal
    sync (404, 409, 412, a filter it got wrong) are not delayed."""
    return error.status in (401, 413, 429) or (
        error.status == 400 and error.scim_type in ("tooMany", "invalidSyntax", "invalidValue")
    )


def scim_endpoint(handler: Handler) -> Handler:
    """A function endpoint answered like a ``ScimEndpoint``'s methods (see ``answer``)."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        return await answer(request, handler)

    return endpoint


class ScimEndpoint(HTTPEndpoint):
    """One class per SCIM path, one method per HTTP verb, each answered through ``answer``.

    Its route lists the verbs it serves (a HEAD is a GET), so Starlette never dispatches another one here: the
    catch-all route answers those (405 with ``Allow``)."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Not HTTPEndpoint's: it also works out the allowed methods, which the route already knows.
        self.scope, self.receive, self.send = scope, receive, send

    async def dispatch(self) -> None:
        request = Request(self.scope, receive=self.receive, send=self.send)
        method = request.method
        handler: Handler = getattr(self, "get" if method == "HEAD" else method.lower())
        response = await answer(request, handler)
        await response(self.scope, self.receive, self.send)
