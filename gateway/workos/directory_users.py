"""``/directory_users`` and ``/directory_users/{id}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.workos import queries
from gateway.workos.http import WorkOSEndpoint, authenticate, json, path_id, read
from gateway.workos.params import page_request, text


class DirectoryUsersEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, params = await authenticate(request), request.query_params
        page = page_request(params)
        directory_id, group_id = text(params, "directory"), text(params, "group")
        idp_id, email = text(params, "idp_id"), text(params, "email")
        return json(
            await read(
                request,
                lambda session: queries.list_users(
                    session,
                    principal=principal,
                    page=page,
                    directory_id=directory_id,
                    group_id=group_id,
                    idp_id=idp_id,
                    email=email,
                ),
            )
        )


class DirectoryUserEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, user_id = await authenticate(request), path_id(request, "DirectoryUser")
        return json(await read(request, lambda s: queries.get_user(s, principal=principal, user_id=user_id)))
