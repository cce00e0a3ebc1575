"""The fuzzing harness: the app run on a private event loop (so that hypothesis, which is synchronous, can drive
it), the settings CI fuzzes with, and a tally of the fuzz cases sent (``conftest.py`` prints it after the run)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import hypothesis

from gateway.app import create_app
from gateway.settings import Settings
from gateway.store.database import Database
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory

T = TypeVar("T")


@dataclass
class FuzzTally:
    cases: int = 0  # generated inputs sent to the app
    checks: int = 0  # invariant checks run over the whole store


TALLY = FuzzTally()


def fuzz_settings(max_examples: int, **overrides: Any) -> hypothesis.settings:
    """Derandomized and without an example database, so a CI failure reproduces as is. ``DSYNC_FUZZ_SCALE=10``
    multiplies the examples; ``DSYNC_FUZZ_RANDOM=1`` explores with fresh seeds (and saves failures) instead;
    ``DSYNC_FUZZ_SHRINK=0`` reports a failure as found, without minutes spent shrinking it."""
    scale = float(os.environ.get("DSYNC_FUZZ_SCALE") or 1)
    randomized = os.environ.get("DSYNC_FUZZ_RANDOM") == "1"
    options: dict[str, Any] = {
        "max_examples": max(1, round(max_examples * scale)),
        "deadline": None,
        "derandomize": not randomized,
        "suppress_health_check": [
            hypothesis.HealthCheck.too_slow,
            hypothesis.HealthCheck.data_too_large,
            hypothesis.HealthCheck.filter_too_much,
            hypothesis.HealthCheck.function_scoped_fixture,
        ],
        "print_blob": randomized,
    }
    if not randomized:
        options["database"] = None
    if os.environ.get("DSYNC_FUZZ_SHRINK") == "0":
        options["phases"] = [hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate]
    options.update(overrides)
    return hypothesis.settings(**options)


class LiveApp:
    """The ASGI app with its lifespan running on one event loop of its own; ``run`` drives a coroutine on it."""

    def __init__(self, settings: Settings) -> None:
        self._runner = asyncio.Runner()
        self.app = create_app(settings)
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.run(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=PUBLIC_URL)

    @property
    def database(self) -> Database:
        database: Database = self.app.state.database
        return database

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return self._runner.run(wrapped())

    def directory(self, *, type: str = "jumpcloud", name: str = "Fuzzed") -> DirectoryFixture:
        return self.run(make_directory(self.database, type=type, name=name))

    def close(self) -> None:
        try:
            self.run(self.client.aclose())
            self.run(self._lifespan.__aexit__(None, None, None))
        finally:
            self._runner.close()
