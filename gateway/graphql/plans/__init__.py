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
from gateway.graphql.plans.nodes import Run, fill_counts, render_object
from gateway.ops.principals import Principal

__all__ = ["Answer", "Plan", "answer", "plan_for"]


class Answer:
    """What a plan's store job made: the data, with the counts to fill in when they were read apart."""

    def __init__(self, data: dict[str, Any], run: Run) -> None:
        self.data = data
        self._run = run

    def with_counts(self, counts: dict[str, dict[str, int]]) -> dict[str, Any] | None:
        try:
            fill_counts(self._run, counts)
        except Unanswerable:
            return None
        return self.data


def answer(
    session: Session,
    plan: Plan,
    *,
    variables: VariableValues,
    principal: Principal,
    public_url: str,
    counts_apart: bool = False,
) -> Answer | None:
    """The operation's answer (a store job), or None when graphql-core must answer it. ``counts_apart``: the
    directories' counts are read by another job (``Plan.counted_directories``), given to ``Answer.with_counts``."""
    run = Run(session.connection(), variables, principal, public_url)
    run.counts_apart = counts_apart
    try:
        return Answer(render_object(plan.fields, None, run), run)
    except (Unanswerable, ApiError, GraphQLError):
        return None
