"""The ``dsync roles``, ``dsync role-mappings`` and ``dsync attributes`` commands: the operator's side of
``gateway.ops.roles`` and ``gateway.ops.attribute_mappings`` (as an admin). A running server re-evaluates the users
a change concerns within its poll interval (``DSYNC_RULE_EVALUATION_POLL_SECONDS``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gateway import admin
from gateway.ops import attribute_mappings, roles
from gateway.ops.inputs import InvalidInput
from gateway.settings import Settings
from gateway.store.models import Role

Handler = Callable[[argparse.Namespace, Settings], int]
AddCommand = Callable[[Any, str, str, Handler], argparse.ArgumentParser]


def _role_json(role: Role) -> dict[str, Any]:
    return {
        "id": role.id,
        "organization_id": role.organization_id,
        "slug": role.slug,
        "name": role.name,
        "default": role.is_default,
    }


def _mapping_json(view: roles.RoleMappingView) -> dict[str, Any]:
    m = view.mapping
    return {
        "id": m.id,
        "directory_id": m.directory_id,
        "group_id": m.group_id,
        "group_name": view.group_name,
        "role": view.role_slug,
        "priority": m.priority,
    }


def _attribute_json(view: attribute_mappings.AttributeMappingView) -> dict[str, Any]:
    return {"directory_id": view.directory_id, "name": view.name, "path": view.path, "source": view.source}


def roles_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = admin.run(settings, args, lambda s: roles.list_roles(s, organization_id=args.organization, scope=None))
    table = [[r.slug, r.name, "default" if r.is_default else "", r.id] for r in rows]
    text = admin.text_table(table, ["SLUG", "NAME", "", "ID"], "No roles yet.")
    admin.emit([_role_json(r) for r in rows], as_json=args.json, text=text)
    return 0


def roles_create(args: argparse.Namespace, settings: Settings) -> int:
    role = admin.run(
        settings,
        args,
        lambda s: roles.create_role(
            s,
            organization_id=args.organization,
            slug=args.slug,
            name=args.name or args.slug,
            default=args.default,
            scope=None,
        ),
    )
    admin.emit(_role_json(role), as_json=args.json, text=f"Created role {role.slug} ({role.id})")
    return 0


def roles_update(args: argparse.Namespace, settings: Settings) -> int:
    role = admin.run(
        settings,
        args,
        lambda s: roles.update_role(s, role_id=args.role_id, name=args.name, default=args.default, scope=None),
    )
    admin.emit(_role_json(role), as_json=args.json, text=f"Updated role {role.slug}")
    return 0


def roles_delete(args: argparse.Namespace, settings: Settings) -> int:
    admin.run(settings, args, lambda s: roles.delete_role(s, role_id=args.role_id, scope=None))
    admin.emit({"id": args.role_id, "deleted": True}, as_json=args.json, text=f"Deleted {args.role_id}")
    return 0


def mappings_list(args: argparse.Namespace, settings: Settings) -> int:
    views = admin.run(settings, args, lambda s: roles.list_role_mappings(s, directory_id=args.directory_id, scope=None))
    table = [[v.group_name, v.role_slug, str(v.mapping.priority), v.mapping.group_id] for v in views]
    text = admin.text_table(table, ["GROUP", "ROLE", "PRIORITY", "GROUP ID"], "No role mappings yet.")
    admin.emit([_mapping_json(v) for v in views], as_json=args.json, text=text)
    return 0


def mappings_set(args: argparse.Namespace, settings: Settings) -> int:
    view = admin.run(
        settings,
        args,
        lambda s: roles.map_group(
            s,
            directory_id=args.directory_id,
            group_id=args.group_id,
            role=args.role,
            priority=args.priority,
            scope=None,
        ),
    )
    text = f"{view.group_name} -> {view.role_slug} (priority {view.mapping.priority})"
    admin.emit(_mapping_json(view), as_json=args.json, text=text)
    return 0


def mappings_delete(args: argparse.Namespace, settings: Settings) -> int:
    admin.run(
        settings,
        args,
        lambda s: roles.unmap_group(s, directory_id=args.directory_id, group_id=args.group_id, scope=None),
    )
    admin.emit({"group_id": args.group_id, "deleted": True}, as_json=args.json, text=f"Unmapped {args.group_id}")
    return 0


def attributes_list(args: argparse.Namespace, settings: Settings) -> int:
    views = admin.run(
        settings,
        args,
        lambda s: attribute_mappings.list_attribute_definitions(s, organization_id=args.organization, scope=None),
    )
    payload = [{"name": v.name, "standard": v.standard} for v in views]
    text = admin.text_table([[v.name, "standard" if v.standard else "own"] for v in views], ["NAME", ""], "")
    admin.emit(payload, as_json=args.json, text=text)
    return 0


def attributes_define(args: argparse.Namespace, settings: Settings) -> int:
    view = admin.run(
        settings,
        args,
        lambda s: attribute_mappings.define_attribute(s, organization_id=args.organization, name=args.name, scope=None),
    )
    admin.emit({"name": view.name, "standard": False}, as_json=args.json, text=f"Defined {view.name}")
    return 0


def attributes_undefine(args: argparse.Namespace, settings: Settings) -> int:
    admin.run(
        settings,
        args,
        lambda s: attribute_mappings.delete_attribute_definition(
            s, organization_id=args.organization, name=args.name, scope=None
        ),
    )
    admin.emit({"name": args.name, "deleted": True}, as_json=args.json, text=f"Deleted {args.name}")
    return 0


def attributes_mappings(args: argparse.Namespace, settings: Settings) -> int:
    views = admin.run(
        settings,
        args,
        lambda s: attribute_mappings.list_attribute_mappings(s, directory_id=args.directory_id, scope=None),
    )
    table = [[v.name, v.source, v.path or ""] for v in views]
    text = admin.text_table(table, ["NAME", "SOURCE", "PATH"], "")
    admin.emit([_attribute_json(v) for v in views], as_json=args.json, text=text)
    return 0


def attributes_map(args: argparse.Namespace, settings: Settings) -> int:
    path = None if args.none else args.path
    if path is None and not args.none:
        raise InvalidInput("give a PATH, or --none to stop reading the attribute")
    view = admin.run(
        settings,
        args,
        lambda s: attribute_mappings.map_attribute(
            s, directory_id=args.directory_id, name=args.name, path=path, scope=None
        ),
    )
    admin.emit(_attribute_json(view), as_json=args.json, text=f"{view.name} <- {view.path or '(not read)'}")
    return 0


def attributes_reset(args: argparse.Namespace, settings: Settings) -> int:
    view = admin.run(
        settings,
        args,
        lambda s: attribute_mappings.reset_attribute_mapping(
            s, directory_id=args.directory_id, name=args.name, scope=None
        ),
    )
    admin.emit(_attribute_json(view), as_json=args.json, text=f"{view.name} <- {view.path or '(not read)'} (default)")
    return 0


def add_commands(commands: Any, parsers: Callable[[Any, str, str], Any], command: AddCommand) -> None:
    """Register the commands under ``commands`` with the CLI's own group and command builders."""
    group = parsers(commands, "roles", "an organization's roles (slug, name, default)")
    c = command(group, "list", "list an organization's roles", roles_list)
    c.add_argument("--organization", required=True, metavar="ORG_ID")
    c = command(group, "create", "create a role", roles_create)
    c.add_argument("slug")
    c.add_argument("--organization", required=True, metavar="ORG_ID")
    c.add_argument("--name", help="display name (default: the slug)")
    c.add_argument("--default", action="store_true", help="the role of users in no mapped group")
    c = command(group, "update", "rename a role or change whether it is the default", roles_update)
    c.add_argument("role_id")
    c.add_argument("--name")
    c.add_argument("--default", action=argparse.BooleanOptionalAction, default=None)
    command(group, "delete", "delete a role and its mappings", roles_delete).add_argument("role_id")

    group = parsers(commands, "role-mappings", "a directory's groups mapped to roles, with priorities")
    command(group, "list", "list a directory's role mappings", mappings_list).add_argument("directory_id")
    c = command(group, "set", "map a group to a role (its members get it)", mappings_set)
    c.add_argument("directory_id")
    c.add_argument("group_id")
    c.add_argument("role", help="the role's slug")
    c.add_argument("--priority", type=int, default=0, help="of a user's mapped groups, the highest wins")
    c = command(group, "delete", "unmap a group", mappings_delete)
    c.add_argument("directory_id")
    c.add_argument("group_id")

    group = parsers(commands, "attributes", "custom attributes: definitions and where each directory reads them")
    c = command(group, "list", "the attributes an organization defines (standard and own)", attributes_list)
    c.add_argument("--organization", required=True, metavar="ORG_ID")
    for name, help_text, handler in (
        ("define", "define an attribute of the organization's own", attributes_define),
        ("undefine", "delete an attribute of the organization's own", attributes_undefine),
    ):
        c = command(group, name, help_text, handler)
        c.add_argument("name")
        c.add_argument("--organization", required=True, metavar="ORG_ID")
    command(group, "mappings", "where a directory reads each attribute", attributes_mappings).add_argument(
        "directory_id"
    )
    c = command(group, "map", "read an attribute from a SCIM path in a directory", attributes_map)
    c.add_argument("directory_id")
    c.add_argument("name")
    c.add_argument("path", nargs="?", help='e.g. title, emails[type eq "work"].value, urn:…:User:costCenter')
    c.add_argument("--none", action="store_true", help="do not read it at all (even where the provider has a default)")
    c = command(group, "reset", "back to the provider's default", attributes_reset)
    c.add_argument("directory_id")
    c.add_argument("name")
