"""The GraphQL API (Strawberry): ``gateway.graphql:schema``."""

from gateway.graphql.schema import schema

__all__ = ["schema"]
