"""`dsync simulate` speaks the directory types' names: `--provider azure` is Entra ID, a missing token names
DSYNC_SCIM_TOKEN, and counts are singular when they are one."""

from __future__ import annotations

import json

import pytest

from tests.gateway.test_simulate import Gateway, gateway, simulate  # noqa: F401  (fixture)


async def test_azure_is_entra_and_one_group_is_singular(
    gateway: Gateway,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory, endpoint = await gateway.directory("azure")
    args = ["--endpoint", endpoint, "--token", directory.token, "--provider", "azure", "--users", "1", "--groups", "1"]
    code, out, err = await simulate(capsys, *args)
    assert code == 0, (out, err)
    assert "1 user and 1 group under" in out and "Entra" in out
    code, out, _ = await simulate(capsys, *args, "--json")
    assert json.loads(out)["provider"] == "entra"


async def test_missing_token_names_the_environment_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DSYNC_SCIM_TOKEN", raising=False)
    code, _out, err = await simulate(capsys, "--endpoint", "http://127.0.0.1:9/scim/v2/x")
    assert code == 2 and "--token" in err and "DSYNC_SCIM_TOKEN" in err
    help_text = await simulate_help(capsys)
    assert "DSYNC_SCIM_TOKEN" in help_text and "azure" in help_text


async def simulate_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        await simulate(capsys, "--help")
    return capsys.readouterr().out
