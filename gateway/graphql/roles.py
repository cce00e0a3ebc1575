"""Roles and custom attribute rules as queries and mutations, merged into the schema's ``Query`` and ``Mutation``:
thin wrappers over ``gateway.ops.roles`` and ``gateway.ops.attribute_mappings`` behind the API key's scope (an
organization key sees and changes its own organization's rules only; another's look missing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import strawberry
from sqlalchemy.orm import Session

from gateway.graphql.context import Info
from gateway.graphql.errors import ApiError, bad_input
from gateway.graphql.mutations import Deleted, _run
from gateway.graphql.types.role import AttributeDefinition, AttributeMapping, Role, RoleMapping
from gateway.ops import attribute_mappings, inputs, roles

T = TypeVar("T")


def _scope(info: Info) -> str | None:
    return info.context.principal.organization_id  # authenticates first: ids must not leak


async def _read(info: Info, operation: Callable[[Session], T]) -> T:
    try:
        return await info.context.database.query(operation)
    except inputs.NotFound as exc:
        raise ApiError(str(exc), "NOT_FOUND") from None
    except inputs.InvalidInput as exc:
        raise bad_input(str(exc)) from None


@strawberry.type
class RulesQuery:
    @strawberry.field(description="An organization's roles, by slug.")
    async def roles(self, info: Info, organization_id: strawberry.ID) -> list[Role]:
        scope, org = _scope(info), str(organization_id)
        rows = await _read(info, lambda s: roles.list_roles(s, organization_id=org, scope=scope))
        return [Role.from_row(r) for r in rows]

    @strawberry.field(description="A directory's groups mapped to roles, highest priority first.")
    async def role_mappings(self, info: Info, directory_id: strawberry.ID) -> list[RoleMapping]:
        scope, directory = _scope(info), str(directory_id)
        views = await _read(info, lambda s: roles.list_role_mappings(s, directory_id=directory, scope=scope))
        return [RoleMapping.from_view(v) for v in views]

    @strawberry.field(description="The custom attributes an organization's users may carry: standard, then its own.")
    async def attribute_definitions(self, info: Info, organization_id: strawberry.ID) -> list[AttributeDefinition]:
        scope, org = _scope(info), str(organization_id)
        views = await _read(
            info, lambda s: attribute_mappings.list_attribute_definitions(s, organization_id=org, scope=scope)
        )
        return [AttributeDefinition.from_view(v) for v in views]

    @strawberry.field(description="Where a directory reads each defined attribute from.")
    async def attribute_mappings(self, info: Info, directory_id: strawberry.ID) -> list[AttributeMapping]:
        scope, directory = _scope(info), str(directory_id)
        views = await _read(
            info, lambda s: attribute_mappings.list_attribute_mappings(s, directory_id=directory, scope=scope)
        )
        return [AttributeMapping.from_view(v) for v in views]


@strawberry.type
class RulesMutation:
    @strawberry.mutation(description="isDefault: the role of users in no mapped group (replacing the previous one).")
    async def create_role(
        self, info: Info, organization_id: strawberry.ID, slug: str, name: str, is_default: bool = False
    ) -> Role:
        scope, org = _scope(info), str(organization_id)
        row = await _run(
            info,
            lambda s: roles.create_role(s, organization_id=org, slug=slug, name=name, default=is_default, scope=scope),
        )
        return Role.from_row(row)

    @strawberry.mutation(description="Rename a role or change whether it is the default; the slug never changes.")
    async def update_role(
        self, info: Info, id: strawberry.ID, name: str | None = None, is_default: bool | None = None
    ) -> Role:
        scope, role_id = _scope(info), str(id)
        row = await _run(
            info, lambda s: roles.update_role(s, role_id=role_id, name=name, default=is_default, scope=scope)
        )
        return Role.from_row(row)

    @strawberry.mutation(description="Delete a role and its mappings; its holders are re-evaluated.")
    async def delete_role(self, info: Info, id: strawberry.ID) -> Deleted:
        scope, role_id = _scope(info), str(id)
        await _run(info, lambda s: roles.delete_role(s, role_id=role_id, scope=scope))
        return Deleted(id=id)

    @strawberry.mutation(description="The group's members get the role; its members are re-evaluated at once.")
    async def map_group_to_role(
        self, info: Info, directory_id: strawberry.ID, group_id: strawberry.ID, role: str, priority: int = 0
    ) -> RoleMapping:
        scope, directory, group = _scope(info), str(directory_id), str(group_id)
        view = await _run(
            info,
            lambda s: roles.map_group(
                s, directory_id=directory, group_id=group, role=role, priority=priority, scope=scope
            ),
        )
        return RoleMapping.from_view(view)

    @strawberry.mutation(description="The group's members no longer get a role from it.")
    async def unmap_group(self, info: Info, directory_id: strawberry.ID, group_id: strawberry.ID) -> Deleted:
        scope, directory, group = _scope(info), str(directory_id), str(group_id)
        await _run(info, lambda s: roles.unmap_group(s, directory_id=directory, group_id=group, scope=scope))
        return Deleted(id=group_id)

    @strawberry.mutation(description="Define one of the organization's own custom attributes.")
    async def define_attribute(self, info: Info, organization_id: strawberry.ID, name: str) -> AttributeDefinition:
        scope, org = _scope(info), str(organization_id)
        view = await _run(
            info, lambda s: attribute_mappings.define_attribute(s, organization_id=org, name=name, scope=scope)
        )
        return AttributeDefinition.from_view(view)

    @strawberry.mutation(description="Forget one of the organization's own attributes (users lose its value).")
    async def delete_attribute_definition(self, info: Info, organization_id: strawberry.ID, name: str) -> bool:
        scope, org = _scope(info), str(organization_id)
        await _run(
            info,
            lambda s: attribute_mappings.delete_attribute_definition(s, organization_id=org, name=name, scope=scope),
        )
        return True

    @strawberry.mutation(
        description="Read it from a SCIM path (core, enterprise or any extension URN); null: not at all."
    )
    async def map_attribute(
        self, info: Info, directory_id: strawberry.ID, name: str, path: str | None
    ) -> AttributeMapping:
        scope, directory = _scope(info), str(directory_id)
        view = await _run(
            info,
            lambda s: attribute_mappings.map_attribute(s, directory_id=directory, name=name, path=path, scope=scope),
        )
        return AttributeMapping.from_view(view)

    @strawberry.mutation(description="Drop the directory's own mapping: the provider's default applies again.")
    async def reset_attribute_mapping(self, info: Info, directory_id: strawberry.ID, name: str) -> AttributeMapping:
        scope, directory = _scope(info), str(directory_id)
        view = await _run(
            info,
            lambda s: attribute_mappings.reset_attribute_mapping(s, directory_id=directory, name=name, scope=scope),
        )
        return AttributeMapping.from_view(view)
