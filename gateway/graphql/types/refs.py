"""References between the object types, which refer to one another (Directory ↔ Organization, Directory ↔
DirectoryUser ↔ DirectoryGroup): annotate with these, resolved by Strawberry when the schema is built
(``strawberry.lazy``). At run time a resolver reaches a class through its module (``directory_types.Directory``),
complete by then."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeAlias

import strawberry

if TYPE_CHECKING:
    from gateway.graphql.types.directory import Directory
    from gateway.graphql.types.directory_group import DirectoryGroup
    from gateway.graphql.types.directory_user import DirectoryUser
    from gateway.graphql.types.organization import Organization

OrganizationRef: TypeAlias = Annotated["Organization", strawberry.lazy("gateway.graphql.types.organization")]
DirectoryRef: TypeAlias = Annotated["Directory", strawberry.lazy("gateway.graphql.types.directory")]
DirectoryUserRef: TypeAlias = Annotated["DirectoryUser", strawberry.lazy("gateway.graphql.types.directory_user")]
DirectoryGroupRef: TypeAlias = Annotated["DirectoryGroup", strawberry.lazy("gateway.graphql.types.directory_group")]
