"""One SCIM request's way to the store: what its database job needs from the request (read on the event loop), its
single charge against the directory's rate limit, and the linking of the directory it authenticated.

A handler hands ``Call.read`` / ``Call.write`` a plain function over a ``Session`` and the authenticated directory;
it runs where the database is fastest to reach (``Database.query`` / ``Database.transaction``) and returns data
(``scim.backend.resources.Outcome``), which the handler turns into the response after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.settings import Settings
from gateway.store.batch_driver import Later
from gateway.store.credentials import hash_secret
from gateway.store.database import Database
from gateway.store.models import Directory, DirectoryState
from gateway.store.prepared import Reader
from scim.api.http import parse_json, projection_params, read_body, scim_response
from scim.api.rate_limit import Doorman, RateLimiter
from scim.backend.auth import activate, bearer_token, enter, enter_read
from scim.backend.lookups import Found
from scim.backend.resources import Outcome
from scim.protocol.errors import ScimError
from scim.protocol.limits import Limits

T = TypeVar("T")
Work = Callable[[Session, Directory], T]
Lookup = Callable[[Reader, Directory, Found], T]  # the answer from what a lookup found
# Bodies larger than this are parsed on a thread: the event loop keeps serving other requests meanwhile.
_PARSE_INLINE_BYTES = 16 * 1024


def database_of(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


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
        "_address",
        "_credentials",
        "_refusal",
        "_extra_charge",
        "_state",
    )

    def __init__(self, request: Request) -> None:
        headers = request.headers
        self.directory_id: str = request.path_params["directory_id"]
        self.authorization = headers.get("authorization")
        self.base_url = f"{settings_of(request).public_url}/scim/v2/{self.directory_id}"
        # Most requests have no query string: not even an empty QueryParams is built for them.
        projected = request.scope.get("query_string")
        self.attributes, self.excluded = projection_params(request) if projected else (None, None)
        self.if_match = headers.get("if-match")
        self.if_none_match = headers.get("if-none-match")
        # The directory the request authenticated as, once it has (set on the database's thread).
        self.directory: Directory | None = None
        self._refusal: ScimError | None = None
        self._extra_charge = 0.0  # taken by ``charge`` beyond the admitted request: given back with it (``write``)
        self._state = request.app.state
        self._address = request.client.host if request.client else ""
        # (directory id, token hash): what the doorman knows a request by; None without a well-formed bearer token.
        self._credentials: tuple[str, str] | None = None
        with contextlib.suppress(ScimError):
            self._credentials = (self.directory_id, hash_secret(bearer_token(self.authorization)))
        request.state.scim_call = self  # for the request log (scim.api.request_recording)

    def admit(self, directory: Directory) -> ScimError | None:
        """The directory's rate limit, charged once per request and only once it is authenticated
        (``scim.api.rate_limit`` says why); a grouped write run again (another job of its batch failed) pays once."""
        if self.directory is None:
            self.directory = directory
            limiter: RateLimiter = self._state.scim_rate_limiter
            self._refusal = limiter.refusal(directory.id)
            if self._credentials is not None:
                self._doorman().succeeded(self._credentials)
        return self._refusal

    def charge(self, requests: float) -> None:
        """Charge the directory's rate limit for more than the one request it admitted (a large PATCH)."""
        if self.directory is not None and requests > 0:
            limiter: RateLimiter = self._state.scim_rate_limiter
            limiter.charge(self.directory.id, requests)
            self._extra_charge += requests

    async def read(self, work: Work[T | ScimError]) -> T:
        """Run ``work`` in a read-only job; a ``ScimError`` it returns (or raises) is the answer."""

        def read(session: Session) -> T | ScimError:
            entered = enter(session, directory_id=self.directory_id, authorization=self.authorization, admit=self.admit)
            return entered if isinstance(entered, ScimError) else work(session, entered)

        self._door()
        try:
            return self._answer(await self._database().query(read))
        finally:
            await self._link(activated=False)

    async def lookup(self, work: Callable[[Reader], Found], then: Lookup[T | ScimError]) -> T:
        """A read by index (``Database.lookup``): ``work`` reads the directory's row together with what the request
        is about (``scim.backend.lookups``), the request is authenticated and admitted by that row, then ``then``
        makes the answer from the resources read. No statement of its own for authentication; 401 before 404."""

        def read(reader: Reader) -> T | ScimError:
            found = work(reader)
            entered = enter_read(found.directory, authorization=self.authorization, admit=self.admit)
            if isinstance(entered, ScimError):
                return entered
            return then(reader, entered, found)

        self._door()
        try:
            return self._answer(await self._database().lookup(read))
        finally:
            await self._link(activated=False)

    async def write(self, work: Work[T | ScimError | Later[T | ScimError]], *, light: bool = False) -> T:
        """Run ``work`` in a write transaction; its outcome is answered only after the commit. ``light``: it writes
        one small resource, by index (``Database.transaction``).

        A refusal ``work`` finds before writing anything (not found, a failed precondition, an unparsable body) is
        best returned, not raised: on SQLite the job shares its transaction with other requests' jobs, and though a
        raising job only rolls back its own savepoint, a returned refusal costs nothing at all."""

        def write(session: Session) -> T | ScimError | Later[T | ScimError]:
            entered = enter(
                session, directory_id=self.directory_id, authorization=self.authorization, admit=self.admit, write=True
            )
            if isinstance(entered, ScimError) and entered.status == 401 and self.directory is not None:
                # A rerun that read the directory under its lock refused the token a first run had taken from the
                # snapshot it started from (rotated meanwhile elsewhere): the request is not an authenticated one,
                # and gives the directory's rate limit back what it was charged (a large PATCH's extra too).
                if self._refusal is None:
                    limiter: RateLimiter = self._state.scim_rate_limiter
                    limiter.refund(self.directory.id, 1.0 + self._extra_charge)
                self.directory, self._refusal, self._extra_charge = None, None, 0.0
            return entered if isinstance(entered, ScimError) else work(session, entered)

        self._door()
        committed = False
        try:
            result: T | ScimError = await self._database().transaction(write, light=light)
            committed = not isinstance(result, ScimError)
        finally:
            await self._link(activated=committed)
        return self._answer(result)

    def _door(self) -> None:
        """Before any database work: a request without a bearer token is refused at once, and an address that sent
        too many wrong ones waits (``scim.api.rate_limit.Doorman``)."""
        doorman = self._doorman()
        refusal = doorman.refusal(self._address, self._credentials)
        if refusal is not None:
            raise refusal
        if self._credentials is None:
            doorman.failed(self._address, None)
            raise ScimError(401, "Missing or malformed bearer token")

    def _answer(self, result: T | ScimError) -> T:
        if isinstance(result, ScimError):
            if result.status == 401:
                self._doorman().failed(self._address, self._credentials)
            raise result
        return result

    def _doorman(self) -> Doorman:
        doorman: Doorman = self._state.scim_doorman
        return doorman

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
    """A request body parsed before the transaction (keeping CPU work out of it); a parse error is answered only
    after authentication, so an unauthorized caller learns nothing about its body. ``small``: it was parsed on the
    event loop (see ``parse_body``), so what it asks for is small too."""

    __slots__ = ("_value", "error", "small")

    def __init__(self, value: T | None = None, error: ScimError | None = None, *, small: bool = True) -> None:
        self._value, self.error, self.small = value, error, small

    def get(self) -> T:
        if self.error is not None:
            raise self.error
        return self._value  # type: ignore[return-value]


def limits_of(request: Request) -> Limits:
    settings = settings_of(request)
    return Limits(max_operations=settings.scim_max_patch_operations, max_values=settings.scim_max_multi_values)


async def parse_body(request: Request, parse: Callable[[dict[str, Any], Limits], T]) -> Parsed[T]:
    """The body read (up to its size limit) and parsed within the request limits, on a thread when it is large."""
    body = await read_body(request, limit=settings_of(request).scim_max_body_bytes)
    limits = limits_of(request)

    small = len(body) <= _PARSE_INLINE_BYTES

    def parsed() -> Parsed[T]:
        try:
            return Parsed(parse(parse_json(request, body), limits), small=small)
        except ScimError as exc:
            return Parsed(error=exc, small=small)

    return parsed() if small else await asyncio.to_thread(parsed)
