"""The GraphQL API (Strawberry): ``gateway.schema:schema``."""

from gateway.schema.schema import schema

__all__ = ["schema"]
