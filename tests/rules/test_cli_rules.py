"""``dsync roles``, ``dsync role-mappings`` and ``dsync attributes``: every command, --json, and bad input refused
with exit code 2 (never a traceback)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.gateway.test_cli import as_json, dsync

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_role_and_attribute_commands(tmp_path: Path) -> None:
    org = as_json(dsync(tmp_path, "organizations", "create", "Acme", "--json"))["id"]
    directory = as_json(dsync(tmp_path, "directories", "create", "--organization", org, "--name", "JC", "--json"))["id"]
    member = as_json(dsync(tmp_path, "roles", "create", "member", "--organization", org, "--default", "--json"))
    assert (member["slug"], member["name"], member["default"]) == ("member", "member", True)
    admin = as_json(dsync(tmp_path, "roles", "create", "admin", "--organization", org, "--name", "Admin", "--json"))
    renamed = as_json(dsync(tmp_path, "roles", "update", admin["id"], "--name", "Administrators", "--json"))
    assert renamed["name"] == "Administrators"
    listed = as_json(dsync(tmp_path, "roles", "list", "--organization", org, "--json"))
    assert [r["slug"] for r in listed] == ["admin", "member"]
    assert "member" in dsync(tmp_path, "roles", "list", "--organization", org).stdout

    # A group as the IdP would have pushed it.
    with sqlite3.connect(tmp_path / "dsync.db") as db:
        db.execute(
            "INSERT INTO directory_groups (id, directory_id, idp_id, name, raw_attributes, version, created_at,"
            " updated_at) VALUES ('directory_group_1', ?, 'Admins', 'Admins', '{}', 1, CURRENT_TIMESTAMP,"
            " CURRENT_TIMESTAMP)",
            (directory,),
        )
    mapped = as_json(
        dsync(tmp_path, "role-mappings", "set", directory, "directory_group_1", "admin", "--priority", "5", "--json")
    )
    assert (mapped["group_name"], mapped["role"], mapped["priority"]) == ("Admins", "admin", 5)
    assert as_json(dsync(tmp_path, "role-mappings", "list", directory, "--json")) == [mapped]
    assert "Admins" in dsync(tmp_path, "role-mappings", "list", directory).stdout
    assert as_json(dsync(tmp_path, "role-mappings", "delete", directory, "directory_group_1", "--json"))["deleted"]
    assert as_json(dsync(tmp_path, "role-mappings", "list", directory, "--json")) == []
    assert as_json(dsync(tmp_path, "roles", "delete", admin["id"], "--json"))["deleted"]

    assert as_json(dsync(tmp_path, "attributes", "define", "badge", "--organization", org, "--json"))["name"] == "badge"
    names = as_json(dsync(tmp_path, "attributes", "list", "--organization", org, "--json"))
    assert {"name": "badge", "standard": False} in names and {"name": "department", "standard": True} in names
    mapping = as_json(dsync(tmp_path, "attributes", "map", directory, "badge", "urn:acme:ext:User:badge", "--json"))
    assert mapping == {
        "directory_id": directory,
        "name": "badge",
        "path": "urn:acme:ext:User:badge",
        "source": "custom",
    }
    off = as_json(dsync(tmp_path, "attributes", "map", directory, "department", "--none", "--json"))
    assert off["source"] == "none"
    back = as_json(dsync(tmp_path, "attributes", "reset", directory, "department", "--json"))
    assert back == {
        "directory_id": directory,
        "name": "department",
        "path": f"{ENTERPRISE}:department",
        "source": "default",
    }
    shown = as_json(dsync(tmp_path, "attributes", "mappings", directory, "--json"))
    assert {"directory_id": directory, "name": "badge", "path": "urn:acme:ext:User:badge", "source": "custom"} in shown
    assert as_json(dsync(tmp_path, "attributes", "undefine", "badge", "--organization", org, "--json"))["deleted"]

    for bad in (
        ("roles", "create", "Not A Slug", "--organization", org),
        ("roles", "list", "--organization", "org_missing"),
        ("attributes", "map", directory, "department", "a[b"),
        ("attributes", "map", directory, "department"),
        ("role-mappings", "set", directory, "directory_group_missing", "member"),
    ):
        result = dsync(tmp_path, *bad, check=False)
        assert result.returncode == 2 and result.stderr.startswith("error: "), (bad, result.stderr)
