"""The `dsync` console script as an operator runs it: real processes, a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DSYNC = str(Path(sys.executable).with_name("dsync"))


def dsync(
    tmp_path: Path, *args: str, check: bool = True, public_url: str | None = "https://dsync.example.com"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSYNC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'dsync.db'}"}
    env.pop("DSYNC_PUBLIC_URL", None)
    if public_url is not None:
        env["DSYNC_PUBLIC_URL"] = public_url
    if args and args[0] not in ("migrate", "serve", "simulate") and not (tmp_path / "dsync.db").exists():
        # Admin commands refuse to create a database (tests/gateway/test_cli_operator.py): start one as an operator
        # would, with `dsync migrate`.
        subprocess.run([DSYNC, "migrate"], env=env, capture_output=True, check=True, timeout=60)
    return subprocess.run([DSYNC, *args], env=env, capture_output=True, text=True, check=check, timeout=60)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_admin_commands(tmp_path: Path) -> None:
    organization = as_json(dsync(tmp_path, "organizations", "create", "Acme", "--domain", "Acme.com", "--json"))
    assert organization["id"].startswith("org_") and organization["domains"] == ["acme.com"]
    assert set(organization) == {"id", "name", "domains"}

    directory = as_json(
        dsync(
            tmp_path,
            "directories",
            "create",
            "--organization",
            organization["id"],
            "--name",
            "Acme JumpCloud",
            "--type",
            "jumpcloud",
            "--json",
        )
    )
    assert set(directory) == {"id", "organization_id", "name", "type", "state", "endpoint", "bearer_token"}
    assert directory["type"] == "jumpcloud" and directory["state"] == "unlinked"
    assert directory["endpoint"] == f"https://dsync.example.com/scim/v2/{directory['id']}"
    assert len(directory["bearer_token"]) >= 43  # 256 bits, base64url

    rotated = as_json(dsync(tmp_path, "directories", "rotate-token", directory["id"], "--json"))
    assert rotated["id"] == directory["id"] and rotated["bearer_token"] != directory["bearer_token"]

    key = as_json(dsync(tmp_path, "api-keys", "create", "--organization", organization["id"], "--json"))
    assert set(key) == {"id", "key", "organization_id"} and key["organization_id"] == organization["id"]
    admin_key = as_json(dsync(tmp_path, "api-keys", "create", "--json"))
    assert admin_key["organization_id"] is None

    # Secrets are stored only as hashes.
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("dsync.db*"))
    for secret in (directory["bearer_token"], rotated["bearer_token"], key["key"], admin_key["key"]):
        assert secret.encode() not in raw

    text = dsync(
        tmp_path, "directories", "create", "--organization", organization["id"], "--name", "Okta", "--type", "okta"
    ).stdout
    assert "SCIM endpoint: https://dsync.example.com/scim/v2/directory_" in text and "Bearer token:" in text

    deleted = as_json(dsync(tmp_path, "directories", "delete", directory["id"], "--json"))
    assert deleted == {"id": directory["id"], "deleted": True}


@pytest.mark.parametrize(
    "args",
    [
        ("directories", "create", "--organization", "org_missing", "--name", "X", "--json"),
        ("directories", "create", "--organization", "org_missing", "--name", "X", "--type", "ldap"),
        ("directories", "rotate-token", "directory_missing"),
        ("organizations", "create", "  "),
        ("organizations", "create", "Acme", "--domain", "not a domain"),
        ("api-keys", "create", "--organization", "org_missing"),
    ],
)
def test_admin_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = dsync(tmp_path, *args, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    assert "up to date" in dsync(tmp_path, "migrate").stdout
    assert "up to date" in dsync(tmp_path, "migrate").stdout


def test_deprovision_policy_commands(tmp_path: Path) -> None:
    organization = as_json(dsync(tmp_path, "organizations", "create", "Acme", "--json"))
    directory = as_json(
        dsync(
            tmp_path,
            "directories",
            "create",
            "--organization",
            organization["id"],
            "--name",
            "Okta",
            "--type",
            "okta",
            "--deprovision-policy",
            "delete_inactive",
            "--json",
        )
    )
    changed = as_json(
        dsync(tmp_path, "directories", "set-deprovision-policy", directory["id"], "keep_inactive", "--json")
    )
    assert changed == {"id": directory["id"], "deprovision_policy": "keep_inactive"}
    refused = dsync(tmp_path, "directories", "set-deprovision-policy", directory["id"], "shred", check=False)
    assert refused.returncode == 2 and "delete_inactive" in refused.stderr
