"""Read plans: the hot read pages (a directory with its counts, its users with their groups, its groups) answered
from narrow rows in one store job, without graphql-core's per-object completion.

graphql-core completes every value of a page through resolvers, resolve-info objects and type checks, and the
types' ``from_row`` read every column (JSON ones decoded) whatever the page shows: most of a page's CPU. A validated
query made only of fields a plan knows (gateway.graphql.plans.compile) gets a plan, built once per document, which
reads only the columns asked for and builds the response's dicts directly. Everything before execution is as for any
operation (authentication, the document's limits, its cost and rate limits).

A plan answers only what it can answer exactly as graphql-core would. An unauthenticated request, a directory that
is missing or another tenant's, bad arguments (page sizes, cursors), an unexpected null or value: ``answer`` returns
None and graphql-core runs the whole operation, which reports it as it always has. Tests compare the two on many
documents.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from graphql.execution.values import VariableValues
from sqlalchemy.orm import Session

from gateway.graphql.errors import ApiError
from gateway.graphql.plans.compile import Plan, plan_for
from gateway.graphql.plans.leaves import Unanswerable
from gateway.graphql.plans.nodes import Run, render_object
from gateway.ops.principals import Principal

__all__ = ["Plan", "answer", "plan_for"]


def answer(
    session: Session, plan: Plan, *, variables: VariableValues, principal: Principal, public_url: str
) -> dict[str, Any] | None:
    """The operation's data (a store job), or None when graphql-core must answer it."""
    try:
        return render_object(plan.fields, None, Run(session.connection(), variables, principal, public_url))
    except (Unanswerable, ApiError, GraphQLError):
        return None
