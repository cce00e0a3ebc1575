"""The ``dsync`` console script: serve, migrate and the admin operations (see ARCHITECTURE.md)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from gateway import admin, admin_rules
from gateway.observe.logs import configure_logging
from gateway.ops import api_keys, directories, inputs, organizations
from gateway.ops import webhook_endpoints as webhooks
from gateway.ops.public_url import announce_public_url
from gateway.settings import ROLES, Settings, get_settings
from gateway.simulate import command as simulate
from gateway.store.migrate import upgrade


def _directory_json(issued: directories.IssuedDirectory) -> dict[str, Any]:
    d = issued.directory
    return {
        "id": d.id,
        "organization_id": d.organization_id,
        "name": d.name,
        "type": admin.type_name(d.type),
        "state": d.state,
        "endpoint": issued.endpoint,
        "bearer_token": issued.bearer_token,
    }


def _lower_priority(nice: int) -> None:
    """Run this process at nice level ``nice`` at least (a level it already has above that is kept)."""
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    # With the kernel's autogroup scheduling (sched_autogroup_enabled) CPU is shared between sessions first, and a
    # nice level ranks a process only within its own session: measured, a realtime server at nice 19 in a session of
    # its own still took as much CPU as ingest. A process leading its session (a supervisor's or a container's child)
    # is that group with its children, so it lowers the group too; in another's session (a shell) it does not.
    autogroup = Path("/proc/self/autogroup")
    if os.getsid(0) == os.getpid() and autogroup.exists():
        with contextlib.suppress(OSError, ValueError):
            if nice > int(autogroup.read_text().split()[-1]):
                autogroup.write_text(f"{nice}\n")


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    configure_logging(log_format=settings.log_format, level=settings.log_level, access_log=settings.access_log)
    if args.role is not None:
        os.environ["DSYNC_ROLE"] = args.role  # read by the app factory uvicorn calls
        get_settings.cache_clear()
        settings = get_settings()
    from gateway.app import check_role
    from gateway.http_transport import HttpProtocol
    from gateway.ws_transport import ws_protocol

    try:
        check_role(settings)
    except ValueError as error:
        print(f"dsync serve: {error}", file=sys.stderr)
        return 2
    if settings.role == "realtime":
        _lower_priority(settings.realtime_nice)
    if "DSYNC_PUBLIC_URL" not in os.environ:
        # Endpoint URLs shown for new directories must name the address this server really answers on.
        os.environ["DSYNC_PUBLIC_URL"] = _dashboard_url(args, settings).rstrip("/")
        get_settings.cache_clear()
        settings = get_settings()
    # The CLI, run against this database without DSYNC_PUBLIC_URL, prints endpoints under the URL announced here.
    public_url, bootstrap_key = settings.public_url, settings.admin_key

    def start(session: Session) -> str | None:
        announce_public_url(session, public_url=public_url)
        return api_keys.ensure_first_admin_key(session) if bootstrap_key is None else None

    key = admin.run(settings, args, start)
    if key is not None:
        print(_first_run_text(key, _dashboard_url(args, settings)), flush=True)
    # Request handling allocates many short-lived containers: with the default generation-0 threshold (700) the
    # cyclic collector runs every few requests and costs ~10% of SCIM throughput. Collect less often, but not so
    # rarely that one collection becomes a long pause (100,000 gave 100+ ms GraphQL p99 stalls), and keep the
    # objects alive since start-up (modules, schema, compiled statements) out of every collection.
    gc.set_threshold(20_000, 50, 100)
    gc.freeze()
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_config=None,  # configure_logging above set up every logger, uvicorn's included
        access_log=settings.access_log,
        http=HttpProtocol,  # httptools, each response's head and body in one socket write
        # Event frames are small and go to many sockets: per-connection deflate cost ~100 KB of memory per
        # connection and a tenth of the fan-out's CPU for little gain.
        ws_per_message_deflate=False,
        ws=ws_protocol(settings.ws_implementation),
        ws_max_size=1024 * 1024,  # GraphQL documents are capped at 2,000 tokens: no client needs more
    )
    return 0


def _dashboard_url(args: argparse.Namespace, settings: Settings) -> str:
    if settings.public_url != Settings.public_url:  # DSYNC_PUBLIC_URL is set
        return f"{settings.public_url}/"
    host = "localhost" if args.host in ("", "0.0.0.0", "::") else args.host
    return f"http://{f'[{host}]' if ':' in host else host}:{args.port}/"


def _first_run_text(key: str, dashboard_url: str) -> str:
    return (
        "First run: created an admin API key. It is shown only this once (only its hash is stored):\n\n"
        f"    {key}\n\n"
        f"Sign in to the dashboard with it: {dashboard_url}\n"
    )


def _cmd_webhooks_deliver(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from gateway.webhooks.process import deliver_until_stopped

    configure_logging(log_format=settings.log_format, level=settings.log_level, access_log=False)
    asyncio.run(deliver_until_stopped(settings))
    return 0


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings.database_url)
    admin.emit({"status": "up to date"}, as_json=args.json, text="database is up to date")
    return 0


def _cmd_organizations_create(args: argparse.Namespace, settings: Settings) -> int:
    organization = admin.run(
        settings, args, lambda s: organizations.create_organization(s, name=args.name, domains=args.domain or [])
    )
    payload = admin.organization_json(organization)
    admin.emit(payload, as_json=args.json, text=f"Created organization {organization.id} ({organization.name})")
    return 0


def _cmd_directories_create(args: argparse.Namespace, settings: Settings) -> int:
    issued = admin.run(
        settings,
        args,
        lambda s: directories.create_directory(
            s,
            organization_id=args.organization,
            name=args.name,
            type=args.type,
            public_url=admin.public_url(s, settings),
            deprovision_policy=args.deprovision_policy,
        ),
    )
    admin.emit(_directory_json(issued), as_json=args.json, text=_directory_text(issued, "Created"))
    return 0


def _cmd_directories_rotate_token(args: argparse.Namespace, settings: Settings) -> int:
    issued = admin.run(
        settings,
        args,
        lambda s: directories.rotate_directory_token(
            s, directory_id=args.directory_id, public_url=admin.public_url(s, settings)
        ),
    )
    admin.emit(_directory_json(issued), as_json=args.json, text=_directory_text(issued, "Rotated the token of"))
    return 0


def _cmd_directories_set_deprovision_policy(args: argparse.Namespace, settings: Settings) -> int:
    directory = admin.run(
        settings,
        args,
        lambda s: directories.set_deprovision_policy(s, directory_id=args.directory_id, policy=args.policy),
    )
    payload = {"id": directory.id, "deprovision_policy": directory.deprovision_policy}
    admin.emit(payload, as_json=args.json, text=f"{directory.id}: deprovisioning policy {directory.deprovision_policy}")
    return 0


def _cmd_directories_delete(args: argparse.Namespace, settings: Settings) -> int:
    admin.run(settings, args, lambda s: directories.delete_directory(s, directory_id=args.directory_id))
    admin.emit({"id": args.directory_id, "deleted": True}, as_json=args.json, text=f"Deleted {args.directory_id}")
    return 0


def _cmd_api_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    issued = admin.run(settings, args, lambda s: api_keys.create_api_key(s, organization_id=args.organization))
    payload = {"id": issued.api_key.id, "key": issued.key, "organization_id": issued.api_key.organization_id}
    scope = issued.api_key.organization_id or "all organizations (admin)"
    admin.emit(
        payload, as_json=args.json, text=f"API key {issued.api_key.id} for {scope}:\n  {issued.key}\n(shown once)"
    )
    return 0


def _webhook_json(endpoint: Any, secret: str | None = None) -> dict[str, Any]:
    payload = {
        "id": endpoint.id,
        "organization_id": endpoint.organization_id,
        "url": endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
        "state": endpoint.state,
        "failed_attempts": endpoint.failed_attempts,
        "last_error": endpoint.last_error,
    }
    if secret is not None:
        payload["secret"] = secret
    return payload


def _webhook_text(endpoint: Any) -> str:
    scope = endpoint.organization_id or "all organizations"
    events = ", ".join(endpoint.events) or "all events"
    flags = endpoint.state + ("" if endpoint.enabled else ", disabled")
    error = f" (last error: {endpoint.last_error})" if endpoint.last_error else ""
    return f"{endpoint.id} {endpoint.url} [{scope}; {events}; {flags}]{error}"


def _cmd_webhooks_create(args: argparse.Namespace, settings: Settings) -> int:
    # The CLI runs with the operator's access to the database: an admin, who may target private networks.
    issued = admin.run(
        settings,
        args,
        lambda s: webhooks.create_webhook_endpoint(
            s,
            url=args.url,
            organization_id=args.organization,
            events=args.event or [],
            enabled=not args.disabled,
            allow_private=True,
        ),
    )
    text = f"Created webhook endpoint {_webhook_text(issued.endpoint)}\n  Signing secret: {issued.secret}  (shown once)"
    admin.emit(_webhook_json(issued.endpoint, issued.secret), as_json=args.json, text=text)
    return 0


def _cmd_webhooks_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = admin.run(settings, args, lambda s: webhooks.list_webhook_endpoints(s, scope=args.organization))
    if args.json:
        admin.emit({"webhook_endpoints": [_webhook_json(row) for row in rows]}, as_json=True, text="")
    else:
        print("\n".join(_webhook_text(row) for row in rows) or "no webhook endpoints")
    return 0


def _cmd_webhooks_delete(args: argparse.Namespace, settings: Settings) -> int:
    endpoint_id = args.webhook_endpoint_id
    admin.run(
        settings, args, lambda s: webhooks.delete_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=None)
    )
    admin.emit({"id": endpoint_id, "deleted": True}, as_json=args.json, text=f"Deleted {endpoint_id}")
    return 0


def _cmd_webhooks_resume(args: argparse.Namespace, settings: Settings) -> int:
    endpoint_id = args.webhook_endpoint_id
    from_event = getattr(args, "from_event", None)  # redeliver only
    if from_event:
        row = admin.run(
            settings,
            args,
            lambda s: webhooks.redeliver_webhook_endpoint(
                s, webhook_endpoint_id=endpoint_id, scope=None, from_event_id=from_event
            ),
        )
    else:
        row = admin.run(
            settings, args, lambda s: webhooks.resume_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=None)
        )
    admin.emit(_webhook_json(row), as_json=args.json, text=f"Resumed {_webhook_text(row)}")
    return 0


def _cmd_export_schema(_args: argparse.Namespace, _settings: Settings) -> int:
    from gateway.graphql import schema

    print(schema.as_str())
    return 0


def _cmd_simulate(args: argparse.Namespace, _settings: Settings) -> int:
    return simulate.run(args)


def _directory_text(issued: directories.IssuedDirectory, verb: str) -> str:
    d = issued.directory
    return (
        f"{verb} directory {d.id} ({d.name}, {admin.type_name(d.type)}) for {d.organization_id}\n"
        f"  SCIM endpoint: {issued.endpoint}\n"
        f"  Bearer token:  {issued.bearer_token}\n"
        "The token is shown once; paste both into your identity provider's SCIM settings."
    )


def _parsers(commands: Any, name: str, help: str) -> Any:
    group = commands.add_parser(name, help=help, description=help)
    return group.add_subparsers(dest="action", required=True, metavar="ACTION")


def _command(
    group: Any, name: str, help: str, handler: Callable[[argparse.Namespace, Settings], int], *, store: bool = True
) -> argparse.ArgumentParser:
    """A subcommand with a description in its --help, ``--json``, and (for store commands) ``--create-database``."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
    parser.add_argument("--json", action="store_true", help="print one JSON object (or array, for list commands)")
    if store:
        parser.add_argument(
            "--create-database",
            action="store_true",
            help="create the SQLite database if it does not exist (by default the command refuses: a typo'd "
            "DSYNC_DATABASE_URL or another folder would silently start an empty one)",
        )
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsync",
        description="Directory Sync Gateway: SCIM 2.0 in, GraphQL and a dashboard out. Every command takes --help.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gateway (creates and migrates the embedded database first)",
        description="Run the gateway: SCIM, GraphQL, the dashboard and setup links on one port.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--role",
        choices=ROLES,
        default=None,
        help="all (default); ingest: SCIM, REST, GraphQL over HTTP, webhooks; realtime: GraphQL subscriptions "
        "(and queries). A split needs a redis:// or postgres:// DSYNC_BROADCAST_URL (DSYNC_ROLE)",
    )
    serve.set_defaults(handler=_cmd_serve, create_database=True)

    _command(commands, "migrate", "create or upgrade the database schema", _cmd_migrate, store=False)
    commands.add_parser(
        "export-schema", help="print the GraphQL schema (SDL)", description="Print the GraphQL schema (SDL)."
    ).set_defaults(handler=_cmd_export_schema)

    orgs = _parsers(commands, "organizations", "create, list, show, rename and delete organizations")
    org_create = _command(orgs, "create", "create an organization", _cmd_organizations_create)
    org_create.add_argument("name")
    org_create.add_argument("--domain", action="append", help="a domain of the organization (repeatable)")
    _command(orgs, "list", "list organizations", admin.organizations_list)
    _command(orgs, "show", "an organization with its directories", admin.organizations_show).add_argument(
        "organization_id"
    )
    org_rename = _command(orgs, "rename", "rename an organization", admin.organizations_rename)
    org_rename.add_argument("organization_id")
    org_rename.add_argument("name")
    org_delete = _command(
        orgs, "delete", "delete an organization with its directories and API keys", admin.organizations_delete
    )
    org_delete.add_argument("organization_id")

    dirs = _parsers(commands, "directories", "create, list, show and manage directories (SCIM endpoints)")
    dir_create = _command(
        dirs, "create", "create a directory; prints its SCIM endpoint and token", _cmd_directories_create
    )
    dir_create.add_argument("--organization", required=True, metavar="ORG_ID")
    dir_create.add_argument("--name", required=True)
    dir_create.add_argument(
        "--type", default="jumpcloud", help="jumpcloud, okta, azure (Entra ID), onelogin or generic"
    )
    dir_create.add_argument(
        "--deprovision-policy",
        default="keep_inactive",
        help="keep_inactive (deactivated users stay, inactive) or delete_inactive (deactivation deletes them)",
    )
    dir_list = _command(dirs, "list", "list directories", admin.directories_list)
    dir_list.add_argument("--organization", metavar="ORG_ID", help="only this organization's")
    _command(dirs, "show", "a directory with its SCIM endpoint (never its token)", admin.directories_show).add_argument(
        "directory_id"
    )
    policy = _command(
        dirs, "set-deprovision-policy", "what a deactivation in the IdP does", _cmd_directories_set_deprovision_policy
    )
    policy.add_argument("directory_id")
    policy.add_argument("policy", help="keep_inactive or delete_inactive")
    rotate = _command(
        dirs, "rotate-token", "issue a new bearer token; the old one stops working", _cmd_directories_rotate_token
    )
    rotate.add_argument("directory_id")
    dir_delete = _command(dirs, "delete", "delete a directory with its users and groups", _cmd_directories_delete)
    dir_delete.add_argument("directory_id")
    link = _command(
        dirs, "setup-link", "a one-time link for the customer's IT admin to connect their IdP", admin.setup_links_create
    )
    link.add_argument("directory_id")
    link.add_argument("--hours", type=float, default=72, help="how long the link is valid (default 72, at most 720)")
    _command(dirs, "setup-links", "a directory's setup links and their status", admin.setup_links_list).add_argument(
        "directory_id"
    )
    _command(
        dirs, "revoke-setup-link", "revoke a setup link (it then answers 'not valid')", admin.setup_links_revoke
    ).add_argument("link_id")

    keys = _parsers(commands, "api-keys", "create, list and revoke GraphQL/dashboard API keys")
    key_create = _command(keys, "create", "create an API key (admin unless --organization)", _cmd_api_keys_create)
    key_create.add_argument("--organization", metavar="ORG_ID")
    key_list = _command(
        keys, "list", "list API keys (ids, scope, created, last used; never the keys)", admin.api_keys_list
    )
    key_list.add_argument("--organization", metavar="ORG_ID", help="only this organization's keys")
    key_list.add_argument("--admin", action="store_true", help="only admin keys")
    _command(keys, "revoke", "revoke an API key by its id", admin.api_keys_revoke).add_argument("api_key_id")

    hooks = _parsers(commands, "webhooks", "signed webhook endpoints that receive the event log (WorkOS format)")
    hook_create = _command(
        hooks, "create", "create a webhook endpoint; prints its signing secret once", _cmd_webhooks_create
    )
    hook_create.add_argument("--url", required=True)
    hook_create.add_argument("--organization", metavar="ORG_ID", help="its events only (default: every organization)")
    hook_create.add_argument("--event", action="append", help="an event name to deliver (repeatable; default: all)")
    hook_create.add_argument("--disabled", action="store_true", help="create it disabled")
    hook_list = _command(hooks, "list", "list webhook endpoints", _cmd_webhooks_list)
    hook_list.add_argument("--organization", metavar="ORG_ID", help="that organization's endpoints only")
    _command(hooks, "delete", "delete a webhook endpoint", _cmd_webhooks_delete).add_argument("webhook_endpoint_id")
    for name, help_text, from_event in (
        ("resume", "deliver again after a failure, from the first event not yet delivered", False),
        ("redeliver", "deliver again every matching event from --from EVENT_ID (included) on", True),
    ):
        command = _command(hooks, name, help_text, _cmd_webhooks_resume)
        command.add_argument("webhook_endpoint_id")
        if from_event:
            command.add_argument("--from", dest="from_event", required=True, metavar="EVENT_ID")

    _command(
        hooks,
        "deliver",
        "run the delivery worker in the foreground (`dsync serve` starts one unless DSYNC_WEBHOOK_PROCESS=0)",
        _cmd_webhooks_deliver,
        store=False,
    )
    admin_rules.add_commands(commands, _parsers, _command)

    play = commands.add_parser("simulate", help="play an identity provider's SCIM session against an endpoint")
    simulate.add_arguments(play)
    play.set_defaults(handler=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
        handler: Callable[[argparse.Namespace, Settings], int] = args.handler
        return handler(args, settings)
    except inputs.InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
