"""``Node``: the union ``Query.node`` answers, any object by its prefixed id."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gateway.graphql.types.directory import Directory
from gateway.graphql.types.directory_group import DirectoryGroup
from gateway.graphql.types.directory_user import DirectoryUser
from gateway.graphql.types.event import Event
from gateway.graphql.types.organization import Organization

Node = Annotated[Organization | Directory | DirectoryUser | DirectoryGroup | Event, strawberry.union("Node")]
