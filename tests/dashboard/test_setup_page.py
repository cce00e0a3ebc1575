"""Setup links in headless Chromium against a real `dsync serve`: the operator makes a link on the directory page,
the IT admin opens it in a fresh browser (no API key), picks a provider, reveals the token once and watches the
status turn linked; a used and an expired link answer clear pages. The directory page shows the request log."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.dashboard.browser_support import FIRST_RUN_KEY, Gateway, Scim, graphql, screenshot, sign_in

pytestmark = pytest.mark.slow

SETUP = """mutation($org: ID!) {
  createDirectory(organizationId: $org, name: "Acme Okta", type: OKTA) { endpoint directory { id } }
}"""


@pytest.fixture
def admin_page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def test_setup_link_from_the_directory_page_to_linked(gateway: Gateway, page: Page, admin_page: Page) -> None:  # noqa: F811
    printed = gateway.start()
    match = FIRST_RUN_KEY.search(printed)
    assert match, printed
    key = match.group(0)
    org = graphql(gateway, key, 'mutation { createOrganization(name: "Acme") { id } }')["createOrganization"]["id"]
    created = graphql(gateway, key, SETUP, org=org)["createDirectory"]
    directory_id, endpoint = created["directory"]["id"], created["endpoint"]

    # The operator: the directory page tells Okta's button, and makes the link.
    sign_in(page, gateway, key)
    page.goto(f"{gateway.url}/#/directories/{directory_id}")
    expect(page.locator("#unlinked-notice")).to_contain_text("Test Connector Configuration")
    page.get_by_role("button", name="Setup link").click()
    url = page.locator("#setup-link-url").inner_text()
    assert url.startswith(f"{gateway.url}/setup/#dsync_setup_")
    token = url.split("#", 1)[1]
    with sqlite3.connect(gateway.database) as db:
        assert token not in str(db.execute("SELECT * FROM setup_links").fetchall())

    # The IT admin, in another browser context without any key.
    admin_page.goto(url)
    expect(admin_page.get_by_role("heading", name="Connect Acme Okta")).to_be_visible()
    assert "#" not in admin_page.url  # the token left the address bar
    expect(admin_page.locator("#endpoint")).to_have_text(endpoint)
    expect(admin_page.locator("#setup-steps")).to_contain_text("Test Connector Configuration")
    admin_page.select_option("#provider", "AZURE")
    expect(admin_page.locator("#setup-steps")).to_contain_text("Tenant URL")
    expect(admin_page.locator("#setup-status")).to_have_attribute("data-state", "unlinked")
    screenshot(admin_page, "setup-1-opened")
    expect(admin_page.locator("#reveal-area")).to_contain_text("rotates nothing else")
    admin_page.get_by_role("button", name="Reveal bearer token").click()
    bearer = admin_page.locator("#bearer-token").inner_text()
    assert bearer.startswith("dsync_scim_")

    # The IdP's first request: the page turns linked by itself; the directory page logs the request.
    Scim(endpoint, bearer).request("GET", "/Users?filter=userName%20eq%20%22x%40acme.com%22")
    expect(admin_page.locator("#setup-status")).to_have_attribute("data-state", "linked", timeout=10_000)
    screenshot(admin_page, "setup-2-linked")
    Scim(endpoint, bearer).request("GET", "/Users/missing", None, 404)
    expect(page.locator("#request-log tr.failed")).to_have_count(1, timeout=10_000)
    expect(page.locator("#request-log")).to_contain_text("filter=userName")
    screenshot(page, "setup-3-request-log")

    # A used link, opened again, says so and reveals nothing.
    admin_page.goto(url)
    expect(admin_page.locator("#already-revealed")).to_be_visible()
    expect(admin_page.get_by_role("button", name="Reveal bearer token")).to_have_count(0)

    # An expired link answers a clear page.
    with sqlite3.connect(gateway.database) as db:
        db.execute("UPDATE setup_links SET expires_at = '2000-01-01 00:00:00.000000'")
    admin_page.goto(url)
    expect(admin_page.locator("#link-unavailable")).to_have_attribute("data-reason", "expired")
    expect(admin_page.get_by_role("heading", name="This setup link has expired")).to_be_visible()
    admin_page.goto(f"{gateway.url}/setup/#dsync_setup_made-up")
    expect(admin_page.get_by_role("heading", name="This setup link is not valid")).to_be_visible()
