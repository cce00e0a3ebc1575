"""The SCIM request log per directory and the health drawn from it, on both stores: what is kept (no bodies, no
tokens), bounded to the last 1,000, errors, wrong tokens noted without the caller learning anything."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from gateway.observe import request_log
from gateway.store.models import Directory, ScimErrorCount, ScimRequest, utcnow
from tests.conftest import DirectoryFixture, make_directory
from tests.gateway.test_graphql import api_key, gql

QUERY = """query($id: ID!, $errors: Boolean!) { directory(id: $id) {
  requests(first: 1000, errorsOnly: $errors) { method path filter status scimType detail durationMs resourceId }
  health { lastRequestAt lastErrorAt lastError errorsLastHour lastRejectedTokenAt } } }"""


async def test_requests_are_logged_with_errors_and_health(
    client: httpx.AsyncClient, app: Any, directory: DirectoryFixture
) -> None:
    created = await client.post(
        f"{directory.path}/Users",
        json={"userName": "ada@acme.test", "password": "s3cret-Passw0rd"},
        headers=directory.headers,
    )
    user_id = created.json()["id"]
    await client.get(
        f"{directory.path}/Users", params={"filter": 'userName eq "ada@acme.test"'}, headers=directory.headers
    )
    conflict = await client.post(
        f"{directory.path}/Users", json={"userName": "ada@acme.test"}, headers=directory.headers
    )
    assert conflict.status_code == 409
    wrong = {**directory.headers, "Authorization": "Bearer dsync_scim_wrong"}
    refused = await client.get(f"{directory.path}/Users", headers=wrong)
    assert refused.status_code == 401
    unknown = await client.get("/scim/v2/directory_01ABCDEFGHJKMNPQRSTVWXYZ00/Users", headers=wrong)
    assert unknown.json() == refused.json()  # a wrong token tells nothing new
    await app.state.request_log.flush()

    key = await api_key(app, directory.organization_id)
    body = await gql(client, QUERY, key, {"id": directory.id, "errors": False})
    found = body["data"]["directory"]
    requests = found["requests"]
    assert [(r["method"], r["status"]) for r in requests] == [("POST", 409), ("GET", 200), ("POST", 201)]
    assert requests[2]["resourceId"] == user_id and requests[1]["filter"] == 'userName eq "ada@acme.test"'
    assert requests[0]["scimType"] == "uniqueness" and requests[0]["detail"]
    assert all(r["durationMs"] >= 0 for r in requests)
    assert "s3cret" not in str(body) and directory.token not in str(body)
    health = found["health"]
    assert (
        health["lastRequestAt"] and health["errorsLastHour"] == 1 and health["lastError"].startswith("409 uniqueness")
    )
    assert health["lastRejectedTokenAt"] is not None
    errors = (await gql(client, QUERY, key, {"id": directory.id, "errors": True}))["data"]["directory"]["requests"]
    assert [r["status"] for r in errors] == [409]
    # another tenant's key cannot see them
    other = await make_directory(app.state.database, name="Other")
    outsider = await api_key(app, other.organization_id)
    assert (await gql(client, QUERY, outsider, {"id": directory.id, "errors": False}))["errors"]


@pytest.mark.parametrize("count", [1_050])
async def test_log_is_bounded_per_directory(app: Any, directory: DirectoryFixture, count: int) -> None:
    log: request_log.RequestLog = app.state.request_log
    other = await make_directory(app.state.database, name="Quiet")
    for i in range(count):
        log.record(
            directory_id=directory.id,
            method="GET",
            path=f"/scim/v2/{directory.id}/Users/{i}",
            filter=None,
            status=200,
            scim_type=None,
            detail=None,
            duration_ms=1.0,
            resource_id=None,
        )
    log.record(
        directory_id=other.id,
        method="GET",
        path="/x",
        filter=None,
        status=200,
        scim_type=None,
        detail=None,
        duration_ms=1.0,
        resource_id=None,
    )
    await log.flush()
    await log.flush()  # nothing pending: a no-op

    def counts(session: Any) -> dict[str, int]:
        statement = select(col(ScimRequest.directory_id), func.count()).group_by(ScimRequest.directory_id)
        return {row[0]: row[1] for row in session.execute(statement)}

    assert await app.state.database.query(counts) == {directory.id: request_log.KEEP, other.id: 1}
    newest = await app.state.database.query(
        lambda s: request_log.recent_requests(s, directory_id=directory.id, limit=1)
    )
    assert newest[0].path.endswith(f"/Users/{count - 1}")


async def test_errors_in_the_last_hour_count_beyond_the_kept_requests(app: Any, directory: DirectoryFixture) -> None:
    log: request_log.RequestLog = app.state.request_log

    def record(status: int) -> None:
        log.record(
            directory_id=directory.id,
            method="POST",
            path=f"/scim/v2/{directory.id}/Users",
            filter=None,
            status=status,
            scim_type="uniqueness" if status == 409 else None,
            detail=None,
            duration_ms=1.0,
            resource_id=None,
        )

    for _ in range(30):
        record(409)
    await log.flush()
    for _ in range(request_log.KEEP + 10):  # pushes every error out of the kept requests
        record(201)
    await log.flush()
    for _ in range(5):
        record(500)
    await log.flush()

    # A count from two hours ago is neither counted nor kept once the next errors are written.
    def old_minute(session: Any) -> None:
        two_hours_ago = (utcnow() - timedelta(hours=2)).replace(second=0, microsecond=0)
        session.add(ScimErrorCount(directory_id=directory.id, minute=two_hours_ago, count=99))

    await app.state.database.transaction(old_minute)

    async def health() -> request_log.Health:
        row = await app.state.database.query(lambda s: s.get(Directory, directory.id))
        found: request_log.Health = await app.state.database.query(
            lambda s: request_log.directory_health(s, directory=row)
        )
        return found

    assert (await health()).errors_last_hour == 35
    record(400)
    await log.flush()
    assert (await health()).errors_last_hour == 36
    minutes = await app.state.database.query(lambda s: list(s.scalars(select(ScimErrorCount))))
    assert all(m.count != 99 for m in minutes)
