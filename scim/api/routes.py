"""SCIM 2.0 routes under ``/scim/v2/{directory_id}/``: thin handlers over ``scim.users`` and ``scim.groups``.

Each handler reads what it needs from the request on the event loop (a ``_Call``), parses the body there, and hands
a plain function over a ``Session`` to the store (``Database.transaction`` / ``Database.query``), which runs it
where the database is fastest to reach; the response is built inside that function and sent after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.models import Directory, DirectoryGroup, DirectoryState, DirectoryUser
from scim.api.http import (
    ListParams,
    check_if_match,
    list_params,
    parse_json,
    projection_params,
    read_body,
    scim_endpoint,
    scim_response,
)
from scim.api.rate_limit import RateLimiter
from scim.backend import groups, users
from scim.backend.auth import activate, authenticate
from scim.protocol import discovery, urns
from scim.protocol.errors import ScimError
from scim.protocol.filter_sql import translate_filter
from scim.protocol.filters import parse_filter
from scim.protocol.normalize import member_values, normalize_resource
from scim.protocol.patch import apply_patch, parse_patch
from scim.protocol.render import Member, etag, mentions, project, render_group, render_user
from scim.protocol.schemas import Resource

T = TypeVar("T")


@dataclass(frozen=True)
class _Call:
    """What a handler's database function needs from the request, read on the event loop."""

    directory_id: str
    authorization: str | None
    base_url: str
    attributes: list[str] | None
    excluded: list[str] | None
    if_match: str | None
    if_none_match: str | None

    def authorize(self, session: Session, *, lock: bool = False) -> Directory:
        return authenticate(session, directory_id=self.directory_id, authorization=self.authorization, lock=lock)


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _call(request: Request) -> _Call:
    directory_id = request.path_params["directory_id"]
    attributes, excluded = projection_params(request)
    return _Call(
        directory_id=directory_id,
        authorization=request.headers.get("authorization"),
        base_url=f"{_settings(request).public_url}/scim/v2/{directory_id}",
        attributes=attributes,
        excluded=excluded,
        if_match=request.headers.get("if-match"),
        if_none_match=request.headers.get("if-none-match"),
    )


async def _ensure_linked(request: Request, call: _Call) -> None:
    """The first authorized request links an unlinked directory (its own commit, so Test Connection counts even
    if that request then fails). Directories never go back to unlinked, so each process checks each one once."""
    linked: set[str] = request.app.state.linked_directories
    if call.directory_id in linked:
        return
    database = _database(request)
    directory = await database.query(call.authorize)
    if directory.state == DirectoryState.UNLINKED:
        await database.transaction(lambda session: activate(session, directory=directory))
    linked.add(call.directory_id)


def _throttled(request: Request, directory: Directory) -> ScimError | None:
    """The directory's rate limit, charged once per request and only once it is authenticated (``scim.rate_limit``
    says why). It runs in the request's database job, right after authentication; the verdict is kept on the
    request, so a search (two jobs) or a grouped write run again (another job of its batch failed) pays once."""
    state = request.state
    if not hasattr(state, "scim_refusal"):
        limiter: RateLimiter = request.app.state.scim_rate_limiter
        state.scim_refusal = limiter.refusal(directory.id)
    refusal: ScimError | None = state.scim_refusal
    return refusal


async def _reading(request: Request, work: Callable[[Session, Directory], T]) -> T:
    call = _call(request)
    await _ensure_linked(request, call)

    def read(session: Session) -> T:
        directory = call.authorize(session)
        if (refusal := _throttled(request, directory)) is not None:
            raise refusal
        return work(session, directory)

    return await _database(request).query(read)


async def _writing(request: Request, call: _Call, work: Callable[[Session, Directory], Response]) -> Response:
    """Run ``work`` in a write transaction; the response goes out only after the commit."""
    await _ensure_linked(request, call)

    def write(session: Session) -> Response:
        directory = call.authorize(session, lock=True)
        if (refusal := _throttled(request, directory)) is not None:
            # Answered, not raised: raising would roll back the whole grouped batch and rerun its jobs one by one.
            return refusal.to_response()
        return work(session, directory)

    return await _database(request).transaction(write)


