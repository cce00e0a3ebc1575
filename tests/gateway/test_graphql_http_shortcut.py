"""GraphQL HTTP requests skip Starlette's stack (gateway.app ``_graphql_http_request``) but keep what it did for them:
their request id, their metrics under the ``/graphql`` route, foreground counting, a 500 that carries the id; other
methods still get the route's 405."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.observe.metrics import HTTP_REQUESTS
from gateway.ops.priority import Scheduler


def _answered(method: str, status: str) -> float:
    return float(HTTP_REQUESTS.labels(method, "/graphql", status)._value.get())


async def test_request_id_metrics_and_foreground(client: httpx.AsyncClient, app: Any) -> None:
    scheduler: Scheduler = app.state.scheduler
    seen: list[int] = []
    original = scheduler.foreground

    def counting() -> Any:
        seen.append(1)
        return original()

    app.state.scheduler.foreground = counting
    before = _answered("POST", "200")
    response = await client.post(
        "/graphql", json={"query": "{ viewer { isAdmin } }"}, headers={"X-Request-Id": "req-shortcut-1"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-shortcut-1"
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert _answered("POST", "200") == before + 1
    assert seen == [1]
    # A method the route does not take goes through Starlette's stack: 405, with its id and its count too.
    refused = await client.put("/graphql", json={})
    assert refused.status_code == 405 and refused.headers["x-request-id"]


async def test_a_failing_endpoint_answers_500_with_its_id(
    client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.graphql_route, "app", failing)
    before = _answered("POST", "500")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as http:
        response = await http.post("/graphql", json={"query": "{ viewer { isAdmin } }"})
    assert response.status_code == 500 and response.headers["x-request-id"]
    assert _answered("POST", "500") == before + 1
