"""The dashboard in headless Chromium against a real `dsync serve`: first-run key, sign-in, an organization and a
JumpCloud directory created through the page, then SCIM traffic from the test showing up live, without a reload."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.browser_support import (
    FIRST_RUN_KEY,
    LIVE_MS,
    RESUME_MS,
    Gateway,
    Scim,
    graphql,
    screenshot,
    sign_in,
)
from tests.redis_server import free_port

pytestmark = pytest.mark.slow


def test_first_run_key_sign_in_and_a_directory_filling_live(gateway: Gateway, page: Page) -> None:
    printed = gateway.start()
    match = FIRST_RUN_KEY.search(printed)
    assert match, printed
    key = match.group(0)
    assert f"Sign in to the dashboard with it: {gateway.url}/" in printed
    with sqlite3.connect(gateway.database) as db:  # only the hash is stored
        assert db.execute("SELECT key_hash FROM api_keys").fetchall() == [(hashlib.sha256(key.encode()).hexdigest(),)]

    # Sign-in: a wrong key is explained; the right one is kept in sessionStorage, never in the URL.
    page.goto(f"{gateway.url}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "1-sign-in")
    page.get_by_label("API key").fill("dsync_key_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("did not accept this API key")
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")
    expect(page.get_by_role("heading", name="Organizations", level=1)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('dsync.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0
    expect(page.get_by_text("No organizations yet")).to_be_visible()

    # Organizations: create one with domains.
    page.get_by_label("Name").fill("Acme")
    page.get_by_label("Domains (optional)").fill("acme.com, Acme.io")
    page.get_by_role("button", name="Create organization").click()
    expect(page.locator("#organizations tbody tr")).to_have_count(1)
    expect(page.locator("#organizations tbody tr")).to_contain_text("acme.com, acme.io")
    screenshot(page, "2-organizations")

    # Organization page, then "Add directory": JumpCloud is the first and default choice.
    page.get_by_role("link", name="Acme").click()
    expect(page.get_by_text("No directories yet")).to_be_visible()
    page.get_by_role("link", name="Add directory").click()
    choices = page.locator("input[name=type]")
    expect(choices.first).to_have_attribute("value", "JUMPCLOUD")
    expect(choices.first).to_be_checked()
    expect(page.get_by_label("Name")).to_have_value("Acme JumpCloud")
    page.get_by_role("button", name="Create directory").click()
    endpoint = page.locator("#endpoint").inner_text()
    token = page.locator("#bearer-token").inner_text()
    assert endpoint.startswith(f"{gateway.url}/scim/v2/directory_") and token.startswith("dsync_scim_")
    expect(page.get_by_role("button", name="Copy Endpoint")).to_be_visible()
    expect(page.get_by_role("button", name="Copy Bearer token")).to_be_visible()
    for step in ("Base URL", "Token Key", "Test Connection", "Group Management", "Activate", "User Groups"):
        expect(page.locator(".steps")).to_contain_text(step)
    screenshot(page, "3-add-directory-result")

    # The directory page, unlinked until the first SCIM request; everything below arrives live.
    page.get_by_role("link", name="Open the directory and watch it sync").click()
    expect(page.locator("#directory-state [data-state=unlinked]")).to_be_visible()
    expect(page.locator(".live[data-status=live]")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    scim = Scim(endpoint, token)

    scim.request("GET", '/Users?filter=userName eq "jumpcloud.test@acme.com"')  # JumpCloud's Test Connection
    expect(page.locator("#directory-state [data-state=linked]")).to_be_visible(timeout=LIVE_MS)
    expect(page.locator("#events [data-event='dsync.activated']")).to_have_count(1, timeout=LIVE_MS)

    users = {name: scim.create_user(name) for name in ("ada", "grace", "linus")}
    for name, user_id in users.items():
        expect(page.locator(f"#users tr[data-user={user_id}]")).to_contain_text(f"{name}@acme.com", timeout=LIVE_MS)
    expect(page.locator("#user-count")).to_have_text("3", timeout=LIVE_MS)

    group = scim.request(
        "POST",
        "/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Engineering",
            "members": [{"value": users["ada"]}, {"value": users["grace"]}],
        },
        201,
    )
    row = page.locator(f"#groups tr[data-group={group['id']}]")
    expect(row).to_contain_text("Engineering", timeout=LIVE_MS)
    expect(row.locator("[data-field=member-count]")).to_have_text("2", timeout=LIVE_MS)
    expect(page.locator(f"#users tr[data-user={users['ada']}]")).to_contain_text("Engineering", timeout=LIVE_MS)
    row.get_by_role("button", name="Members").click()
    members = page.locator(f"#members-{group['id']}")
    expect(members.locator("li")).to_have_count(2)

    scim.patch(f"/Groups/{group['id']}", {"op": "add", "path": "members", "value": [{"value": users["linus"]}]})
    expect(row.locator("[data-field=member-count]")).to_have_text("3", timeout=LIVE_MS)
    expect(members.locator(f"li[data-user={users['linus']}]")).to_be_visible(timeout=LIVE_MS)
    expect(page.locator("#events [data-event='dsync.group.user_added']")).to_have_count(3, timeout=LIVE_MS)

    scim.patch(f"/Users/{users['grace']}", {"op": "replace", "value": {"active": False}})
    expect(page.locator(f"#users tr[data-user={users['grace']}] [data-state=inactive]")).to_be_visible(timeout=LIVE_MS)
    expect(page.locator("#inactive-user-count")).to_have_text("1", timeout=LIVE_MS)
    expect(page.locator("#active-user-count")).to_have_text("2", timeout=LIVE_MS)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "5-directory")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "5-directory-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Search and the state filter.
    page.get_by_label("Search").fill("grac")
    expect(page.locator("#users tbody tr")).to_have_count(1)
    page.get_by_label("Search").fill("")
    page.get_by_label("State").select_option("ACTIVE")
    expect(page.locator("#users tbody tr")).to_have_count(2)

    # Rotating the token (after confirming) shows the new one; the old one stops working.
    page.get_by_role("button", name="Rotate token").click()
    page.get_by_role("dialog").get_by_role("button", name="Rotate token").click()
    new_token = page.locator("#bearer-token").inner_text()
    assert new_token != token
    assert scim.http.get(f"{endpoint}/Users").status_code == 401
    assert Scim(endpoint, new_token).http.get(f"{endpoint}/Users").status_code == 200

    # Back on the organization page: the directory is linked, with its counts.
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Acme").click()
    directory_row = page.locator("#directories tbody tr")
    expect(directory_row.locator("[data-state=linked]")).to_be_visible()
    expect(directory_row).to_contain_text("3 (2 active)")
    expect(directory_row).to_contain_text("JumpCloud SCIM v2.0")
    screenshot(page, "4-organization")
    assert key not in page.url

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('dsync.apiKey')") is None


CREATE = """mutation($name: String!) {
  createOrganization(name: $name) { id }
}"""
CREATE_DIRECTORY = """mutation($org: ID!) {
  createDirectory(organizationId: $org, name: "Acme JumpCloud", type: JUMPCLOUD) {
    endpoint bearerToken directory { id }
  }
}"""


def test_the_page_resumes_from_its_last_event_after_the_server_restarts(gateway: Gateway, page: Page) -> None:
    match = FIRST_RUN_KEY.search(gateway.start())
    assert match
    key = match.group(0)
    organization = graphql(gateway, key, CREATE, name="Acme")["createOrganization"]
    created = graphql(gateway, key, CREATE_DIRECTORY, org=organization["id"])["createDirectory"]
    directory_id = created["directory"]["id"]
    scim = Scim(created["endpoint"], created["bearerToken"])
    sign_in(page, gateway, key)
    page.goto(f"{gateway.url}/#/directories/{directory_id}")
    expect(page.locator(".live[data-status=live]")).to_be_visible()
    before = scim.create_user("before")
    expect(page.locator(f"#users tr[data-user={before}]")).to_be_visible(timeout=LIVE_MS)

    # The page's server goes away; meanwhile another server on the same database takes SCIM writes.
    port, other_port = gateway.port, free_port()
    gateway.stop()
    expect(page.locator(".live[data-status=reconnecting]")).to_be_visible()
    assert FIRST_RUN_KEY.search(gateway.start(port=other_port)) is None  # the key is printed on the first start only
    other = Scim(scim.endpoint.replace(f":{port}/", f":{other_port}/"), created["bearerToken"])
    offline = [other.create_user(name) for name in ("offline1", "offline2")]
    gateway.stop()
    assert FIRST_RUN_KEY.search(gateway.start(port=port)) is None

    # Back on its own server, the page resumes after the last event it had: the missed ones, each exactly once.
    expect(page.locator(".live[data-status=live]")).to_be_visible(timeout=RESUME_MS)
    for user_id in offline:
        expect(page.locator(f"#users tr[data-user={user_id}]")).to_be_visible(timeout=LIVE_MS)
    created_events = page.locator("#events [data-event='dsync.user.created']")
    expect(created_events).to_have_count(3, timeout=LIVE_MS)
    after = scim.create_user("after")
    expect(page.locator(f"#users tr[data-user={after}]")).to_be_visible(timeout=LIVE_MS)
    expect(created_events).to_have_count(4, timeout=LIVE_MS)
    cursors = page.locator("#events li").evaluate_all("items => items.map(item => item.dataset.cursor)")
    assert len(cursors) == len(set(cursors)) == 5  # dsync.activated and four users, none repeated

    # Deleting the directory (after confirming) leads back to the organization, now without directories.
    page.get_by_role("button", name="Delete directory").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete directory").click()
    expect(page.get_by_text("No directories yet")).to_be_visible()
    assert scim.http.get(f"{scim.endpoint}/Users").status_code in (401, 404)


COUNTS = """query($id: ID!) {
  directory(id: $id) {
    state userCount groupCount
    users(first: 100) { edges { node { id } } }
    groups(first: 100) { edges { node { id memberCount } } }
  }
}"""


def test_dsync_simulate_fills_the_open_directory_page_live(gateway: Gateway, page: Page) -> None:
    match = FIRST_RUN_KEY.search(gateway.start())
    assert match
    key = match.group(0)
    organization = graphql(gateway, key, CREATE, name="Acme")["createOrganization"]
    created = graphql(gateway, key, CREATE_DIRECTORY, org=organization["id"])["createDirectory"]
    directory_id = created["directory"]["id"]
    sign_in(page, gateway, key)
    page.goto(f"{gateway.url}/#/directories/{directory_id}")
    expect(page.locator("#directory-state [data-state=unlinked]")).to_be_visible()
    expect(page.locator(".live[data-status=live]")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    # The operator's way to see it work without an IdP account: the built-in JumpCloud session.
    env = {**os.environ, "DSYNC_SCIM_TOKEN": created["bearerToken"]}
    command = [sys.executable, "-m", "gateway.cli", "simulate", "--endpoint", created["endpoint"]]
    played = subprocess.run(
        [*command, "--provider", "jumpcloud", "--users", "12", "--groups", "3", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert played.returncode == 0, played.stderr
    summary = json.loads(played.stdout)
    assert summary["ok"] is True

    truth = graphql(gateway, key, COUNTS, id=directory_id)["directory"]
    assert truth["state"] == "LINKED" and truth["userCount"] > 0 and truth["groupCount"] == 3
    expect(page.locator("#directory-state [data-state=linked]")).to_be_visible(timeout=LIVE_MS)
    expect(page.locator("#user-count")).to_have_text(str(truth["userCount"]), timeout=LIVE_MS)
    for edge in truth["users"]["edges"]:
        expect(page.locator(f"#users tr[data-user={edge['node']['id']}]")).to_be_visible(timeout=LIVE_MS)
    for edge in truth["groups"]["edges"]:
        row = page.locator(f"#groups tr[data-group={edge['node']['id']}]")
        expect(row.locator("[data-field=member-count]")).to_have_text(str(edge["node"]["memberCount"]))
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "6-directory-after-simulate")