class _Prepared(Generic[T]):
    """A request body parsed before the transaction (keeping CPU work out of it); a parse error is raised only
    after authentication, so an unauthorized caller learns nothing about its body."""

    def __init__(self, value: T | None = None, error: ScimError | None = None) -> None:
        self._value, self._error = value, error

    def get(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


async def _prepared(request: Request, parse: Callable[[dict[str, Any]], T]) -> _Prepared[T]:
    body = await read_body(request, limit=_settings(request).scim_max_body_bytes)
    try:
        return _Prepared(parse(parse_json(request, body)))
    except ScimError as exc:
        return _Prepared(error=exc)


# -- discovery (RFC 7644 §4) ------------------------------------------------------------------------------------


@scim_endpoint
async def service_provider_config(request: Request) -> Response:
    await _reading(request, lambda session, directory: None)
    base_url = _call(request).base_url
    return scim_response(discovery.service_provider_config(base_url, _settings(request)))


@scim_endpoint
async def resource_types(request: Request) -> Response:
    await _reading(request, lambda session, directory: None)
    return scim_response(discovery.resource_types(_call(request).base_url, request.path_params.get("name")))


@scim_endpoint
async def schemas(request: Request) -> Response:
    await _reading(request, lambda session, directory: None)
    return scim_response(discovery.schemas(_call(request).base_url, request.path_params.get("urn")))


# -- rendering --------------------------------------------------------------------------------------------------


def _wants(attributes: list[str] | None, excluded: list[str] | None, name: str) -> bool:
    """Whether a response needs the computed ``groups`` / ``members`` (skipping their query when it does not)."""
    return (not attributes or mentions(attributes, name)) and not mentions(excluded, name)


def _render_users(
    session: Session, call: _Call, rows: list[DirectoryUser], attributes: list[str] | None, excluded: list[str] | None
) -> list[dict[str, Any]]:
    wants_groups = _wants(attributes, excluded, "groups")
    memberships = users.groups_of_users(session, user_ids=[u.id for u in rows]) if wants_groups else {}
    return [
        project(
            render_user(u, base_url=call.base_url, groups=memberships.get(u.id, []) if wants_groups else None),
            attributes=attributes,
            excluded=excluded,
        )
        for u in rows
    ]


def _user_response(
    session: Session, call: _Call, user: DirectoryUser, *, status: int = 200, groups: list[Member] | None = None
) -> Response:
    """One user; ``groups`` when already known (a new user has none), else read from the memberships."""
    if groups is not None:
        rendered = render_user(user, base_url=call.base_url, groups=groups)
        body = project(rendered, attributes=call.attributes, excluded=call.excluded)
    else:
        [body] = _render_users(session, call, [user], call.attributes, call.excluded)
    location = f"{call.base_url}/Users/{user.id}" if status == 201 else None
    return scim_response(body, status=status, location=location, etag=etag(user.version))


def _render_groups(
    session: Session, call: _Call, rows: list[DirectoryGroup], attributes: list[str] | None, excluded: list[str] | None
) -> list[dict[str, Any]]:
    wants_members = _wants(attributes, excluded, "members")
    members = groups.members_of_groups(session, group_ids=[g.id for g in rows]) if wants_members else {}
    return [
        project(
            render_group(g, base_url=call.base_url, members=members.get(g.id, []) if wants_members else None),
            attributes=attributes,
            excluded=excluded,
        )
        for g in rows
    ]


def _group_response(session: Session, call: _Call, group: DirectoryGroup, *, status: int = 200) -> Response:
    [body] = _render_groups(session, call, [group], call.attributes, call.excluded)
    location = f"{call.base_url}/Groups/{group.id}" if status == 201 else None
    return scim_response(body, status=status, location=location, etag=etag(group.version))


def _list_body(total: int, start_index: int, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [urns.LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def _where(session: Session, text: str | None, resource: Resource) -> Any | None:
    if text is None:
        return None
    return translate_filter(parse_filter(text), resource=resource, dialect=session.get_bind().dialect.name)


# -- Users ------------------------------------------------------------------------------------------------------


async def _list_users(request: Request, params: ListParams) -> Response:
    call = _call(request)

    def listing(session: Session, directory: Directory) -> dict[str, Any]:
        where = _where(session, params.filter, "User")
        total, rows = users.list_users(
            session, directory_id=directory.id, where=where, start_index=params.start_index, count=params.count
        )
        return _list_body(
            total, params.start_index, _render_users(session, call, rows, params.attributes, params.excluded)
        )

    return scim_response(await _reading(request, listing))


@scim_endpoint
async def users_collection(request: Request) -> Response:
    if request.method != "POST":
        return await _list_users(request, list_params(request.query_params, _settings(request)))
    call = _call(request)
    raw = await _prepared(request, lambda document: normalize_resource(document, resource="User"))

    def create(session: Session, directory: Directory) -> Response:
        user = users.create_user(session, directory=directory, raw=raw.get())
        return _user_response(session, call, user, status=201, groups=[])

    return await _writing(request, call, create)


@scim_endpoint
async def user_item(request: Request) -> Response:
    call, user_id = _call(request), request.path_params["id"]
    if request.method == "GET":

        def fetch(session: Session, directory: Directory) -> Response:
            user = users.get_user(session, directory_id=directory.id, user_id=user_id)
            if call.if_none_match == etag(user.version):
                return scim_response(None, status=304, etag=etag(user.version))
            return _user_response(session, call, user)

        return await _reading(request, fetch)
    if request.method == "DELETE":

        def remove(session: Session, directory: Directory) -> Response:
            user = users.get_user(session, directory_id=directory.id, user_id=user_id)
            check_if_match(call.if_match, etag(user.version))
            users.delete_user(session, directory=directory, user=user)
            return scim_response(None, status=204)

        return await _writing(request, call, remove)
    if request.method == "PUT":
        replacement = await _prepared(request, lambda document: normalize_resource(document, resource="User"))

        def replace(session: Session, directory: Directory) -> Response:
            user = users.get_user(session, directory_id=directory.id, user_id=user_id)
            check_if_match(call.if_match, etag(user.version))
            users.save_user(session, directory=directory, user=user, raw=replacement.get())
            return _user_response(session, call, user)

        return await _writing(request, call, replace)
    operations = await _prepared(request, parse_patch)

    def patch(session: Session, directory: Directory) -> Response:
        user = users.get_user(session, directory_id=directory.id, user_id=user_id)
        check_if_match(call.if_match, etag(user.version))
        raw, _members = apply_patch(user.raw_attributes, operations.get(), resource="User")
        users.save_user(session, directory=directory, user=user, raw=raw)
        return _user_response(session, call, user)

    return await _writing(request, call, patch)


# -- Groups -----------------------------------------------------------------------------------------------------


def _members_of(document: dict[str, Any]) -> Any:
    return next((v for k, v in document.items() if k.lower() == "members"), None)


def _has_members(document: dict[str, Any]) -> bool:
    return any(k.lower() == "members" for k in document)


async def _list_groups(request: Request, params: ListParams) -> Response:
    call = _call(request)

    def listing(session: Session, directory: Directory) -> dict[str, Any]:
        where = _where(session, params.filter, "Group")
        total, rows = groups.list_groups(
            session, directory_id=directory.id, where=where, start_index=params.start_index, count=params.count
        )
        return _list_body(
            total, params.start_index, _render_groups(session, call, rows, params.attributes, params.excluded)
        )

    return scim_response(await _reading(request, listing))


@scim_endpoint
async def groups_collection(request: Request) -> Response:
    if request.method != "POST":
        return await _list_groups(request, list_params(request.query_params, _settings(request)))
    call = _call(request)
    body = await _prepared(
        request,
        lambda document: (normalize_resource(document, resource="Group"), member_values(_members_of(document))),
    )

    def create(session: Session, directory: Directory) -> Response:
        raw, members = body.get()
        group = groups.create_group(session, directory=directory, raw=raw, members=members)
        return _group_response(session, call, group, status=201)

    return await _writing(request, call, create)


@scim_endpoint
async def group_item(request: Request) -> Response:
    call, group_id = _call(request), request.path_params["id"]
    if request.method == "GET":

        def fetch(session: Session, directory: Directory) -> Response:
            group = groups.get_group(session, directory_id=directory.id, group_id=group_id)
            if call.if_none_match == etag(group.version):
                return scim_response(None, status=304, etag=etag(group.version))
            return _group_response(session, call, group)

        return await _reading(request, fetch)
    if request.method == "DELETE":

        def remove(session: Session, directory: Directory) -> Response:
            group = groups.get_group(session, directory_id=directory.id, group_id=group_id)
            check_if_match(call.if_match, etag(group.version))
            groups.delete_group(session, directory=directory, group=group)
            return scim_response(None, status=204)

        return await _writing(request, call, remove)
    if request.method == "PUT":
        # An omitted `members` is not asserted (RFC 7644 §3.5.1): memberships stay; `[]` empties the group.
        replacement = await _prepared(
            request,
            lambda document: (
                normalize_resource(document, resource="Group"),
                member_values(_members_of(document)) if _has_members(document) else None,
            ),
        )

        def replace(session: Session, directory: Directory) -> Response:
            group = groups.get_group(session, directory_id=directory.id, group_id=group_id)
            check_if_match(call.if_match, etag(group.version))
            raw, members = replacement.get()
            groups.save_group(session, directory=directory, group=group, raw=raw)
            if members is not None:
                groups.replace_members(session, directory=directory, group=group, members=members)
            return _group_response(session, call, group)

        return await _writing(request, call, replace)
    operations = await _prepared(request, parse_patch)

    def patch(session: Session, directory: Directory) -> Response:
        group = groups.get_group(session, directory_id=directory.id, group_id=group_id)
        check_if_match(call.if_match, etag(group.version))
        raw, changes = apply_patch(group.raw_attributes, operations.get(), resource="Group")
        groups.save_group(session, directory=directory, group=group, raw=raw)
        groups.apply_member_changes(session, directory=directory, group=group, changes=changes)
        # Member-only PATCHes answer 204 unless attributes were asked for (RFC 7644 §3.5.2 allows either), so a
        # 10,000-member group is never rendered to add one member.
        if changes and call.attributes is None:
            return scim_response(None, status=204)
        return _group_response(session, call, group)

    return await _writing(request, call, patch)


# -- search and the rest ----------------------------------------------------------------------------------------


@scim_endpoint
async def search(request: Request) -> Response:
    """POST ``/Users/.search`` and ``/Groups/.search`` (RFC 7644 §3.4.3): a list query with its parameters in the
    body, so filters never appear in URLs or access logs."""
    body = await _prepared(request, lambda document: list_params(document, _settings(request)))
    await _reading(request, lambda session, directory: None)
    params = body.get()
    listing = _list_users if request.url.path.endswith("/Users/.search") else _list_groups
    return await listing(request, params)


@scim_endpoint
async def search_everything(request: Request) -> Response:
    await _reading(request, lambda session, directory: None)
    raise ScimError(
        501, "Searching several resource types at once is not supported; use /Users/.search or /Groups/.search"
    )


async def _unrouted(request: Request) -> Response:
    """405 with ``Allow`` when the path exists for other methods, else 404 (both in SCIM's error shape)."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.endpoint is not _catch_all and route.methods:
            match, _ = route.matches(request.scope)
            if match == Match.PARTIAL:
                allowed |= route.methods
    if allowed:
        raise ScimError(405, f"{request.method} is not supported here", headers={"Allow": ", ".join(sorted(allowed))})
    raise ScimError(404, f"No SCIM endpoint at {request.url.path}")


_catch_all = scim_endpoint(_unrouted)
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def routes() -> list[Route]:
    prefix = "/scim/v2/{directory_id}"
    return [
        # The provisioning traffic first: Starlette tries routes in order.
        Route(f"{prefix}/Users", users_collection, methods=["GET", "POST"]),
        Route(f"{prefix}/Users/{{id}}", user_item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(f"{prefix}/Groups", groups_collection, methods=["GET", "POST"]),
        Route(f"{prefix}/Groups/{{id}}", group_item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(f"{prefix}/ServiceProviderConfig", service_provider_config, methods=["GET"]),
        Route(f"{prefix}/ResourceTypes", resource_types, methods=["GET"]),
        Route(f"{prefix}/ResourceTypes/{{name}}", resource_types, methods=["GET"]),
        Route(f"{prefix}/Schemas", schemas, methods=["GET"]),
        Route(f"{prefix}/Schemas/{{urn}}", schemas, methods=["GET"]),
        Route(f"{prefix}/.search", search_everything, methods=["POST"]),
        Route(f"{prefix}/Users/.search", search, methods=["POST"], name="search_users"),
        Route(f"{prefix}/Groups/.search", search, methods=["POST"], name="search_groups"),
        Route(f"{prefix}/{{rest:path}}", _catch_all, methods=_ALL_METHODS),
    ]
