"""``/events``: the event log, paged by event id (``after``), filtered by name, organization and time range."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.workos import queries
from gateway.workos.http import WorkOSEndpoint, authenticate, json, read
from gateway.workos.params import names, page_request, text, timestamp


class EventsEndpoint(WorkOSEndpoint):
    async def get(self, request: Request) -> Response:
        principal, params = await authenticate(request), request.query_params
        page = page_request(params, default_order="asc")  # WorkOS lists events oldest first
        events, organization_id = names(params, "events"), text(params, "organization_id")
        range_start, range_end = timestamp(params, "range_start"), timestamp(params, "range_end")
        return json(
            await read(
                request,
                lambda session: queries.list_events(
                    session,
                    principal=principal,
                    page=page,
                    events=events,
                    organization_id=organization_id,
                    range_start=range_start,
                    range_end=range_end,
                ),
            )
        )
