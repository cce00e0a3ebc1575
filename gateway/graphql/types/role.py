"""``Role``, ``RoleMapping``, ``AttributeDefinition`` and ``AttributeMapping``: the rules that give directory users
their role(s) and custom attributes (``gateway.ops.roles``, ``gateway.ops.attribute_mappings``)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from gateway.graphql.types.rows import utc
from gateway.ops.attribute_mappings import AttributeDefinitionView, AttributeMappingView
from gateway.ops.roles import RoleMappingView
from gateway.store import models


@strawberry.type
class Role:
    id: strawberry.ID
    organization_id: strawberry.ID
    slug: str = strawberry.field(description="What applications see (directory users' role and roles).")
    name: str
    is_default: bool = strawberry.field(description="The role of users in no mapped group.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: models.Role) -> Role:
        return cls(
            id=strawberry.ID(row.id),
            organization_id=strawberry.ID(row.organization_id),
            slug=row.slug,
            name=row.name,
            is_default=row.is_default,
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )


@strawberry.type
class RoleMapping:
    id: strawberry.ID
    directory_id: strawberry.ID
    group_id: strawberry.ID
    group_name: str
    role: str = strawberry.field(description="The role's slug.")
    priority: int = strawberry.field(description="Of a user's mapped groups, the highest gives its role.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, view: RoleMappingView) -> RoleMapping:
        row = view.mapping
        return cls(
            id=strawberry.ID(row.id),
            directory_id=strawberry.ID(row.directory_id),
            group_id=strawberry.ID(row.group_id),
            group_name=view.group_name,
            role=view.role_slug,
            priority=row.priority,
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )


@strawberry.type
class AttributeDefinition:
    name: str
    standard: bool = strawberry.field(description="One of WorkOS's standard attributes (defined everywhere).")

    @classmethod
    def from_view(cls, view: AttributeDefinitionView) -> AttributeDefinition:
        return cls(name=view.name, standard=view.standard)


@strawberry.enum
class AttributeSource(Enum):
    DEFAULT = "default"  # the provider's default path
    CUSTOM = "custom"  # the admin's path
    NONE = "none"  # not read


@strawberry.type
class AttributeMapping:
    directory_id: strawberry.ID
    name: str
    path: str | None = strawberry.field(description="The SCIM attribute path read (None: not read).")
    source: AttributeSource

    @classmethod
    def from_view(cls, view: AttributeMappingView) -> AttributeMapping:
        return cls(
            directory_id=strawberry.ID(view.directory_id),
            name=view.name,
            path=view.path,
            source=AttributeSource(view.source),
        )
