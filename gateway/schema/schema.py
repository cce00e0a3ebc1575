"""The GraphQL schema: queries, mutations and the cost limits every request runs under."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ParserCache, ValidationCache
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule

from gateway.schema.mutations import Mutation
from gateway.schema.queries import Query
from gateway.schema.subscriptions import Subscription

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2_000

# The limit rules are built once: a rule class made per request would make every cached validation miss.
_LIMIT_RULES: list[Any] = [max_depth_rule(MAX_DEPTH, None), max_aliases_rule(MAX_ALIASES)]

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        # Factories: each operation gets fresh extension instances. The token limit runs while parsing, then
        # parsed documents and their validation (limits included) are cached, in module-level LRUs shared by
        # every request: a dashboard repeats its queries.
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=256),
        lambda: AddValidationRules(_LIMIT_RULES),
        lambda: ValidationCache(maxsize=256),
    ],
)
