"""``/directories`` and ``/directories/{id}``: list, get, delete."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from gateway.ops import directories, inputs
from gateway.workos import queries
from gateway.workos.errors import not_found
from gateway.workos.http import WorkOSEndpoint, authenticate, database_of, json, path_id, read
from gateway.workos.params import page_request, text


class DirectoriesEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, params = await authenticate(request), request.query_params
        page = page_request(params)
        organization_id, search = text(params, "organization_id"), text(params, "search")
        domain = text(params, "domain")
        return json(
            await read(
                request,
                lambda session: queries.list_directories(
                    session,
                    principal=principal,
                    page=page,
                    organization_id=organization_id,
                    search=search,
                    domain=domain,
                ),
            )
        )


class DirectoryEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, directory_id = await authenticate(request), path_id(request, "Directory")
        return json(
            await read(request, lambda s: queries.get_directory(s, principal=principal, directory_id=directory_id))
        )

    async def delete(self, request: Request) -> Response:
        """Deletes the directory with its users and groups (one ``dsync.deleted`` event); 202 like WorkOS."""
        principal, directory_id = await authenticate(request), path_id(request, "Directory")

        def delete(session: Session) -> None:
            queries.visible_directory(session, principal=principal, directory_id=directory_id)
            directories.delete_directory(session, directory_id=directory_id)

        try:
            await database_of(request).transaction(delete)
        except inputs.NotFound:  # deleted by another request in between
            raise not_found("Directory", directory_id) from None
        return Response(status_code=202)
