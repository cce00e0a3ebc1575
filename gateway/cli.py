"""The ``dsync`` console script: serve, migrate and the admin operations (see ARCHITECTURE.md)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from gateway.observe.logs import configure_logging
from gateway.ops import api_keys, directories, inputs, organizations
from gateway.ops import webhook_endpoints as webhooks
from gateway.settings import Settings, get_settings
from gateway.simulate import command as simulate
from gateway.store.database import Database
from gateway.store.migrate import upgrade


def _organization_json(organization: Any) -> dict[str, Any]:
    return {"id": organization.id, "name": organization.name, "domains": organization.domains}


def _directory_json(issued: directories.IssuedDirectory) -> dict[str, Any]:
    d = issued.directory
    return {
        "id": d.id,
        "organization_id": d.organization_id,
        "name": d.name,
        "type": d.type,
        "state": d.state,
        "endpoint": issued.endpoint,
        "bearer_token": issued.bearer_token,
    }


def _run_in_transaction(settings: Settings, operation: Callable[[Session], Any]) -> Any:
    if settings.is_sqlite:
        # The embedded database creates and migrates itself, so admin commands work before the first `serve`.
        upgrade(settings.database_url)
    return _transaction(settings, operation)


def _transaction(settings: Settings, operation: Callable[[Session], Any]) -> Any:
    async def run() -> Any:
        database = Database(settings)
        try:
            return await database.transaction(operation)
        finally:
            await database.dispose()

    return asyncio.run(run())


def _print(payload: dict[str, Any], *, as_json: bool, text: str) -> None:
    print(json.dumps(payload) if as_json else text)


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    configure_logging(log_format=settings.log_format, level=settings.log_level, access_log=settings.access_log)
    if settings.is_sqlite:
        upgrade(settings.database_url)
    if "DSYNC_PUBLIC_URL" not in os.environ:
        # Endpoint URLs shown for new directories must name the address this server really answers on.
        os.environ["DSYNC_PUBLIC_URL"] = _dashboard_url(args, settings).rstrip("/")
        get_settings.cache_clear()
        settings = get_settings()
    if settings.admin_key is None:
        key = _transaction(settings, api_keys.ensure_first_admin_key)
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
        # Event frames are small and go to many sockets: per-connection deflate cost ~100 KB of memory per
        # connection and a tenth of the fan-out's CPU for little gain.
        ws_per_message_deflate=False,
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


def _cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings.database_url)
    print("database is up to date")
    return 0


def _cmd_organizations_create(args: argparse.Namespace, settings: Settings) -> int:
    organization = _run_in_transaction(
        settings, lambda s: organizations.create_organization(s, name=args.name, domains=args.domain or [])
    )
    payload = _organization_json(organization)
    _print(payload, as_json=args.json, text=f"Created organization {organization.id} ({organization.name})")
    return 0


def _cmd_directories_create(args: argparse.Namespace, settings: Settings) -> int:
    issued = _run_in_transaction(
        settings,
        lambda s: directories.create_directory(
            s,
            organization_id=args.organization,
            name=args.name,
            type=args.type,
            public_url=settings.public_url,
            deprovision_policy=args.deprovision_policy,
        ),
    )
    _print(_directory_json(issued), as_json=args.json, text=_directory_text(issued, "Created"))
    return 0


def _cmd_directories_rotate_token(args: argparse.Namespace, settings: Settings) -> int:
    issued = _run_in_transaction(
        settings,
        lambda s: directories.rotate_directory_token(s, directory_id=args.directory_id, public_url=settings.public_url),
    )
    _print(_directory_json(issued), as_json=args.json, text=_directory_text(issued, "Rotated the token of"))
    return 0


def _cmd_directories_set_deprovision_policy(args: argparse.Namespace, settings: Settings) -> int:
    directory = _run_in_transaction(
        settings, lambda s: directories.set_deprovision_policy(s, directory_id=args.directory_id, policy=args.policy)
    )
    payload = {"id": directory.id, "deprovision_policy": directory.deprovision_policy}
    _print(payload, as_json=args.json, text=f"{directory.id}: deprovisioning policy {directory.deprovision_policy}")
    return 0


def _cmd_directories_delete(args: argparse.Namespace, settings: Settings) -> int:
    _run_in_transaction(settings, lambda s: directories.delete_directory(s, directory_id=args.directory_id))
    _print({"id": args.directory_id, "deleted": True}, as_json=args.json, text=f"Deleted {args.directory_id}")
    return 0


def _cmd_api_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    issued = _run_in_transaction(settings, lambda s: api_keys.create_api_key(s, organization_id=args.organization))
    payload = {"id": issued.api_key.id, "key": issued.key, "organization_id": issued.api_key.organization_id}
    scope = issued.api_key.organization_id or "all organizations (admin)"
    _print(payload, as_json=args.json, text=f"API key {issued.api_key.id} for {scope}:\n  {issued.key}\n(shown once)")
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
    issued = _run_in_transaction(
        settings,
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
    _print(_webhook_json(issued.endpoint, issued.secret), as_json=args.json, text=text)
    return 0


def _cmd_webhooks_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = _run_in_transaction(settings, lambda s: webhooks.list_webhook_endpoints(s, scope=args.organization))
    if args.json:
        print(json.dumps({"webhook_endpoints": [_webhook_json(row) for row in rows]}))
    else:
        print("\n".join(_webhook_text(row) for row in rows) or "no webhook endpoints")
    return 0


def _cmd_webhooks_delete(args: argparse.Namespace, settings: Settings) -> int:
    endpoint_id = args.webhook_endpoint_id
    _run_in_transaction(
        settings, lambda s: webhooks.delete_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=None)
    )
    _print({"id": endpoint_id, "deleted": True}, as_json=args.json, text=f"Deleted {endpoint_id}")
    return 0


def _cmd_webhooks_resume(args: argparse.Namespace, settings: Settings) -> int:
    endpoint_id = args.webhook_endpoint_id
    from_event = getattr(args, "from_event", None)  # redeliver only
    if from_event:
        row = _run_in_transaction(
            settings,
            lambda s: webhooks.redeliver_webhook_endpoint(
                s, webhook_endpoint_id=endpoint_id, scope=None, from_event_id=from_event
            ),
        )
    else:
        row = _run_in_transaction(
            settings, lambda s: webhooks.resume_webhook_endpoint(s, webhook_endpoint_id=endpoint_id, scope=None)
        )
    _print(_webhook_json(row), as_json=args.json, text=f"Resumed {_webhook_text(row)}")
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
        f"{verb} directory {d.id} ({d.name}, {d.type}) for {d.organization_id}\n"
        f"  SCIM endpoint: {issued.endpoint}\n"
        f"  Bearer token:  {issued.bearer_token}\n"
        "The token is shown once; paste both into your identity provider's SCIM settings."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsync", description="Directory Sync Gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (migrates the embedded database first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_cmd_serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=_cmd_migrate)
    commands.add_parser("export-schema", help="print the GraphQL schema (SDL)").set_defaults(handler=_cmd_export_schema)

    organizations = commands.add_parser("organizations").add_subparsers(dest="action", required=True)
    org_create = organizations.add_parser("create", help="create an organization")
    org_create.add_argument("name")
    org_create.add_argument("--domain", action="append", help="a domain of the organization (repeatable)")
    org_create.add_argument("--json", action="store_true")
    org_create.set_defaults(handler=_cmd_organizations_create)

    directories = commands.add_parser("directories").add_subparsers(dest="action", required=True)
    dir_create = directories.add_parser("create", help="create a directory; prints its SCIM endpoint and token")
    dir_create.add_argument("--organization", required=True, metavar="ORG_ID")
    dir_create.add_argument("--name", required=True)
    dir_create.add_argument("--type", default="jumpcloud", help="jumpcloud, okta, azure, onelogin or generic")
    dir_create.add_argument(
        "--deprovision-policy",
        default="keep_inactive",
        help="keep_inactive (deactivated users stay, inactive) or delete_inactive (deactivation deletes them)",
    )
    dir_create.add_argument("--json", action="store_true")
    dir_create.set_defaults(handler=_cmd_directories_create)
    policy = directories.add_parser("set-deprovision-policy", help="what a deactivation in the IdP does")
    policy.add_argument("directory_id")
    policy.add_argument("policy", help="keep_inactive or delete_inactive")
    policy.add_argument("--json", action="store_true")
    policy.set_defaults(handler=_cmd_directories_set_deprovision_policy)
    rotate = directories.add_parser("rotate-token", help="issue a new bearer token; the old one stops working")
    rotate.add_argument("directory_id")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(handler=_cmd_directories_rotate_token)
    dir_delete = directories.add_parser("delete", help="delete a directory with its users and groups")
    dir_delete.add_argument("directory_id")
    dir_delete.add_argument("--json", action="store_true")
    dir_delete.set_defaults(handler=_cmd_directories_delete)

    api_keys = commands.add_parser("api-keys").add_subparsers(dest="action", required=True)
    key_create = api_keys.add_parser("create", help="create a GraphQL API key (admin unless --organization)")
    key_create.add_argument("--organization", metavar="ORG_ID")
    key_create.add_argument("--json", action="store_true")
    key_create.set_defaults(handler=_cmd_api_keys_create)

    hooks = commands.add_parser("webhooks").add_subparsers(dest="action", required=True)
    hook_create = hooks.add_parser("create", help="create a webhook endpoint; prints its signing secret once")
    hook_create.add_argument("--url", required=True)
    hook_create.add_argument("--organization", metavar="ORG_ID", help="its events only (default: every organization)")
    hook_create.add_argument("--event", action="append", help="an event name to deliver (repeatable; default: all)")
    hook_create.add_argument("--disabled", action="store_true", help="create it disabled")
    hook_create.add_argument("--json", action="store_true")
    hook_create.set_defaults(handler=_cmd_webhooks_create)
    hook_list = hooks.add_parser("list", help="list webhook endpoints")
    hook_list.add_argument("--organization", metavar="ORG_ID", help="that organization's endpoints only")
    hook_list.add_argument("--json", action="store_true")
    hook_list.set_defaults(handler=_cmd_webhooks_list)
    hook_delete = hooks.add_parser("delete", help="delete a webhook endpoint")
    hook_delete.add_argument("webhook_endpoint_id")
    hook_delete.add_argument("--json", action="store_true")
    hook_delete.set_defaults(handler=_cmd_webhooks_delete)
    for name, help_text, from_event in (
        ("resume", "deliver again after a failure, from the first event not yet delivered", False),
        ("redeliver", "deliver again every matching event from --from EVENT_ID (included) on", True),
    ):
        command = hooks.add_parser(name, help=help_text)
        command.add_argument("webhook_endpoint_id")
        if from_event:
            command.add_argument("--from", dest="from_event", required=True, metavar="EVENT_ID")
        command.add_argument("--json", action="store_true")
        command.set_defaults(handler=_cmd_webhooks_resume)

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
