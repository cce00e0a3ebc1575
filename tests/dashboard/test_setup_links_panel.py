"""The directory page's setup links panel in headless Chromium against a real `dsync serve`: a link made on the page
is listed as active, revoking it (after a confirmation) removes it, and the revoked link's page answers "not valid"."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.browser_support import FIRST_RUN_KEY, Gateway, graphql, screenshot, sign_in

pytestmark = pytest.mark.slow

SETUP = """mutation($org: ID!) {
  createDirectory(organizationId: $org, name: "Acme JumpCloud", type: JUMPCLOUD) { directory { id } }
}"""


def test_setup_links_are_listed_and_revoked(gateway: Gateway, page: Page) -> None:
    match = FIRST_RUN_KEY.search(gateway.start())
    assert match
    key = match.group(0)
    org = graphql(gateway, key, 'mutation { createOrganization(name: "Acme") { id } }')["createOrganization"]["id"]
    directory_id = graphql(gateway, key, SETUP, org=org)["createDirectory"]["directory"]["id"]

    sign_in(page, gateway, key)
    page.goto(f"{gateway.url}/#/directories/{directory_id}")
    panel = page.locator("#setup-links")
    expect(panel).to_contain_text("No setup links")
    page.get_by_role("button", name="Setup link").click()
    url = page.locator("#setup-link-url").inner_text()
    row = panel.locator("tbody tr[data-status=ACTIVE]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("active")
    assert url not in panel.inner_text()  # the URL is shown once, never listed
    screenshot(page, "setup-links-panel")

    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("button", name="Revoke link").click()
    expect(panel).to_contain_text("No setup links")
    expect(page.get_by_text("Revoked setup_link_")).to_be_visible()

    page.goto(url)
    expect(page.get_by_role("heading", name="This setup link is not valid")).to_be_visible()
