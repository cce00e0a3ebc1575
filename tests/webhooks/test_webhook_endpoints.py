"""The webhook endpoint operations (create, list, get, update, delete, resume, redeliver) and the address policy,
on the real store."""

from __future__ import annotations

import functools

import pytest
from sqlalchemy.orm import Session

from gateway.ops import organizations
from gateway.ops import webhook_endpoints as hooks
from gateway.ops.inputs import InvalidInput, NotFound
from gateway.ops.webhook_urls import check_webhook_url, is_public_address
from gateway.store.database import Database
from gateway.store.models import WebhookEndpointState


async def _two_organizations(database: Database) -> tuple[str, str]:
    def create(session: Session) -> tuple[str, str]:
        a = organizations.create_organization(session, name="Acme")
        b = organizations.create_organization(session, name="Globex")
        return a.id, b.id

    return await database.transaction(create)


async def test_create_shows_the_secret_and_checks_its_input(database: Database) -> None:
    acme, _ = await _two_organizations(database)
    issued = await database.transaction(
        lambda s: hooks.create_webhook_endpoint(
            s, url=" https://hooks.acme.test/dsync ", organization_id=acme, events=["dsync.user.created"]
        )
    )
    endpoint = issued.endpoint
    assert endpoint.id.startswith("webhook_endpoint_")
    assert issued.secret.startswith("whsec_") and endpoint.secret == issued.secret
    assert endpoint.url == "https://hooks.acme.test/dsync"
    assert endpoint.events == ["dsync.user.created"] and endpoint.enabled
    assert endpoint.state == WebhookEndpointState.ACTIVE.value
    for url, events in [
        ("ftp://hooks.acme.test", None),
        ("not a url", None),
        ("https://user:pw@hooks.acme.test/", None),
        ("https://hooks.acme.test/", ["dsync.nope"]),
        ("http://127.0.0.1:9000/", None),
        ("http://localhost/", None),
        ("http://[::1]/", None),
        ("http://169.254.169.254/latest/meta-data", None),
        ("http://10.1.2.3/", None),
    ]:
        with pytest.raises(InvalidInput):
            await database.transaction(
                functools.partial(hooks.create_webhook_endpoint, url=url, organization_id=acme, events=events)
            )
    with pytest.raises(NotFound):
        await database.transaction(
            lambda s: hooks.create_webhook_endpoint(s, url="https://x.test/", organization_id="org_missing")
        )
    # An admin may target its own private network.
    private = await database.transaction(
        lambda s: hooks.create_webhook_endpoint(s, url="http://10.1.2.3/", organization_id=None, allow_private=True)
    )
    assert private.endpoint.allow_private and private.endpoint.organization_id is None


async def test_organization_scope_hides_other_tenants_endpoints(database: Database) -> None:
    acme, globex = await _two_organizations(database)
    issued = await database.transaction(
        lambda s: hooks.create_webhook_endpoint(s, url="https://hooks.acme.test/", organization_id=acme)
    )
    endpoint_id = issued.endpoint.id
    assert [e.id for e in await database.query(lambda s: hooks.list_webhook_endpoints(s, scope=acme))] == [endpoint_id]
    assert await database.query(lambda s: hooks.list_webhook_endpoints(s, scope=globex)) == []
    assert [e.id for e in await database.query(lambda s: hooks.list_webhook_endpoints(s, scope=None))] == [endpoint_id]
    for operation in (
        lambda s: hooks.get_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=globex),
        lambda s: hooks.update_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=globex, enabled=False),
        lambda s: hooks.resume_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=globex),
        lambda s: hooks.delete_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=globex),
        lambda s: hooks.list_webhook_attempts(s, webhook_endpoint_id=endpoint_id, scope=globex),
    ):
        with pytest.raises(NotFound):
            await database.transaction(operation)
    updated = await database.transaction(
        lambda s: hooks.update_webhook_endpoint(
            s, webhook_endpoint_id=endpoint_id, scope=acme, enabled=False, events=["dsync.group.created"]
        )
    )
    assert not updated.enabled and updated.events == ["dsync.group.created"]
    with pytest.raises(NotFound):
        await database.transaction(
            lambda s: hooks.redeliver_webhook_endpoint(
                s, webhook_endpoint_id=endpoint_id, scope=acme, from_event_id="event_missing"
            )
        )
    await database.transaction(lambda s: hooks.delete_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=acme))
    assert await database.query(lambda s: hooks.list_webhook_endpoints(s, scope=None)) == []


def test_address_policy() -> None:
    for address in (
        "127.0.0.1",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
        "fc00::1",
    ):
        assert not is_public_address(address), address
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert is_public_address(address), address
    assert check_webhook_url("http://127.0.0.1:8080/x", allow_private=True) == "http://127.0.0.1:8080/x"
    with pytest.raises(InvalidInput):
        check_webhook_url("http://app.localhost/", allow_private=False)
