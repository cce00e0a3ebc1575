"""The GraphQL schema: queries, mutations and the limits every request runs under (tokens, depth, aliases; its cost
and its API key's rate limit: gateway.graphql.budget)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import (
    BREAK,
    DocumentNode,
    GraphQLError,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    Visitor,
    visit,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from gateway.graphql.budget import OperationBudget
from gateway.graphql.error_codes import CodeEveryError
from gateway.graphql.errors import bad_input
from gateway.graphql.execution import GatewayExecutionContext
from gateway.graphql.mutations import Mutation
from gateway.graphql.queries import Query
from gateway.graphql.roles import RulesMutation, RulesQuery
from gateway.graphql.setup_links import SetupLinkMutation, SetupLinkQuery
from gateway.graphql.subscriptions import Subscription
from gateway.graphql.webhooks import WebhookMutation, WebhookQuery
from gateway.observe.metrics import GRAPHQL_OPERATIONS
from gateway.store.serialization import contains_nul

logger = logging.getLogger("dsync.graphql")

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2_000

_DEPTH_RULE = max_depth_rule(MAX_DEPTH, None)


class _DepthLimit(ValidationRule):
    """Strawberry's depth rule, minus its KeyError on a spread of an undefined fragment (which would reach the
    client as the bare message "'F'"): graphql-core's KnownFragmentNamesRule reports that one properly."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        with contextlib.suppress(KeyError):
            _DEPTH_RULE(context)  # reports to the context as it is built


# The limit rules are built once: a rule class made per request would make every cached validation miss.
_LIMIT_RULES: list[Any] = [_DepthLimit, max_aliases_rule(MAX_ALIASES)]


class _NulLiteral(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> Any:
        if "\x00" in node.value:
            self.found = True
            return BREAK
        return None


def _document_has_nul(query: str | None, document: DocumentNode | None) -> bool:
    if document is None or not query or "\\u" not in query:  # a NUL can only be written as an escape
        return False
    finder = _NulLiteral()
    visit(document, finder)
    return finder.found


class RefuseBeforeExecution(SchemaExtension):
    """Operations answered BAD_USER_INPUT without running: NUL characters in arguments (PostgreSQL text cannot hold
    U+0000, so they are refused the same way on every store), and a subscription sent as a plain HTTP request,
    which would run as a query and fail. (Subscriptions over WebSocket never read the result set here.)"""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        error = None
        if context.operation_type is OperationType.SUBSCRIPTION:
            error = bad_input("Subscriptions run over WebSocket (graphql-transport-ws) on /graphql")
        elif contains_nul(context.variables) or _document_has_nul(context.query, context.graphql_document):
            error = bad_input("Arguments must not contain NUL characters (U+0000)")
        if error is not None:
            context.result = GraphQLExecutionResult(data=None, errors=[error])
        yield


class CountOperations(SchemaExtension):
    """``dsync_graphql_operations_total`` by operation type, counted as execution starts (a subscription once, not
    per event); a document refused before that (syntax, validation, limits) counts as ``invalid``."""

    def on_operation(self) -> Iterator[None]:
        self._executed = False
        yield
        if not self._executed:
            GRAPHQL_OPERATIONS.labels("invalid").inc()

    def on_execute(self) -> Iterator[None]:
        self._executed = True
        GRAPHQL_OPERATIONS.labels(self.execution_context.operation_type.value).inc()
        yield


def _unexpected(error: GraphQLError) -> bool:
    """An exception that is no GraphQL error: its text (SQL, internals) is logged, never sent."""
    return error.original_error is not None and not isinstance(error.original_error, GraphQLError)


class GatewaySchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Errors the client caused (bad input, not found, limits) are its answer, not the server's trouble: they are
        logged at debug. Anything unexpected keeps Strawberry's error log, traceback included."""
        unexpected = []
        for error in errors:
            if _unexpected(error):
                unexpected.append(error)
            else:
                logger.debug("GraphQL error answered: %s", error.message)
        if unexpected:
            super().process_errors(unexpected, execution_context)


schema = GatewaySchema(
    execution_context_class=GatewayExecutionContext,
    query=merge_types("Query", (Query, WebhookQuery, SetupLinkQuery, RulesQuery)),
    mutation=merge_types("Mutation", (Mutation, WebhookMutation, SetupLinkMutation, RulesMutation)),
    subscription=Subscription,
    extensions=[
        # Factories: each operation gets fresh extension instances. The token limit runs while parsing, then
        # parsed documents and their validation (limits included) are cached, in module-level LRUs shared by
        # every request: a dashboard repeats its queries.
        CodeEveryError,  # first: it sees the errors the hooks below raise
        CountOperations,
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=256),
        lambda: AddValidationRules(_LIMIT_RULES),
        lambda: ValidationCache(maxsize=256),
        OperationBudget,  # after validation: cost and rate limit, checked per request (they depend on variables)
        RefuseBeforeExecution,
        lambda: MaskErrors(should_mask_error=_unexpected, error_message="Internal server error"),
    ],
)
