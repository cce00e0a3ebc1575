"""SCIM 2.0 routes under ``/scim/v2/{directory_id}/``: thin handlers over ``scim.users`` and ``scim.groups``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.db import Database
from gateway.models import Directory, DirectoryState
from gateway.settings import Settings
from scim import discovery, groups, users
from scim.auth import activate, authenticate
from scim.errors import ScimError
from scim.filters import parse_filter, translate_filter
from scim.http import (
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
from scim.resources import LIST_SCHEMA, etag, mentions, project, render_group, render_user


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _base_url(request: Request) -> str:
    return f"{_settings(request).public_url}/scim/v2/{request.path_params['directory_id']}"


@contextlib.asynccontextmanager
async def _authorized(request: Request, *, write: bool) -> AsyncIterator[tuple[AsyncSession, Directory]]:
    """A session and the directory its bearer token opens; the first authorized request activates the directory."""
    database = _database(request)
    opener = database.write if write else database.read
    async with opener() as session:
        directory = await authenticate(
            session,
            directory_id=request.path_params["directory_id"],
            authorization=request.headers.get("authorization"),
        )
        if directory.state == DirectoryState.UNLINKED:
            # Committed on its own, so Test Connection links the directory even if this request then fails.
            if write:
                await activate(session, directory=directory)
                await session.commit()
            else:
                async with database.write() as activation:
                    await activate(activation, directory=directory)
        yield session, directory


async def _json_body(request: Request) -> dict[str, Any]:
    return parse_json(request, await read_body(request, limit=_settings(request).scim_max_body_bytes))


# -- discovery (RFC 7644 §4) ------------------------------------------------------------------------------------


@scim_endpoint
async def service_provider_config(request: Request) -> Response:
    async with _authorized(request, write=False):
        return scim_response(discovery.service_provider_config(_base_url(request), _settings(request)))


@scim_endpoint
async def resource_types(request: Request) -> Response:
    async with _authorized(request, write=False):
        return scim_response(discovery.resource_types(_base_url(request), request.path_params.get("name")))


@scim_endpoint
async def schemas(request: Request) -> Response:
    async with _authorized(request, write=False):
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


async def _user_response(session: AsyncSession, request: Request, user: Any, *, status: int = 200) -> Response:
    attributes, excluded = projection_params(request)
    [body] = await _render_users(session, request, [user], attributes, excluded)
    location = f"{_base_url(request)}/Users/{user.id}"
    return scim_response(body, status=status, location=location if status == 201 else None, etag=etag(user.version))


@scim_endpoint
async def users_collection(request: Request) -> Response:
    if request.method == "POST":
        document = await _json_body(request)
        async with _authorized(request, write=True) as (session, directory):
            raw = normalize_resource(document, resource="User")
            user = await users.create_user(session, directory=directory, raw=raw)
            return await _user_response(session, request, user, status=201)
    params = list_params(request, _settings(request))
    async with _authorized(request, write=False) as (session, directory):
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
        async with _authorized(request, write=False) as (session, directory):
            user = await users.get_user(session, directory_id=directory.id, user_id=user_id)
            if request.headers.get("if-none-match") == etag(user.version):
                return scim_response(None, status=304, etag=etag(user.version))
            return await _user_response(session, request, user)
    if request.method == "DELETE":
        async with _authorized(request, write=True) as (session, directory):
            user = await users.get_user(session, directory_id=directory.id, user_id=user_id)
            check_if_match(request, etag(user.version))
            await users.delete_user(session, directory=directory, user_id=user_id)
        return scim_response(None, status=204)
    document = await _json_body(request)
    async with _authorized(request, write=True) as (session, directory):
        user = await users.get_user(session, directory_id=directory.id, user_id=user_id)
        check_if_match(request, etag(user.version))
        if request.method == "PUT":
            raw = normalize_resource(document, resource="User")
        else:
            raw, _members = apply_patch(user.raw_attributes, parse_patch(document), resource="User")
        await users.save_user(session, directory=directory, user=user, raw=raw)
        return await _user_response(session, request, user)


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
        document = await _json_body(request)
        async with _authorized(request, write=True) as (session, directory):
            raw = normalize_resource(document, resource="Group")
            group = await groups.create_group(
                session, directory=directory, raw=raw, member_ids=member_values(document.get("members"))
            )
            return await _group_response(session, request, group, status=201)
    params = list_params(request, _settings(request))
    async with _authorized(request, write=False) as (session, directory):
        where = _where(session, params.filter, "Group")
        total, rows = await groups.list_groups(
            session, directory_id=directory.id, where=where, start_index=params.start_index, count=params.count
        )
        resources = await _render_groups(session, request, rows, params.attributes, params.excluded)
    return scim_response(_list_body(total, params.start_index, resources))


@scim_endpoint
async def group_item(request: Request) -> Response:
    group_id = request.path_params["id"]
    if request.method == "GET":
        async with _authorized(request, write=False) as (session, directory):
            group = await groups.get_group(session, directory_id=directory.id, group_id=group_id)
            if request.headers.get("if-none-match") == etag(group.version):
                return scim_response(None, status=304, etag=etag(group.version))
            return await _group_response(session, request, group)
    if request.method == "DELETE":
        async with _authorized(request, write=True) as (session, directory):
            group = await groups.get_group(session, directory_id=directory.id, group_id=group_id)
            check_if_match(request, etag(group.version))
            await groups.delete_group(session, directory=directory, group_id=group_id)
        return scim_response(None, status=204)
    document = await _json_body(request)
    async with _authorized(request, write=True) as (session, directory):
        group = await groups.get_group(session, directory_id=directory.id, group_id=group_id)
        check_if_match(request, etag(group.version))
        if request.method == "PUT":
            raw = normalize_resource(document, resource="Group")
            await groups.save_group(session, directory=directory, group=group, raw=raw)
            # An omitted `members` is not asserted (RFC 7644 §3.5.1): memberships stay; `[]` empties the group.
            if "members" in {k.lower() for k in document}:
                await groups.replace_members(
                    session, directory=directory, group=group, user_ids=member_values(document.get("members"))
                )
            return await _group_response(session, request, group)
        raw, changes = apply_patch(group.raw_attributes, parse_patch(document), resource="Group")
        await groups.save_group(session, directory=directory, group=group, raw=raw)
        await groups.apply_member_changes(session, directory=directory, group=group, changes=changes)
        if changes and not _wants_body(request):
            return scim_response(None, status=204)
        return await _group_response(session, request, group)


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


async def _not_found(request: Request) -> Response:
    raise ScimError(404, f"No SCIM endpoint at {request.url.path}")


def routes() -> list[Route]:
    prefix = "/scim/v2/{directory_id}"
    return [
        Route(f"{prefix}/ServiceProviderConfig", service_provider_config, methods=["GET"]),
        Route(f"{prefix}/ResourceTypes", resource_types, methods=["GET"]),
        Route(f"{prefix}/ResourceTypes/{{name}}", resource_types, methods=["GET"]),
        Route(f"{prefix}/Schemas", schemas, methods=["GET"]),
        Route(f"{prefix}/Schemas/{{urn}}", schemas, methods=["GET"]),
        Route(f"{prefix}/Users", users_collection, methods=["GET", "POST"]),
        Route(f"{prefix}/Users/{{id}}", user_item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(f"{prefix}/Groups", groups_collection, methods=["GET", "POST"]),
        Route(f"{prefix}/Groups/{{id}}", group_item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(f"{prefix}/{{rest:path}}", scim_endpoint(_not_found)),
    ]
