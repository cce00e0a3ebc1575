"""The CLI's operator commands over the store: opening the database a command means (never creating one by
accident), the public URL endpoints are printed under, and the list/show/rename/delete/revoke commands with their
text and ``--json`` output. ``gateway.cli`` builds the parser and dispatches here."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from gateway.ops import api_keys, directories, inputs, organizations, setup_links
from gateway.ops.public_url import announced_public_url
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.models import ApiKey, Directory, DirectoryType, Organization, SetupLink

T = TypeVar("T")


class NoDatabase(inputs.InvalidInput):
    """The command would have created a new, empty database."""


def sqlite_path(database_url: str) -> Path | None:
    """The file of an SQLite URL (None for other stores and in-memory databases)."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).resolve()


def _require_database(settings: Settings, *, create: bool) -> None:
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists() and not create:
        raise NoDatabase(
            f"no database at {path}. Run this command where `dsync serve` runs (or set DSYNC_DATABASE_URL to its "
            "database); `dsync migrate` or --create-database starts a new one"
        )


def run(settings: Settings, args: argparse.Namespace, operation: Callable[[Session], T]) -> T:
    """Run ``operation`` in one transaction on the database the command means: an existing one, unless
    ``--create-database`` was given. The embedded SQLite file is migrated first (admin commands work before the
    first ``serve``); PostgreSQL must have been migrated (``dsync migrate``)."""
    _require_database(settings, create=getattr(args, "create_database", False))
    if settings.is_sqlite:
        upgrade(settings.database_url)

    async def go() -> T:
        database = Database(settings)
        try:
            if not settings.is_sqlite:
                await database.query(_check_migrated)
            return await database.transaction(operation)
        finally:
            await database.dispose()

    return asyncio.run(go())


def _check_migrated(session: Session) -> None:
    try:
        session.execute(text("SELECT version_num FROM alembic_version")).first()
    except Exception:
        raise NoDatabase("the database has no schema yet: run `dsync migrate` first") from None


def public_url(session: Session, settings: Settings) -> str:
    """``DSYNC_PUBLIC_URL`` when set, else the URL the last ``dsync serve`` on this database announced, else the
    default: so the CLI prints the endpoints the server really answers on."""
    if os.environ.get("DSYNC_PUBLIC_URL"):
        return settings.public_url
    return announced_public_url(session) or settings.public_url


def type_name(directory_type: str) -> str:
    """A directory type as the CLI shows and takes it (``okta``, ``azure``…): GraphQL's enum name, lower case."""
    return DirectoryType(directory_type).name.lower()


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def organization_json(organization: Organization) -> dict[str, Any]:
    return {"id": organization.id, "name": organization.name, "domains": list(organization.domains)}


def directory_json(directory: Directory, *, endpoint: str) -> dict[str, Any]:
    return {
        "id": directory.id,
        "organization_id": directory.organization_id,
        "name": directory.name,
        "type": type_name(directory.type),
        "state": directory.state,
        "deprovision_policy": directory.deprovision_policy,
        "endpoint": endpoint,
        "created_at": _time(directory.created_at),
    }


def api_key_json(api_key: ApiKey) -> dict[str, Any]:
    return {
        "id": api_key.id,
        "organization_id": api_key.organization_id,
        "scope": api_key.organization_id or "admin",
        "created_at": _time(api_key.created_at),
        "last_used_at": _time(api_key.last_used_at),
        "revoked_at": _time(api_key.revoked_at),
    }


def emit(payload: Any, *, as_json: bool, text: str) -> None:
    print(json.dumps(payload) if as_json else text)


def text_table(rows: list[list[str]], header: list[str], empty: str) -> str:
    if not rows:
        return empty
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]
    )


# organizations -------------------------------------------------------------------------------------------------


def organizations_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = run(settings, args, organizations.list_organizations)
    payload = [organization_json(o) for o in rows]
    table = [[o.id, o.name, ", ".join(o.domains)] for o in rows]
    emit(payload, as_json=args.json, text=text_table(table, ["ID", "NAME", "DOMAINS"], "No organizations yet."))
    return 0


def organizations_show(args: argparse.Namespace, settings: Settings) -> int:
    def show(session: Session) -> tuple[Organization, list[Directory], str]:
        organization = organizations.get_organization(session, organization_id=args.organization_id)
        found = directories.list_directories(session, organization_id=organization.id)
        return organization, found, public_url(session, settings)

    organization, found, base = run(settings, args, show)
    payload = {
        **organization_json(organization),
        "directories": [directory_json(d, endpoint=_endpoint(base, d)) for d in found],
    }
    lines = [f"{organization.id}  {organization.name}", f"  domains: {', '.join(organization.domains) or '—'}"]
    lines += [f"  directory {d.id}  {d.name} ({type_name(d.type)}, {d.state})" for d in found] or ["  no directories"]
    emit(payload, as_json=args.json, text="\n".join(lines))
    return 0


def organizations_rename(args: argparse.Namespace, settings: Settings) -> int:
    organization = run(
        settings,
        args,
        lambda s: organizations.update_organization(s, organization_id=args.organization_id, name=args.name),
    )
    emit(organization_json(organization), as_json=args.json, text=f"Renamed {organization.id} to {organization.name}")
    return 0


