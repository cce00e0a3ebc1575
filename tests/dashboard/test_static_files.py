"""The dashboard's files as served (headers, types) and as shipped (imports resolve, the wheel includes them all,
no markup or code injected from strings)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.dashboard import STATIC_DIRECTORY, Dashboard

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(STATIC_DIRECTORY.rglob("*.js"))


def _client() -> httpx.AsyncClient:
    app = Starlette(routes=[Mount("/", Dashboard())])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_pages_are_served_with_a_strict_content_security_policy() -> None:
    async with _client() as client:
        page = await client.get("/")
        script = await client.get("/js/main.js")
        missing = await client.get("/no-such-file.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert missing.status_code == 404


def test_no_inline_script_or_style_and_no_html_from_strings() -> None:
    index = (STATIC_DIRECTORY / "index.html").read_text()
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", index))
    assert " style=" not in index
    for script in SCRIPTS:
        source = script.read_text()
        assert not re.search(r"\.(inner|outer)HTML\b|insertAdjacentHTML\(|document\.write\(|\beval\(", source), script


def test_every_module_import_resolves() -> None:
    for script in SCRIPTS:
        for target in re.findall(r"""from\s+["'](\.{1,2}/[^"']+)["']""", script.read_text()):
            assert (script.parent / target).resolve().is_file(), f"{script.name} imports missing {target}"


def test_the_wheel_ships_every_dashboard_file() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["gateway.dashboard"]
    for path in STATIC_DIRECTORY.rglob("*"):
        if path.is_file():
            relative = path.relative_to(STATIC_DIRECTORY.parent).as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), f"{relative} is not package data"
