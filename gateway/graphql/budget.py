"""Each operation's budget, checked once its document is valid and before it executes, the same way over HTTP and
over the WebSocket: its cost (gateway.graphql.cost) within ``DSYNC_GRAPHQL_MAX_COST``, else QUERY_TOO_COSTLY; and
one request from its API key's token bucket (``DSYNC_GRAPHQL_RATE_LIMIT``), else RATE_LIMITED with the seconds to
wait; and its cost from the key's cost bucket (``DSYNC_GRAPHQL_COST_RATE``), else COST_RATE_LIMITED: many cheap
operations and a few costly ones then take a key the same share of the server. A refused operation answers like an
invalid document: nothing of it runs.

An admitted query or mutation executes through the process's scheduler (``scheduling``, read by
gateway.graphql.execution; gateway.ops.priority says why and how): at background priority from the start if it costs
more than ``DSYNC_GRAPHQL_BACKGROUND_COST``, else once it has held the event loop for ``DSYNC_GRAPHQL_FOREGROUND_MS``.
Within the budget a query still takes up to ~0.2 s of CPU (more where its pages are full), which other tenants'
requests would otherwise wait behind."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from strawberry.types import ExecutionContext

from gateway.graphql.cost import cached_operation_cost
from gateway.graphql.errors import ApiError
from gateway.ops.priority import Scheduler
from gateway.ops.token_buckets import TokenBuckets, retry_after

# Set for each operation as it is admitted, in the task that then executes it (one per HTTP request or WebSocket
# operation): the scheduler to run it with and whether it starts in the background; None: run it as it is.
scheduling: ContextVar[tuple[Scheduler, bool] | None] = ContextVar("dsync_scheduling", default=None)


@dataclass(frozen=True)
class CostlyOperation:
    """An admitted operation over the background cost, as the client sent it: what a costly-work process needs to
    execute it again (gateway.graphql.remote)."""

    query: str
    operation_name: str | None
    variables: dict[str, Any] | None


# Set with ``scheduling`` for an operation that starts in the background; None for any other.
costly_operation: ContextVar[CostlyOperation | None] = ContextVar("dsync_costly_operation", default=None)


async def admit(context: ExecutionContext) -> None:
    """Called once the document is validated (gateway.graphql.schema's extension): it sees the validation's verdict
    and refuses only what that let through, by setting the refusal as the operation's pre-execution error."""
    scheduling.set(None)
    costly_operation.set(None)
    if context.pre_execution_errors or context.graphql_document is None:
        return
    request = context.context
    cost, refusal = _refusal(context, request)
    if refusal is None:
        _schedule(context, request, cost)
        return
    context.pre_execution_errors = [refusal]
    # A client ignoring refusals (over HTTP or a WebSocket) gets them at this pace, not the CPU's.
    settings = getattr(request, "settings", None)
    delay = settings.graphql_refusal_delay_ms if settings is not None else 0
    if delay > 0:
        await asyncio.sleep(delay / 1000)


def _schedule(context: ExecutionContext, request: Any, cost: int) -> None:
    settings = getattr(request, "settings", None)
    scheduler: Scheduler | None = getattr(request, "scheduler", None)
    if settings is None or scheduler is None:
        return
    threshold = settings.graphql_background_cost
    costly = threshold > 0 and cost > threshold
    scheduling.set((scheduler, costly))
    if costly and context.query is not None:
        variables = context.variables if isinstance(context.variables, dict) else None
        costly_operation.set(CostlyOperation(context.query, context.operation_name, variables))


def _refusal(context: ExecutionContext, request: Any) -> tuple[int, GraphQLError | None]:
    """The operation's cost, and its refusal (None: admitted)."""
    settings = getattr(request, "settings", None)
    if settings is None:
        return 0, None
    assert context.graphql_document is not None
    cost = cached_operation_cost(
        context.schema._schema,
        context.graphql_document,
        operation_name=context.operation_name,
        variables=context.variables if isinstance(context.variables, dict) else None,
    )
    budget = settings.graphql_max_cost
    if budget > 0 and cost > budget:
        return cost, ApiError(
            f"The operation would cost {cost}, above the budget of {budget} per request: ask for smaller pages "
            "(first/last) or fewer nested lists",
            "QUERY_TOO_COSTLY",
            cost=cost,
            budget=budget,
        )
    # Counted against the key once authenticated; an unauthenticated request answers UNAUTHENTICATED anyway.
    principal = getattr(request, "authenticated", None)
    limiter = getattr(request, "rate_limiter", None)
    if principal is None or limiter is None:
        return cost, None
    wait = limiter.acquire(principal.api_key_id)
    if wait:
        seconds = retry_after(wait)
        return cost, ApiError(
            f"Too many requests for this API key (limit: {limiter.rate:g} per second, bursts of {limiter.burst}); "
            f"retry after {seconds} s",
            "RATE_LIMITED",
            retryAfterSeconds=seconds,
        )
    costs: TokenBuckets | None = getattr(request, "cost_limiter", None)
    if costs is None:
        return cost, None
    wait = costs.acquire(principal.api_key_id, amount=cost)
    if not wait:
        return cost, None
    seconds = retry_after(wait)
    return cost, ApiError(
        f"This API key spent its query cost (limit: {costs.rate:g} per second, bursts of {costs.burst}; this "
        f"operation costs {cost}); retry after {seconds} s",
        "COST_RATE_LIMITED",
        cost=cost,
        retryAfterSeconds=seconds,
    )
