"""SCIM 2.0 routes under ``/scim/v2/{directory_id}/``: thin handlers over ``scim.users`` and ``scim.groups``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from gateway.db import Database
from gateway.models import Directory, DirectoryState
from gateway.settings import Settings
from scim import discovery, groups, users
from scim.auth import activate, authenticate
from scim.errors import ScimError
from scim.filters import parse_filter, translate_filter
from scim.http import (
    ListParams,
    check_if_match,
    list_params,
    parse_json,
    projection_params,
    read_body,
    scim_endpoint,
    scim_response,
)
from scim.normalize import member_values, normalize_resource
from scim.patch import apply_patch, parse_patch
from scim.resources import LIST_SCHEMA, Member, etag, mentions, project, render_group, render_user

T = TypeVar("T")


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _base_url(request: Request) -> str:
    return f"{_settings(request).public_url}/scim/v2/{request.path_params['directory_id']}"


async def _ensure_linked(request: Request) -> None:
    """The first authorized request links an unlinked directory (its own commit, so Test Connection counts even
    if that request then fails). Directories never go back to unlinked, so each process checks each one once."""
    linked: set[str] = request.app.state.linked_directories
    directory_id = request.path_params["directory_id"]
    if directory_id in linked:
        return
    database = _database(request)
    async with database.read() as session:
        directory = await authenticate(
            session, directory_id=directory_id, authorization=request.headers.get("authorization")
        )
    if directory.state == DirectoryState.UNLINKED:
        await database.transaction(lambda session: activate(session, directory=directory))
    linked.add(directory_id)


async def _authorize(session: AsyncSession, request: Request) -> Directory:
    return await authenticate(
        session, directory_id=request.path_params["directory_id"], authorization=request.headers.get("authorization")
    )


@contextlib.asynccontextmanager
async def _reading(request: Request) -> AsyncIterator[tuple[AsyncSession, Directory]]:
    await _ensure_linked(request)
    async with _database(request).read() as session:
        yield session, await _authorize(session, request)


async def _writing(request: Request, work: Callable[[AsyncSession, Directory], Awaitable[Response]]) -> Response:
    """Run ``work`` in a write transaction; the response goes out only after the commit."""
    await _ensure_linked(request)

    async def job(session: AsyncSession) -> Response:
        return await work(session, await _authorize(session, request))

    return await _database(request).transaction(job)


class _Prepared(Generic[T]):
    """A request body parsed before the write transaction (keeping CPU work out of it); a parse error is raised
    only after authentication, so an unauthorized caller learns nothing about its body."""

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
    async with _reading(request):
        return scim_response(discovery.service_provider_config(_base_url(request), _settings(request)))


@scim_endpoint
async def resource_types(request: Request) -> Response:
    async with _reading(request):
        return scim_response(discovery.resource_types(_base_url(request), request.path_params.get("name")))


@scim_endpoint
async def schemas(request: Request) -> Response:
    async with _reading(request):
        return scim_response(discovery.schemas(_base_url(request), request.path_params.get("urn")))


# -- Users ------------------------------------------------------------------------------------------------------


async def _render_users(
    session: AsyncSession, request: Request, rows: list[Any], attributes: list[str] | None, excluded: list[str] | None
) -> list[dict[str, Any]]:
    wants_groups = (not attributes or mentions(attributes, "groups")) and not mentions(excluded, "groups")
    memberships = await users.groups_of_users(session, user_ids=[u.id for u in rows]) if wants_groups else {}
    base = _base_url(request)
    return [
        project(
            render_user(u, base_url=base, groups=memberships.get(u.id, []) if wants_groups else None),
            attributes=attributes,
            excluded=excluded,
        )
        for u in rows
    ]


async def _user_response(
    session: AsyncSession, request: Request, user: Any, *, status: int = 200, groups: list[Member] | None = None
) -> Response:
    """One user; ``groups`` when already known (a new user has none), else read from the memberships."""
    attributes, excluded = projection_params(request)
    if groups is not None:
        body = project(
            render_user(user, base_url=_base_url(request), groups=groups), attributes=attributes, excluded=excluded
        )
    else:
        [body] = await _render_users(session, request, [user], attributes, excluded)
    location = f"{_base_url(request)}/Users/{user.id}"
    return scim_response(body, status=status, location=location if status == 201 else None, etag=etag(user.version))


@scim_endpoint
async def users_collection(request: Request) -> Response:
    if request.method == "POST":
        raw = await _prepared(request, lambda document: normalize_resource(document, resource="User"))

        async def create(session: AsyncSession, directory: Directory) -> Response:
            user = await users.create_user(session, directory=directory, raw=raw.get())
            return await _user_response(session, request, user, status=201, groups=[])

        return await _writing(request, create)
    return await _list_users(request, list_params(request.query_params, _settings(request)))


async def _list_users(request: Request, params: ListParams) -> Response:
    async with _reading(request) as (session, directory):
        where = _where(session, params.filter, "User")
        total, rows = await users.list_users(
            session, directory_id=directory.id, where=where, start_index=params.start_index, count=params.count
        )
        resources = await _render_users(session, request, rows, params.attributes, params.excluded)
    return scim_response(_list_body(total, params.start_index, resources))


@scim_endpoint
async def user_item(request: Request) -> Response:
    user_id = request.path_params["id"]
    if request.method == "GET":
        async with _reading(request) as (session, directory):
            user = await users.get_user(session, directory_id=directory.id, user_id=user_id)
            if request.headers.get("if-none-match") == etag(user.version):
                return scim_response(None, status=304, etag=etag(user.version))
            return await _user_response(session, request, user)
    if request.method == "DELETE":

        async def remove(session: AsyncSession, directory: Directory) -> Response:
            user = await users.get_user(session, directory_id=directory.id, user_id=user_id)
            check_if_match(request, etag(user.version))
            await users.delete_user(session, directory=directory, user=user)
            return scim_response(None, status=204)

        return await _writing(request, remove)
    if request.method == "PUT":
        replacement = await _prepared(request, lambda document: normalize_resource(document, resource="User"))

        async def replace(session: AsyncSession, directory: Directory) -> Response:
            user = await users.get_user(session, directory_id=directory.id, user_id=user_id)
            check_if_match(request, etag(user.version))
            raw = replacement.get()
            await users.save_user(session, directory=directory, user=user, raw=raw)
            return await _user_response(session, request, user)

        return await _writing(request, replace)
    operations = await _prepared(request, parse_patch)

    async def patch(session: AsyncSession, directory: Directory) -> Response:
        user = await users.get_user(session, directory_id=directory.id, user_id=user_id)
        check_if_match(request, etag(user.version))
        raw, _members = apply_patch(user.raw_attributes, operations.get(), resource="User")
        await users.save_user(session, directory=directory, user=user, raw=raw)
        return await _user_response(session, request, user)

    return await _writing(request, patch)


# -- Groups -----------------------------------------------------------------------------------------------------


async def _render_groups(
    session: AsyncSession, request: Request, rows: list[Any], attributes: list[str] | None, excluded: list[str] | None
) -> list[dict[str, Any]]:
    wants_members = (not attributes or mentions(attributes, "members")) and not mentions(excluded, "members")
    members = await groups.members_of_groups(session, group_ids=[g.id for g in rows]) if wants_members else {}
    base = _base_url(request)
    return [
        project(
            render_group(g, base_url=base, members=members.get(g.id, []) if wants_members else None),
            attributes=attributes,
            excluded=excluded,
        )
        for g in rows
    ]


async def _group_response(session: AsyncSession, request: Request, group: Any, *, status: int = 200) -> Response:
    attributes, excluded = projection_params(request)
    [body] = await _render_groups(session, request, [group], attributes, excluded)
    location = f"{_base_url(request)}/Groups/{group.id}"
    return scim_response(body, status=status, location=location if status == 201 else None, etag=etag(group.version))


@scim_endpoint
async def groups_collection(request: Request) -> Response:
    if request.method == "POST":
        body = await _prepared(
            request,
            lambda document: (normalize_resource(document, resource="Group"), member_values(_members_of(document))),
        )

        async def create(session: AsyncSession, directory: Directory) -> Response:
            raw, member_ids = body.get()
            group = await groups.create_group(session, directory=directory, raw=raw, member_ids=member_ids)
            return await _group_response(session, request, group, status=201)

        return await _writing(request, create)
    return await _list_groups(request, list_params(request.query_params, _settings(request)))


async def _list_groups(request: Request, params: ListParams) -> Response:
    async with _reading(request) as (session, directory):
        where = _where(session, params.filter, "Group")
        total, rows = await groups.list_groups(
            session, directory_id=directory.id, where=where, start_index=params.start_index, count=params.count
        )
        resources = await _render_groups(session, request, rows, params.attributes, params.excluded)
    return scim_response(_list_body(total, params.start_index, resources))


def _members_of(document: dict[str, Any]) -> Any:
    return next((v for k, v in document.items() if k.lower() == "members"), None)


def _has_members(document: dict[str, Any]) -> bool:
    return any(k.lower() == "members" for k in document)


@scim_endpoint
async def group_item(request: Request) -> Response:
    group_id = request.path_params["id"]
    if request.method == "GET":
        async with _reading(request) as (session, directory):
            group = await groups.get_group(session, directory_id=directory.id, group_id=group_id)
            if request.headers.get("if-none-match") == etag(group.version):
                return scim_response(None, status=304, etag=etag(group.version))
            return await _group_response(session, request, group)
    if request.method == "DELETE":

        async def remove(session: AsyncSession, directory: Directory) -> Response:
            group = await groups.get_group(session, directory_id=directory.id, group_id=group_id)
            check_if_match(request, etag(group.version))
            await groups.delete_group(session, directory=directory, group=group)
            return scim_response(None, status=204)

        return await _writing(request, remove)
    if request.method == "PUT":
        # An omitted `members` is not asserted (RFC 7644 §3.5.1): memberships stay; `[]` empties the group.
        replacement = await _prepared(
            request,
            lambda document: (
                normalize_resource(document, resource="Group"),
                member_values(_members_of(document)) if _has_members(document) else None,
            ),
        )

        async def replace(session: AsyncSession, directory: Directory) -> Response:
            group = await groups.get_group(session, directory_id=directory.id, group_id=group_id)
            check_if_match(request, etag(group.version))
            raw, member_ids = replacement.get()
            await groups.save_group(session, directory=directory, group=group, raw=raw)
            if member_ids is not None:
                await groups.replace_members(session, directory=directory, group=group, user_ids=member_ids)
            return await _group_response(session, request, group)

        return await _writing(request, replace)
    operations = await _prepared(request, parse_patch)

    async def patch(session: AsyncSession, directory: Directory) -> Response:
        group = await groups.get_group(session, directory_id=directory.id, group_id=group_id)
        check_if_match(request, etag(group.version))
        raw, changes = apply_patch(group.raw_attributes, operations.get(), resource="Group")
        await groups.save_group(session, directory=directory, group=group, raw=raw)
        await groups.apply_member_changes(session, directory=directory, group=group, changes=changes)
        if changes and not _wants_body(request):
            return scim_response(None, status=204)
        return await _group_response(session, request, group)

    return await _writing(request, patch)


def _wants_body(request: Request) -> bool:
    """Member-only PATCHes answer 204 unless attributes were asked for (RFC 7644 §3.5.2 allows either)."""
    attributes, _ = projection_params(request)
    return attributes is not None


# -- shared -----------------------------------------------------------------------------------------------------


def _where(session: AsyncSession, text: str | None, resource: str) -> Any | None:
    if text is None:
        return None
    dialect = session.get_bind().dialect.name
    return translate_filter(parse_filter(text), resource=resource, dialect=dialect)  # type: ignore[arg-type]


def _list_body(total: int, start_index: int, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


_SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@scim_endpoint
async def search(request: Request) -> Response:
    """POST ``/Users/.search`` and ``/Groups/.search`` (RFC 7644 §3.4.3): a list query with its parameters in the
    body, so filters never appear in URLs or access logs."""
    body = await _prepared(request, lambda document: list_params(document, _settings(request)))
    async with _reading(request):
        params = body.get()
    listing = _list_users if request.url.path.endswith("/Users/.search") else _list_groups
    return await listing(request, params)


@scim_endpoint
async def search_everything(request: Request) -> Response:
    async with _reading(request):
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
        Route(f"{prefix}/ServiceProviderConfig", service_provider_config, methods=["GET"]),
        Route(f"{prefix}/ResourceTypes", resource_types, methods=["GET"]),
        Route(f"{prefix}/ResourceTypes/{{name}}", resource_types, methods=["GET"]),
        Route(f"{prefix}/Schemas", schemas, methods=["GET"]),
        Route(f"{prefix}/Schemas/{{urn}}", schemas, methods=["GET"]),
        Route(f"{prefix}/.search", search_everything, methods=["POST"]),
        Route(f"{prefix}/Users/.search", search, methods=["POST"], name="search_users"),
        Route(f"{prefix}/Groups/.search", search, methods=["POST"], name="search_groups"),
        Route(f"{prefix}/Users", users_collection, methods=["GET", "POST"]),
        Route(f"{prefix}/Users/{{id}}", user_item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(f"{prefix}/Groups", groups_collection, methods=["GET", "POST"]),
        Route(f"{prefix}/Groups/{{id}}", group_item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(f"{prefix}/{{rest:path}}", _catch_all, methods=_ALL_METHODS),
    ]
