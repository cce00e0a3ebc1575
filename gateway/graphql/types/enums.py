"""The store's enums, exposed to GraphQL as they are: one definition (gateway.store.models), registered here with
Strawberry under the same names and values (the schema shows the members' names)."""

from __future__ import annotations

import strawberry

from gateway.store.models import DeprovisionPolicy, DirectoryState, DirectoryType, UserState

# strawberry.enum registers the class itself (and returns it), so annotations and values stay the models' own.
for _enum in (DirectoryType, DirectoryState, DeprovisionPolicy, UserState):
    strawberry.enum(_enum)

__all__ = ["DeprovisionPolicy", "DirectoryState", "DirectoryType", "UserState"]
