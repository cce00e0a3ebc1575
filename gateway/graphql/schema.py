"""The GraphQL schema: queries, mutations and the limits every request runs under (tokens, depth, aliases; its cost
and its API key's rate limit: gateway.graphql.budget)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Iterator
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
    parse,
    visit,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.schema.schema import validate_document
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from gateway.graphql.budget import admit
from gateway.graphql.error_codes import INTERNAL, PARSE_FAILED, VALIDATION_FAILED, tag_errors
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


def _refusal_before_execution(context: ExecutionContext) -> GraphQLError | None:
    """Operations answered BAD_USER_INPUT without running: NUL characters in arguments (PostgreSQL text cannot hold
    U+0000, so they are refused the same way on every store), and a subscription sent as a plain HTTP request,
    which would run as a query and fail. (Subscriptions over WebSocket never read the result set here.)"""
    if context.operation_type is OperationType.SUBSCRIPTION:
        return bad_input("Subscriptions run over WebSocket (graphql-transport-ws) on /graphql")
    if contains_nul(context.variables) or _document_has_nul(context.query, context.graphql_document):
        return bad_input("Arguments must not contain NUL characters (U+0000)")
    return None


# Parsed documents and their validation (limits included) are cached, shared by every request: a dashboard repeats
# its queries. The parse is keyed by the text and the token limit; the validation by the document and the rules.
_parse = functools.lru_cache(maxsize=256)(parse)
_validate = functools.lru_cache(maxsize=256)(validate_document)


class GatewayOperation(SchemaExtension):
    """Everything the gateway does around each operation, in one extension: Strawberry runs every hook of every
    extension for every request (a context manager each), and the nine extensions this replaces cost a page of users
    about a tenth of its server time. In the order the stages run:

    - every error answer gets an ``extensions.code`` by the stage that refused it (gateway.graphql.error_codes);
    - ``dsync_graphql_operations_total`` by operation type, counted as execution starts (a subscription once, not
      per event); a document refused before that (syntax, validation, limits) counts as ``invalid``;
    - parsing under the token limit, validation with the depth and alias limits, both cached;
    - the budget: cost and rate limits, checked per request (they depend on variables; gateway.graphql.budget);
    - the refusals before execution (``_refusal_before_execution``).
    """

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        self._stage = PARSE_FAILED
        self._executed = False
        context.parse_options["max_tokens"] = MAX_TOKENS
        context.validation_rules = (*context.validation_rules, *_LIMIT_RULES)
        try:
            yield
        except GraphQLError as error:  # raised while parsing (syntax, the token limit): answered as it is
            tag_errors([error], self._stage)
            raise
        if not self._executed:
            GRAPHQL_OPERATIONS.labels("invalid").inc()
        errors = list(context.pre_execution_errors or ())
        if context.result is not None:
            errors += context.result.errors or ()
        tag_errors(errors, self._stage)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query:  # else Strawberry answers that a query is missing
            context.graphql_document = _parse(context.query, **context.parse_options)
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        self._stage = VALIDATION_FAILED
        assert context.graphql_document is not None
        context.pre_execution_errors = _validate(
            context.schema._schema, context.graphql_document, context.validation_rules
        )
        await admit(context)  # after validation: it refuses only what validation let through
        yield

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        self._stage = INTERNAL
        self._executed = True
        GRAPHQL_OPERATIONS.labels(context.operation_type.value).inc()
        error = _refusal_before_execution(context)
        if error is not None:
            context.result = GraphQLExecutionResult(data=None, errors=[error])
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
        # Factories: each operation gets fresh extension instances. MaskErrors comes last, so the errors it masks
        # still get their code.
        GatewayOperation,
        lambda: MaskErrors(should_mask_error=_unexpected, error_message="Internal server error"),
    ],
)
