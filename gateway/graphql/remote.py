"""A costly operation executed in a costly-work process (gateway.ops.costly_work): the document's text and variables
as the client sent them in, each root field's JSON out.

The worker runs the same schema against its own ``Database`` (same store, own engines) on its own event loop, with
the caller's principal; the server only splices the bytes into its response (``orjson.Fragment``) instead of
resolving, or even decoding, the ~7,000 objects of a query at the budget. An answer with errors (a missing
directory, a deadline) comes back as None and the server executes the operation itself, which reports them as it
always has: such answers are small.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from gateway.graphql.context import Context
from gateway.ops.costly_work import worker_settings
from gateway.ops.principals import Principal
from gateway.store.database import Database

__all__ = ["execute_encoded", "fragments_of"]

# The worker process's loop and store, made by its first operation.
_runner: asyncio.Runner | None = None
_database: Database | None = None


def execute_encoded(
    *, query: str, operation_name: str | None, variables: dict[str, Any] | None, principal: Principal
) -> list[tuple[str, bytes]] | None:
    """In a worker: each root field's response name and JSON, or None when the server must execute it itself."""
    global _runner
    if worker_settings() is None:  # run on a thread of the server (the pool broke): the server executes it
        return None
    if _runner is None:
        _runner = asyncio.Runner()
    return _runner.run(_execute(query, operation_name, variables, principal))


def fragments_of(encoded: list[tuple[str, bytes]]) -> dict[str, Any]:
    """The operation's ``data``, its values JSON already (orjson writes a Fragment as it is)."""
    return {name: orjson.Fragment(value) for name, value in encoded}


async def _execute(
    query: str, operation_name: str | None, variables: dict[str, Any] | None, principal: Principal
) -> list[tuple[str, bytes]] | None:
    global _database
    from gateway.graphql.schema import schema  # the schema's module imports the server's execution, and so this one

    settings = worker_settings()
    assert settings is not None
    if _database is None:
        _database = Database(settings)
    context = Context(database=_database, settings=settings, hub=None, _principal=principal)
    result = await schema.execute(
        query, variable_values=variables, context_value=context, operation_name=operation_name
    )
    if result.errors or not isinstance(result.data, dict):
        return None
    try:
        return [(name, orjson.dumps(value)) for name, value in result.data.items()]
    except TypeError:  # beyond orjson (an integer past 64 bits): the server's own path answers
        return None
