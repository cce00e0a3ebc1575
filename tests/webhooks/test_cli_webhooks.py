"""``dsync webhooks create|list|delete|resume|redeliver`` against the embedded database, with ``--json``."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.test_cli import as_json, dsync


def test_webhook_commands(tmp_path: Path) -> None:
    organization = as_json(dsync(tmp_path, "organizations", "create", "Acme", "--json"))
    created = as_json(
        dsync(
            tmp_path,
            "webhooks",
            "create",
            "--url",
            "http://10.0.0.5/hooks",
            "--organization",
            organization["id"],
            "--event",
            "dsync.user.created",
            "--event",
            "dsync.user.deleted",
            "--json",
        )
    )
    assert created["id"].startswith("webhook_endpoint_") and created["secret"].startswith("whsec_")
    assert created["events"] == ["dsync.user.created", "dsync.user.deleted"] and created["enabled"]
    everything = as_json(
        dsync(tmp_path, "webhooks", "create", "--url", "https://hooks.example.com/", "--disabled", "--json")
    )
    assert everything["organization_id"] is None and not everything["enabled"]

    listed = as_json(dsync(tmp_path, "webhooks", "list", "--json"))["webhook_endpoints"]
    assert [e["id"] for e in listed] == [created["id"], everything["id"]]
    assert all("secret" not in e for e in listed)  # shown once, at creation
    scoped = as_json(dsync(tmp_path, "webhooks", "list", "--organization", organization["id"], "--json"))
    assert [e["id"] for e in scoped["webhook_endpoints"]] == [created["id"]]

    assert as_json(dsync(tmp_path, "webhooks", "resume", created["id"], "--json"))["state"] == "active"
    missing = dsync(tmp_path, "webhooks", "redeliver", created["id"], "--from", "event_missing", check=False)
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad = dsync(tmp_path, "webhooks", "create", "--url", "ftp://x", check=False)
    assert bad.returncode == 2 and "http" in bad.stderr
    assert as_json(dsync(tmp_path, "webhooks", "delete", everything["id"], "--json")) == {
        "id": everything["id"],
        "deleted": True,
    }
    assert "no webhook endpoints" not in dsync(tmp_path, "webhooks", "list").stdout