def organizations_delete(args: argparse.Namespace, settings: Settings) -> int:
    run(settings, args, lambda s: organizations.delete_organization(s, organization_id=args.organization_id))
    text = f"Deleted {args.organization_id} with its directories and API keys"
    emit({"id": args.organization_id, "deleted": True}, as_json=args.json, text=text)
    return 0


# directories ---------------------------------------------------------------------------------------------------


def _endpoint(base: str, directory: Directory) -> str:
    return directories.directory_endpoint(public_url=base, directory_id=directory.id)


def directories_list(args: argparse.Namespace, settings: Settings) -> int:
    def listing(session: Session) -> tuple[list[Directory], str]:
        return directories.list_directories(session, organization_id=args.organization), public_url(session, settings)

    found, base = run(settings, args, listing)
    payload = [directory_json(d, endpoint=_endpoint(base, d)) for d in found]
    table = [[d.id, d.organization_id, d.name, type_name(d.type), d.state] for d in found]
    header = ["ID", "ORGANIZATION", "NAME", "TYPE", "STATE"]
    emit(payload, as_json=args.json, text=text_table(table, header, "No directories yet."))
    return 0


def directories_show(args: argparse.Namespace, settings: Settings) -> int:
    def show(session: Session) -> tuple[Directory, str]:
        return directories.get_directory(session, directory_id=args.directory_id), public_url(session, settings)

    directory, base = run(settings, args, show)
    payload = directory_json(directory, endpoint=_endpoint(base, directory))
    text = "\n".join(
        [
            f"{directory.id}  {directory.name}",
            f"  organization:  {directory.organization_id}",
            f"  type:          {payload['type']}",
            f"  state:         {directory.state}",
            f"  deprovision:   {directory.deprovision_policy}",
            f"  SCIM endpoint: {payload['endpoint']}",
            "  (the bearer token is never shown again: `dsync directories rotate-token` issues a new one)",
        ]
    )
    emit(payload, as_json=args.json, text=text)
    return 0


# API keys ------------------------------------------------------------------------------------------------------


def api_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    keys = run(
        settings, args, lambda s: api_keys.list_api_keys(s, organization_id=args.organization, admin_only=args.admin)
    )
    payload = [api_key_json(k) for k in keys]
    table = [
        [
            k.id,
            k.organization_id or "admin",
            _day(k.created_at),
            _day(k.last_used_at),
            "revoked" if k.revoked_at else "",
        ]
        for k in keys
    ]
    header = ["ID", "SCOPE", "CREATED", "LAST USED", "REVOKED"]
    emit(payload, as_json=args.json, text=text_table(table, header, "No API keys yet."))
    return 0


def _day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "—"


def api_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    api_key = run(settings, args, lambda s: api_keys.revoke_api_key(s, api_key_id=args.api_key_id))
    emit(api_key_json(api_key), as_json=args.json, text=f"Revoked {api_key.id}: requests made with it are refused")
    return 0


# setup links ---------------------------------------------------------------------------------------------------


def setup_links_create(args: argparse.Namespace, settings: Settings) -> int:
    def create(session: Session) -> tuple[setup_links.IssuedSetupLink, str]:
        issued = setup_links.create_setup_link(session, directory_id=args.directory_id, hours=args.hours)
        return issued, public_url(session, settings)

    issued, base = run(settings, args, create)
    url = setup_links.setup_url(public_url=base, token=issued.token)
    payload = {
        "id": issued.link.id,
        "directory_id": issued.link.directory_id,
        "url": url,
        "expires_at": _time(issued.link.expires_at),
    }
    text = (
        f"Setup link for {issued.link.directory_id} (one use, expires {_day(issued.link.expires_at)} UTC):\n"
        f"  {url}\n"
        "Send it to the customer's IT admin; it is shown once (only its hash is stored)."
    )
    emit(payload, as_json=args.json, text=text)
    return 0


def _setup_link_json(link: SetupLink) -> dict[str, Any]:
    return {
        "id": link.id,
        "directory_id": link.directory_id,
        "status": setup_links.setup_link_status(link),
        "created_at": _time(link.created_at),
        "expires_at": _time(link.expires_at),
        "revealed_at": _time(link.revealed_at),
    }


def setup_links_list(args: argparse.Namespace, settings: Settings) -> int:
    def read(session: Session) -> list[dict[str, Any]]:
        directories.get_directory(session, directory_id=args.directory_id)  # an unknown id is an error, not []
        links = setup_links.list_setup_links(session, directory_id=args.directory_id)
        return [_setup_link_json(link) for link in links]

    links = run(settings, args, read)
    table = [[link["id"], link["status"], link["created_at"] or "", link["expires_at"] or ""] for link in links]
    header = ["ID", "STATUS", "CREATED", "EXPIRES"]
    emit(links, as_json=args.json, text=text_table(table, header, "No setup links for this directory."))
    return 0


def setup_links_revoke(args: argparse.Namespace, settings: Settings) -> int:
    link = run(settings, args, lambda s: _setup_link_json(setup_links.revoke_setup_link(s, setup_link_id=args.link_id)))
    emit(link, as_json=args.json, text=f"Revoked {link['id']}: opening it now answers that it is not valid")
    return 0
