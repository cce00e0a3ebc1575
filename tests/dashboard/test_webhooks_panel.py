"""The organization page's webhooks panel in headless Chromium against a real `dsync serve`: create an endpoint
(the signing secret shown once), then a SCIM change delivered to a real receiver shows up as an attempt."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.browser_support import FIRST_RUN_KEY, Gateway, Scim, graphql, screenshot, sign_in

pytestmark = pytest.mark.slow


class _Hook(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()


def test_webhooks_panel_creates_an_endpoint_and_shows_its_attempts(gateway: Gateway, page: Page, receiver: str) -> None:
    match = FIRST_RUN_KEY.search(gateway.start())
    assert match
    key = match.group(0)
    organization = graphql(gateway, key, 'mutation { createOrganization(name: "Acme") { id } }')["createOrganization"]
    created = graphql(
        gateway,
        key,
        'mutation($org: ID!) { createDirectory(organizationId: $org, name: "JC", type: JUMPCLOUD) '
        "{ endpoint bearerToken } }",
        org=organization["id"],
    )["createDirectory"]
    sign_in(page, gateway, key)
    page.goto(f"{gateway.url}/#/organizations/{organization['id']}")
    panel = page.locator("#webhooks")
    expect(panel.get_by_text("No webhook endpoints")).to_be_visible()
    panel.get_by_label("URL").fill(receiver)
    panel.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#webhook-secret code")).to_contain_text("whsec_")
    expect(panel.get_by_text(receiver, exact=True)).to_be_visible()

    Scim(created["endpoint"], created["bearerToken"]).create_user("ada")
    expect(panel.locator("table tbody tr").first).to_contain_text("200", timeout=15_000)
    screenshot(page, "webhooks-panel")
    assert _Hook.received
