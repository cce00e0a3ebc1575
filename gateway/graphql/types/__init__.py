"""The GraphQL object types over the store's rows, one module a concept; related objects load through the request's
DataLoaders. How the types refer to one another: gateway.graphql.types.refs. Everything the rest of the API imports
is re-exported here."""

from gateway.graphql.types.api_key import ApiKey
from gateway.graphql.types.directory import Directory
from gateway.graphql.types.directory_group import DirectoryGroup
from gateway.graphql.types.directory_user import DirectoryUser
from gateway.graphql.types.enums import DeprovisionPolicy, DirectoryState, DirectoryType, UserState
from gateway.graphql.types.event import Event, EventGroup, EventUser, event_names
from gateway.graphql.types.node import Node
from gateway.graphql.types.organization import Organization
from gateway.graphql.types.statements import groups_statement, table_of, users_statement

__all__ = [
    "ApiKey",
    "DeprovisionPolicy",
    "Directory",
    "DirectoryGroup",
    "DirectoryState",
    "DirectoryType",
    "DirectoryUser",
    "Event",
    "EventGroup",
    "EventUser",
    "Node",
    "Organization",
    "UserState",
    "event_names",
    "groups_statement",
    "table_of",
    "users_statement",
]
