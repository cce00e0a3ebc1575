"""One SCIM request's way to the store: what its database job needs from the request (read on the event loop), its
single charge against the directory's rate limit, and the linking of the directory it authenticated.

A handler hands ``Call.read`` / ``Call.write`` a plain function over a ``Session`` and the authenticated directory;
it runs where the database is fastest to reach (``Database.query`` / ``Database.transaction``) and returns data
(``scim.backend.resources.Outcome``), which the handler turns into the response after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.models import Directory, DirectoryState
from scim.api.http import parse_json, projection_params, read_body, scim_response
from scim.api.rate_limit import RateLimiter
from scim.backend.auth import activate, enter
from scim.backend.resources import Outcome
from scim.protocol.errors import ScimError

T = TypeVar("T")
Work = Callable[[Session, Directory], T]


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


class Call:
    """What a handler's database function needs from the request, and what the request did with its directory."""

    __slots__ = (
        "directory_id",
        "authorization",
        "base_url",
        "attributes",
        "excluded",
        "if_match",
        "if_none_match",
        "directory",
        "_refusal",
        "_state",
    )

    def __init__(self, request: Request) -> None:
        headers = request.headers
        self.directory_id: str = request.path_params["directory_id"]
        self.authorization = headers.get("authorization")
        self.base_url = f"{settings_of(request).public_url}/scim/v2/{self.directory_id}"
        self.attributes, self.excluded = projection_params(request)
        self.if_match = headers.get("if-match")
        self.if_none_match = headers.get("if-none-match")
        # The directory the request authenticated as, once it has (set on the database's thread).
        self.directory: Directory | None = None
        self._refusal: ScimError | None = None
        self._state = request.app.state
        request.state.scim_call = self  # for the request log (scim.api.request_recording)

    def admit(self, directory: Directory) -> ScimError | None:
        """The directory's rate limit, charged once per request and only once it is authenticated
        (``scim.api.rate_limit`` says why); a grouped write run again (another job of its batch failed) pays once."""
        if self.directory is None:
            self.directory = directory
            limiter: RateLimiter = self._state.scim_rate_limiter
            self._refusal = limiter.refusal(directory.id)
        return self._refusal

    async def read(self, work: Work[T]) -> T:
        def read(session: Session) -> T:
            entered = enter(session, directory_id=self.directory_id, authorization=self.authorization, admit=self.admit)
            if isinstance(entered, ScimError):
                raise entered
            return work(session, entered)

        try:
            return await self._database().query(read)
        finally:
            await self._link(activated=False)

    async def write(self, work: Work[Outcome]) -> Outcome:
        """Run ``work`` in a write transaction; its outcome is answered only after the commit."""

        def write(session: Session) -> Outcome | ScimError:
            entered = enter(
                session, directory_id=self.directory_id, authorization=self.authorization, admit=self.admit, write=True
            )
            # A refusal is answered, not raised (see ``scim.backend.auth.enter``).
            return entered if isinstance(entered, ScimError) else work(session, entered)

        committed = False
        try:
            result = await self._database().transaction(write)
            committed = True
        finally:
            await self._link(activated=committed)
        if isinstance(result, ScimError):
            raise result
        return result

    async def _link(self, *, activated: bool) -> None:
        """The first authorized request links an unlinked directory, even if that request then failed (so Test
        Connection counts). A committed write did it in its own transaction; otherwise it is one more, once:
        directories never go back to unlinked, so each process remembers the ones it saw linked."""
        directory = self.directory
        linked: set[str] = self._state.linked_directories
        if directory is None or directory.id in linked:
            return
        if directory.state == DirectoryState.UNLINKED and not activated:
            await self._database().transaction(partial(activate, directory=directory))
        linked.add(directory.id)

    def _database(self) -> Database:
        database: Database = self._state.database
        return database


def nothing(session: Session, directory: Directory) -> None:
    """The work of a request that only needs to be authenticated and admitted (discovery, say)."""


def respond(outcome: Outcome) -> Response:
    return scim_response(outcome.body, status=outcome.status, location=outcome.location, etag=outcome.etag)


class Parsed(Generic[T]):
    """A request body parsed before the transaction (keeping CPU work out of it); a parse error is raised only
    after authentication, so an unauthorized caller learns nothing about its body."""

    __slots__ = ("_value", "_error")

    def __init__(self, value: T | None = None, error: ScimError | None = None) -> None:
        self._value, self._error = value, error

    def get(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


async def parse_body(request: Request, parse: Callable[[dict[str, Any]], T]) -> Parsed[T]:
    body = await read_body(request, limit=settings_of(request).scim_max_body_bytes)
    try:
        return Parsed(parse(parse_json(request, body)))
    except ScimError as exc:
        return Parsed(error=exc)
