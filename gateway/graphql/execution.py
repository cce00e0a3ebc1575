"""How operations execute: under the request deadline, with their own DataLoaders, and subscription events executed
once per distinct query, not once per subscriber.

Every execution (a query or mutation over HTTP or over the WebSocket, and each subscription event) runs within
``graphql_timeout_seconds`` and answers TIMEOUT past it, and starts with fresh DataLoaders (``Context.loaders``).

A thousand dashboards watching one directory ask the same selection of the same event: graphql-core would resolve
it and the transport would encode it a thousand times. The pump hands every subscriber the same ``Event`` object,
so the execution of an event can be kept on it (keyed by the parsed operation and its variables) together with its
JSON, and later subscribers reuse both. Results with errors are never shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextvars import ContextVar
from inspect import isawaitable
from typing import Any

import orjson
from graphql import ExecutionResult, OperationType
from graphql.execution.values import VariableValues
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.graphql.errors import ApiError


class SharedData(dict[str, Any]):
    """An event's ``data`` shared by subscribers, encoded to JSON once."""

    __slots__ = ("_encoded",)

    def encoded(self) -> str:
        try:
            return self._encoded
        except AttributeError:
            self._encoded: str = orjson.dumps(self).decode()
            return self._encoded


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

    def execute_operation(self, serially: bool | None = None) -> Any:
        result = self._execute_shared(serially)
        settings = getattr(self.context_value, "settings", None)
        if settings is None or not isawaitable(result):
            return result
        return _within(settings.graphql_timeout_seconds, result)

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
