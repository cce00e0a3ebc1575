"""``/directory_groups`` and ``/directory_groups/{id}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.workos import queries
from gateway.workos.http import WorkOSEndpoint, authenticate, json, path_id, read
from gateway.workos.params import page_request, text


class DirectoryGroupsEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, params = await authenticate(request), request.query_params
        page = page_request(params)
        directory_id, user_id = text(params, "directory"), text(params, "user")
        return json(
            await read(
                request,
                lambda session: queries.list_groups(
                    session, principal=principal, page=page, directory_id=directory_id, user_id=user_id
                ),
            )
        )


class DirectoryGroupEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, group_id = await authenticate(request), path_id(request, "DirectoryGroup")
        return json(await read(request, lambda s: queries.get_group(s, principal=principal, group_id=group_id)))
