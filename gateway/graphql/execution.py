"""How operations execute: under the request deadline, with their own DataLoaders, and subscription events executed
once per distinct query, not once per subscriber.

Every execution (a query or mutation over HTTP or over the WebSocket, and each subscription event) runs within
``graphql_timeout_seconds`` and answers TIMEOUT past it, and starts with fresh DataLoaders (``Context.loaders``).

A thousand dashboards watching one directory ask the same selection of the same event: graphql-core would resolve
it and the transport would encode it a thousand times. The pump hands every subscriber the same ``Event`` object,
so the execution of an event can be kept on it (keyed by the parsed operation and its variables) together with its
JSON, and later subscribers reuse both. Results with errors are never shared.

A page of users is mostly plain attributes (``userName``, ``email``, ...): graphql-core resolves each through a
resolve-info object, a resolver call and value completion, several microseconds apiece, most of a page's CPU. A plain
attribute of a leaf type (a Strawberry field without resolver, extension or permission) is read and serialized
directly here; anything unusual about the value (a null where the schema says non-null, a value the scalar refuses)
takes graphql-core's own path, which reports it as it always has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from contextvars import ContextVar
from inspect import isawaitable
from typing import Any

import orjson
from graphql import (
    ExecutionResult,
    GraphQLField,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    OperationType,
    Undefined,
    is_leaf_type,
)
from graphql.execution.values import VariableValues
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.graphql.budget import costly_operation, scheduling
from gateway.graphql.context import Context
from gateway.graphql.errors import ApiError
from gateway.graphql.plans import Plan, answer, plan_for
from gateway.graphql.remote import execute_encoded, fragments_of

logger = logging.getLogger("dsync.graphql")


class SharedData(dict[str, Any]):
    """An event's ``data`` shared by subscribers, encoded to JSON once."""

    __slots__ = ("_encoded",)

    def encoded(self) -> str:
        try:
            return self._encoded
        except AttributeError:
            self._encoded: str = orjson.dumps(self).decode()
            return self._encoded


# (parent type, field name) -> (attribute, leaf type, nullable) of a plain leaf attribute, or None for any other field.
_PlainLeaf = tuple[str, GraphQLLeafType, bool] | None
_plain_leaves: dict[tuple[GraphQLObjectType, str], _PlainLeaf] = {}


def _plain_leaf(field: GraphQLField) -> _PlainLeaf:
    definition = (field.extensions or {}).get("strawberry-definition")
    resolve = field.resolve
    if definition is None or not definition.is_basic_field or not getattr(resolve, "_is_default", False):
        return None
    if definition.default_resolver is not getattr:
        return None
    nullable = not isinstance(field.type, GraphQLNonNull)
    leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if not is_leaf_type(leaf):
        return None
    return definition.python_name, leaf, nullable


async def _settle(results: dict[str, Any], pending: list[str]) -> dict[str, Any]:
    if len(pending) == 1:
        results[pending[0]] = await results[pending[0]]
    else:
        results.update(zip(pending, await gather_with_cancel(*(results[name] for name in pending)), strict=True))
    return results


# The executor of the subscription being set up in this task: its resolver hands it to the live fast path
# (gateway.graphql.live_frames), which executes each live event once per group of identical subscriptions.
subscription_executor: ContextVar[GatewayExecutionContext | None] = ContextVar("dsync_subscription", default=None)


def variables_key(variables: VariableValues) -> str:
    return repr(sorted(variables.coerced.items())) if variables.coerced else ""


async def _within(seconds: float, result: Awaitable[Any]) -> Any:
    try:
        async with asyncio.timeout(seconds):
            return await result
    except TimeoutError:
        return ExecutionResult(
            data=None, errors=[ApiError(f"The request did not finish within {seconds:g} s", "TIMEOUT")]
        )


class GatewayExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_operation()
        if self.operation.operation is OperationType.SUBSCRIPTION:
            subscription_executor.set(self)

    def _start_operation(self) -> None:
        start = getattr(self.context_value, "start_operation", None)
        if start is not None:
            start()

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        self._start_operation()  # the event executes in this task, with its own loaders
        # graphql-core 3.3 caches collected sub-fields under id() of per-event lists in a dict that every event's
        # copy shares with the subscription: each event added entries (~1.5 KB) kept until the subscription ended.
        executor._relevant_sub_fields = {}
        return executor

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        results: dict[str, Any] = {}
        pending: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                result = self._plain_value(parent_type, source_value, field_details_list[0].node.name.value)
                if result is Undefined:
                    result = self.execute_field(
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, parent_type.name),
                        position_context,
                    )
                    if result is Undefined:  # no such field (validation prevents it)
                        continue
                    if self.is_awaitable(result):
                        pending.append(response_name)
                results[response_name] = result
        except Exception:
            if pending:
                self.settle_in_background([results[name] for name in pending])
            raise
        if not pending:
            return results
        return _settle(results, pending)

    def _plain_value(self, parent_type: GraphQLObjectType, source: Any, name: str) -> Any:
        """The serialized value of a plain leaf attribute; Undefined for any other field or an unusual value."""
        key = (parent_type, name)
        try:
            plan = _plain_leaves[key]
        except KeyError:
            field = self.schema.get_field(parent_type, name)
            plan = _plain_leaves[key] = _plain_leaf(field) if field is not None else None
        if plan is None:
            return Undefined
        attribute, leaf, nullable = plan
        value = getattr(source, attribute, None)
        if value is None:
            return None if nullable else Undefined
        try:
            coerced = leaf.coerce_output_value(value)
        except Exception:  # graphql-core's path reports it
            return Undefined
        return Undefined if coerced is None else coerced

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = self._read_plan()
        elsewhere = self._elsewhere()
        if elsewhere is not None:
            result = self._answer_elsewhere(elsewhere, plan, serially)
        else:
            result = self._execute_shared(serially) if plan is None else self._answer(plan, serially)
        settings = getattr(self.context_value, "settings", None)
        if settings is None or not isawaitable(result):
            return result
        scheduled = scheduling.get()
        if scheduled is not None and self.operation.operation is not OperationType.SUBSCRIPTION:
            scheduler, costly = scheduled  # gateway.ops.priority: the deadline covers its waits for turns too
            result = scheduler.run(result, background=costly)
        return _within(settings.graphql_timeout_seconds, result)

    def _elsewhere(self) -> Awaitable[list[tuple[str, bytes]] | None] | None:
        """A costly query's answer from a costly-work process (gateway.graphql.remote), where its CPU takes neither
        the event loop's turns nor its GIL; None: execute it here (a cheap one, or no worker process)."""
        operation, context = costly_operation.get(), self.context_value
        if operation is None or self.operation.operation is not OperationType.QUERY or not isinstance(context, Context):
            return None
        costly, principal = context.costly_work, context.authenticated
        if costly is None or not costly.started or principal is None:
            return None
        return costly.run(
            execute_encoded,
            query=operation.query,
            operation_name=operation.operation_name,
            variables=operation.variables,
            principal=principal,
            owner=principal.organization_id or principal.api_key_id,  # one costly operation of a tenant at a time
        )

    async def _answer_elsewhere(
        self, elsewhere: Awaitable[list[tuple[str, bytes]] | None], plan: Plan | None, serially: bool | None
    ) -> Any:
        try:
            encoded = await elsewhere
        except Exception:  # the worker failed: this process executes it (and reports what fails here too)
            logger.warning("a costly-work process failed an operation; it runs here", exc_info=True)
            encoded = None
        if encoded is not None:
            return ExecutionResult(data=fragments_of(encoded))
        result = self._execute_shared(serially) if plan is None else self._answer(plan, serially)
        return await result if isawaitable(result) else result

    def _read_plan(self) -> Plan | None:
        """The operation's read plan (gateway.graphql.plans), if it has one and is a query with a request's context."""
        if self.operation.operation is not OperationType.QUERY or not isinstance(self.context_value, Context):
            return None
        return plan_for(self.schema, self.operation, self.fragment_definitions)

    async def _answer(self, plan: Plan, serially: bool | None) -> Any:
        context: Context = self.context_value
        principal = context.authenticated
        if principal is not None:
            variables, public_url = self.variable_values, context.settings.public_url

            def job(session: Any) -> dict[str, Any] | None:
                return answer(session, plan, variables=variables, principal=principal, public_url=public_url)

            try:
                data = await context.database.query(job)
            except Exception:  # the store failed, or the plan did: graphql-core answers (and reports the failure)
                logger.warning("read plan failed; the operation runs through graphql-core", exc_info=True)
                data = None
            if data is not None:
                return ExecutionResult(data=data)
        result = super().execute_operation(serially)
        return await result if isawaitable(result) else result

    def _execute_shared(self, serially: bool | None) -> Any:
        shared: dict[tuple[int, str], tuple[Any, ExecutionResult]] | None = getattr(
            self.root_value, "shared_results", None
        )
        if shared is None:
            return super().execute_operation(serially)
        key = (id(self.operation), variables_key(self.variable_values))
        hit = shared.get(key)
        # The entry holds the operation node itself, so its id() cannot be reused while the entry lives.
        if hit is not None and hit[0] is self.operation:
            return hit[1]
        result = super().execute_operation(serially)
        if isinstance(result, ExecutionResult) and not result.errors and result.data is not None:
            result = ExecutionResult(data=SharedData(result.data))
            shared[key] = (self.operation, result)
        return result
