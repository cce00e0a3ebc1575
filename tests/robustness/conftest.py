"""Robustness tests: the ``live_app`` fixture, and the fuzz case tally printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.settings import Settings
from tests.robustness.fuzzing import TALLY, LiveApp


@pytest.fixture
def live_app(settings: Settings) -> Iterator[LiveApp]:
    live = LiveApp(settings)
    try:
        yield live
    finally:
        live.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY.cases:
        terminalreporter.write_sep(
            "-", f"robustness fuzzing: {TALLY.cases} fuzz cases run, {TALLY.checks} invariant checks of the store"
        )
