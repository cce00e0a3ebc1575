"""The JSON behind the setup page (``/setup/``, a static page of the dashboard): a customer's IT admin, holding a
setup link and no API key, reads the directory's endpoint and live state and reveals its bearer token once.

The link's token arrives in the POST body (the page reads it from the URL's fragment), never in a URL, so no
access log or proxy sees it. Every failure answers ``{"error": reason, "message"}``; an unknown, an expired and a
used link are told apart only to someone who holds the link."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.ops import setup_links
from gateway.ops.directories import directory_endpoint
from gateway.ops.inputs import InvalidInput
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.models import DirectoryType

_NO_STORE = {"Cache-Control": "no-store"}  # a revealed token must not sit in any cache


async def _token(request: Request) -> str:
    try:
        body = await request.json()
    except ValueError:
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token.startswith(setup_links.TOKEN_PREFIX) or len(token) > 200:
        raise setup_links.LinkUnavailable("unknown", "This setup link is not valid. Ask for a new one.")
    return token


def _refusal(error: InvalidInput) -> Response:
    reason = error.reason if isinstance(error, setup_links.LinkUnavailable) else "invalid"
    status = 410 if reason in ("expired", "used") else 404
    return JSONResponse({"error": reason, "message": str(error)}, status_code=status, headers=_NO_STORE)


def _view(view: setup_links.SetupView, public_url: str) -> dict[str, Any]:
    directory, link = view.directory, view.link
    return {
        "directory": {
            "id": directory.id,
            "name": directory.name,
            "type": DirectoryType(directory.type).name,
            "state": directory.state,
            "endpoint": directory_endpoint(public_url=public_url, directory_id=directory.id),
        },
        "expires_at": link.expires_at.isoformat(),
        "revealed": link.revealed_at is not None,
    }


async def open_link(request: Request) -> Response:
    """What the link shows: the directory, its endpoint and state (polled for the live status)."""
    database: Database = request.app.state.database
    settings: Settings = request.app.state.settings
    try:
        token = await _token(request)
        view = await database.query(lambda session: setup_links.open_setup_link(session, token=token))
    except InvalidInput as error:
        return _refusal(error)
    return JSONResponse(_view(view, settings.public_url), headers=_NO_STORE)


async def reveal(request: Request) -> Response:
    """Issue the directory a new bearer token and show it, once per link."""
    database: Database = request.app.state.database
    public_url = request.app.state.settings.public_url
    try:
        token = await _token(request)
        issued = await database.transaction(
            lambda session: setup_links.reveal_bearer_token(session, token=token, public_url=public_url)
        )
    except InvalidInput as error:
        return _refusal(error)
    return JSONResponse({"endpoint": issued.endpoint, "bearer_token": issued.bearer_token}, headers=_NO_STORE)


def routes() -> list[Route]:
    return [
        Route("/setup/api/open", open_link, methods=["POST"]),
        Route("/setup/api/reveal", reveal, methods=["POST"]),
    ]
