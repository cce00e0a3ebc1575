"""The operator's CLI beyond creating things: list/show/rename/delete, API keys, no silent new database, the public
URL shared with a running server, --json and --help on every command."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from gateway.cli import build_parser
from tests.gateway.test_cli import DSYNC, as_json, dsync
from tests.redis_server import free_port


def test_refuses_to_create_a_database_silently(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"DSYNC_DATABASE_URL": f"sqlite+aiosqlite:///{elsewhere / 'dsync.db'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([DSYNC, "organizations", "create", "Acme"], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "no database at" in result.stderr and "--create-database" in result.stderr
    assert not (elsewhere / "dsync.db").exists()
    created = subprocess.run(
        [DSYNC, "organizations", "create", "Acme", "--create-database", "--json"], env=env, capture_output=True
    )
    assert created.returncode == 0 and (elsewhere / "dsync.db").exists()


def test_list_show_rename_delete(tmp_path: Path) -> None:
    org = as_json(dsync(tmp_path, "organizations", "create", "Acme", "--domain", "acme.com", "--json"))
    assert as_json(dsync(tmp_path, "organizations", "list", "--json")) == [org]
    assert org["id"] in dsync(tmp_path, "organizations", "list").stdout
    okta = as_json(
        dsync(
            tmp_path, "directories", "create", "--organization", org["id"], "--name", "Okta", "--type", "okta", "--json"
        )
    )
    assert okta["type"] == "okta"  # GraphQL's OKTA, as --type takes it
    entra = as_json(
        dsync(
            tmp_path, "directories", "create", "--organization", org["id"], "--name", "E", "--type", "entra", "--json"
        )
    )
    assert entra["type"] == "azure"
    listed = as_json(dsync(tmp_path, "directories", "list", "--organization", org["id"], "--json"))
    assert [d["id"] for d in listed] == [okta["id"], entra["id"]]
    assert all("bearer_token" not in d for d in listed)
    shown = as_json(dsync(tmp_path, "directories", "show", okta["id"], "--json"))
    assert shown["endpoint"] == okta["endpoint"] and shown["state"] == "unlinked"
    org_shown = as_json(dsync(tmp_path, "organizations", "show", org["id"], "--json"))
    assert [d["id"] for d in org_shown["directories"]] == [okta["id"], entra["id"]]
    renamed = as_json(dsync(tmp_path, "organizations", "rename", org["id"], "Acme Corp", "--json"))
    assert renamed["name"] == "Acme Corp"
    assert as_json(dsync(tmp_path, "directories", "delete", entra["id"], "--json"))["deleted"] is True
    assert as_json(dsync(tmp_path, "organizations", "delete", org["id"], "--json")) == {
        "id": org["id"],
        "deleted": True,
    }
    assert as_json(dsync(tmp_path, "organizations", "list", "--json")) == []
    assert as_json(dsync(tmp_path, "directories", "list", "--json")) == []
    missing = dsync(tmp_path, "directories", "show", okta["id"], check=False)
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_api_keys_list_and_revoke(tmp_path: Path) -> None:
    admin = as_json(dsync(tmp_path, "api-keys", "create", "--json"))
    listed = as_json(dsync(tmp_path, "api-keys", "list", "--json"))
    assert [k["id"] for k in listed] == [admin["id"]] and listed[0]["scope"] == "admin"
    assert admin["key"] not in dsync(tmp_path, "api-keys", "list").stdout
    given_secret = dsync(tmp_path, "api-keys", "revoke", admin["key"], check=False)
    assert given_secret.returncode == 2 and admin["key"] not in given_secret.stderr + given_secret.stdout
    revoked = as_json(dsync(tmp_path, "api-keys", "revoke", admin["id"], "--json"))
    assert revoked["revoked_at"] is not None


def test_every_command_has_help_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    top = parser.format_help()
    for command in ("serve", "migrate", "export-schema", "organizations", "directories", "api-keys", "simulate"):
        assert command in top
    groups = {
        "organizations": ["create", "list", "show", "rename", "delete"],
        "directories": ["create", "list", "show", "rotate-token", "delete", "setup-link", "set-deprovision-policy"]
        + ["setup-links", "revoke-setup-link"],
        "api-keys": ["create", "list", "revoke"],
    }
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, sub in subparsers.choices.items():
        assert sub.description, f"dsync {command} --help has no description"
        assert subparsers._choices_actions, command
    assert all(action.help for action in subparsers._choices_actions)
    for group, actions in groups.items():
        group_actions = next(a for a in subparsers.choices[group]._actions if isinstance(a, argparse._SubParsersAction))
        for action in actions:
            help_text = group_actions.choices[action].format_help()
            assert "--json" in help_text and group_actions.choices[action].description, (group, action)
    assert "--json" in subparsers.choices["migrate"].format_help()


def test_setup_links_list_and_revoke(tmp_path: Path) -> None:
    organization = as_json(dsync(tmp_path, "organizations", "create", "Acme", "--json"))
    directory = as_json(
        dsync(tmp_path, "directories", "create", "--organization", organization["id"], "--name", "JC", "--json")
    )
    assert as_json(dsync(tmp_path, "directories", "setup-links", directory["id"], "--json")) == []
    link = as_json(dsync(tmp_path, "directories", "setup-link", directory["id"], "--json"))
    (listed,) = as_json(dsync(tmp_path, "directories", "setup-links", directory["id"], "--json"))
    assert listed["id"] == link["id"] and listed["status"] == "active" and "url" not in listed
    assert link["id"] in dsync(tmp_path, "directories", "setup-links", directory["id"]).stdout
    revoked = as_json(dsync(tmp_path, "directories", "revoke-setup-link", link["id"], "--json"))
    assert revoked["id"] == link["id"]
    assert as_json(dsync(tmp_path, "directories", "setup-links", directory["id"], "--json")) == []
    again = dsync(tmp_path, "directories", "revoke-setup-link", link["id"], check=False)
    assert again.returncode == 2 and "no setup link" in again.stderr
    unknown = dsync(tmp_path, "directories", "setup-links", "directory_unknown", check=False)
    assert unknown.returncode == 2


def test_migrate_json(tmp_path: Path) -> None:
    assert as_json(dsync(tmp_path, "migrate", "--json")) == {"status": "up to date"}


def test_cli_prints_the_endpoint_the_server_announced(tmp_path: Path) -> None:
    """No DSYNC_PUBLIC_URL anywhere: the CLI prints endpoints on the port `dsync serve` really listens on."""
    port = free_port()
    env_db = f"sqlite+aiosqlite:///{tmp_path / 'dsync.db'}"
    env = {**os.environ, "DSYNC_DATABASE_URL": env_db}
    env.pop("DSYNC_PUBLIC_URL", None)
    server = subprocess.Popen(
        [DSYNC, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        org = as_json(dsync(tmp_path, "organizations", "create", "Acme", "--json", public_url=None))
        directory = as_json(
            dsync(
                tmp_path, "directories", "create", "--organization", org["id"], "--name", "X", "--json", public_url=None
            )
        )
        assert directory["endpoint"] == f"http://127.0.0.1:{port}/scim/v2/{directory['id']}"
        # and the server answers there
        response = httpx.get(
            f"{directory['endpoint']}/Users", headers={"Authorization": f"Bearer {directory['bearer_token']}"}
        )
        assert response.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=20)
