"""The roles panels in headless Chromium against a real `dsync serve`: define roles and an attribute on the
organization page, map a group picked from the directory's groups to a role and read an attribute from a SCIM path
on the directory page, then see the users' roles and attributes in the users table."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.browser_support import FIRST_RUN_KEY, Gateway, Scim, graphql, screenshot, sign_in

pytestmark = pytest.mark.slow


def test_roles_mappings_and_attributes(gateway: Gateway, page: Page) -> None:
    match = FIRST_RUN_KEY.search(gateway.start())
    assert match
    key = match.group(0)
    organization = graphql(gateway, key, 'mutation { createOrganization(name: "Acme") { id } }')["createOrganization"]
    created = graphql(
        gateway,
        key,
        'mutation($org: ID!) { createDirectory(organizationId: $org, name: "JC", type: JUMPCLOUD) '
        "{ directory { id } endpoint bearerToken } }",
        org=organization["id"],
    )["createDirectory"]
    scim = Scim(created["endpoint"], created["bearerToken"])
    ada = scim.create_user("ada")
    scim.create_user("bob")
    for name, members in (("Engineering Admins", [ada]), ("Sales", [])):
        scim.request("POST", "/Groups", {"displayName": name, "members": [{"value": m} for m in members]}, 201)

    sign_in(page, gateway, key)
    page.goto(f"{gateway.url}/#/organizations/{organization['id']}")
    panel = page.locator("#roles-panel")
    expect(panel.get_by_text("No roles")).to_be_visible()
    for slug, default in (("member", True), ("admin", False)):
        panel.get_by_label("Slug").fill(slug)
        if default:
            panel.get_by_label("Default role").check()
        panel.get_by_role("button", name="Add role").click()
        expect(panel.locator(f'tr[data-role="{slug}"]')).to_be_visible()
    expect(panel.locator('tr[data-role="member"]')).to_contain_text("default")
    panel.get_by_label("New attribute").fill("badge")
    panel.get_by_role("button", name="Define").click()
    expect(panel.locator('li[data-attribute="badge"]')).to_contain_text("own")
    screenshot(page, "roles-panel")

    page.goto(f"{gateway.url}/#/directories/{created['directory']['id']}")
    mappings = page.locator("#mappings-panel")
    mappings.get_by_label("Group").fill("Engineering")
    expect(mappings.locator("#mapping-group option")).to_have_text(["Engineering Admins"])
    mappings.locator("#mapping-role").select_option("admin")
    mappings.get_by_label("Priority").fill("10")
    mappings.get_by_role("button", name="Map group").click()
    expect(mappings.locator("#role-mappings")).to_contain_text("Engineering Admins")
    row = mappings.locator('tr[data-attribute-mapping="job_title"]')
    row.get_by_label("Path of job_title").fill("title")
    row.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("custom")
    users = page.locator("#users")
    expect(users.locator(f'tr[data-user="{ada}"] .user-role')).to_have_text("admin", timeout=15_000)
    expect(users.locator("tbody tr").filter(has_text="bob").locator(".user-role")).to_have_text("member")
    screenshot(page, "mappings-panel")
