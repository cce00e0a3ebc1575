"""Waiting in tests for a condition another task or process brings about."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(predicate: Callable[[], bool], *, within: float = 10.0, step: float = 0.02) -> None:
    """Poll until ``predicate()`` holds; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110  (the state belongs to another task or process: nothing to await)
            await asyncio.sleep(step)
