"""The GraphQL schema: queries, mutations and the cost limits every request runs under."""

from __future__ import annotations

import strawberry
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from gateway.schema.mutations import Mutation
from gateway.schema.queries import Query

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2_000

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    extensions=[
        # Factories: each operation gets fresh extension instances.
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
    ],
)
