"""Background priority on the event loop (gateway.ops.priority): a background operation's steps, and those of every
task it creates, take turns one at a time, so a callback made ready meanwhile waits for one step, not for all of them;
with foreground requests in flight they take at most their share of the loop; deadlines and errors go through."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.ops.priority import Scheduler

STEP = 0.002  # seconds of work in each step of the test operations
_TRIES = 3


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _fan_out(pieces: int, opened: asyncio.Event) -> int:
    """What a GraphQL page of groups does: many tasks wait on one batch, then each does a step of work at once."""
    batch: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def piece() -> int:
        await batch
        _busy(STEP)
        return 1

    tasks = [asyncio.ensure_future(piece()) for _ in range(pieces)]
    await asyncio.sleep(0)
    opened.set()  # the watcher (``_longest_wait``) is woken before the pieces
    batch.set_result(None)
    return sum(await asyncio.gather(*tasks))


async def _longest_wait(work: asyncio.Task[int], opened: asyncio.Event) -> float:
    """The longest a callback made ready while ``work`` runs waits for the loop."""
    await opened.wait()
    longest = 0.0
    while not work.done():
        started = time.perf_counter()
        await asyncio.sleep(0)
        longest = max(longest, time.perf_counter() - started)
    return longest


async def test_others_wait_for_one_background_step_not_for_all() -> None:
    opened = asyncio.Event()
    alone = asyncio.ensure_future(_fan_out(50, opened))
    assert await _longest_wait(alone, opened) >= 50 * STEP  # the whole burst at once: what #13's bench showed
    assert await alone == 50

    # The best of three tries: the operating system or a collection can stop the process for tens of milliseconds
    # (seen once: 52 ms on a 2-core CI run), which only ever lengthens a wait; without turns every try waits 100+.
    waits = []
    for _ in range(_TRIES):
        scheduler, opened = Scheduler(), asyncio.Event()
        background = asyncio.ensure_future(scheduler.run(_fan_out(50, opened), background=True))
        waits.append(await _longest_wait(background, opened))
        assert await background == 50
        assert scheduler.background_steps >= 50
    assert min(waits) < 20 * STEP, waits  # one step (and the machine's noise)


async def test_an_operation_turns_background_once_it_has_held_the_loop_for_its_foreground_time() -> None:
    # Not known to be costly: its first steps run as they come, until 10 ms of them; the rest of the burst takes turns.
    waits = []
    for _ in range(_TRIES):  # (the best of them: see above)
        scheduler, opened = Scheduler(foreground_seconds=5 * STEP), asyncio.Event()
        work = asyncio.ensure_future(scheduler.run(_fan_out(50, opened), background=False))
        waits.append(await _longest_wait(work, opened))
        assert await work == 50
    assert min(waits) < 25 * STEP, waits
    assert scheduler.background_steps > 0
    # A short one never does.
    quick = Scheduler(foreground_seconds=10.0)
    assert await quick.run(_fan_out(5, asyncio.Event()), background=False) == 5
    assert quick.background_steps == 0


async def test_background_takes_its_share_while_foreground_requests_are_in_flight() -> None:
    scheduler = Scheduler(share=0.25)
    done = asyncio.Event()

    async def another_request() -> None:
        with scheduler.foreground():
            await done.wait()

    other = asyncio.ensure_future(another_request())
    await asyncio.sleep(0)
    assert scheduler.foreground_requests == 1
    started = time.perf_counter()
    assert await scheduler.run(_fan_out(20, asyncio.Event()), background=True) == 20
    # Each 2 ms step is followed by 6 ms for the foreground.
    assert time.perf_counter() - started >= 0.8 * 20 * STEP / 0.25
    done.set()
    await other
    assert scheduler.foreground_requests == 0


async def test_a_request_that_turns_background_no_longer_holds_background_work_back() -> None:
    scheduler = Scheduler()

    async def request() -> int:
        with scheduler.foreground():
            assert scheduler.foreground_requests == 1
            result = await scheduler.run(_fan_out(3, asyncio.Event()), background=True)
            assert scheduler.foreground_requests == 0
            return result

    assert await request() == 3
    assert scheduler.foreground_requests == 0


async def test_deadline_and_errors_reach_a_background_operation() -> None:
    scheduler = Scheduler()

    async def forever() -> None:
        await asyncio.gather(*(asyncio.sleep(3600) for _ in range(5)))

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await scheduler.run(forever(), background=True)

    async def failing() -> None:
        async def piece(i: int) -> None:
            await asyncio.sleep(0)
            if i == 3:
                raise ValueError("piece 3")

        await asyncio.gather(*(piece(i) for i in range(5)))

    with pytest.raises(ValueError, match="piece 3"):
        await scheduler.run(failing(), background=True)
    # Nothing holds a turn afterwards: the next operation runs.
    async with asyncio.timeout(5):
        assert await scheduler.run(_fan_out(10, asyncio.Event()), background=True) == 10


async def test_tasks_created_outside_a_background_operation_are_left_alone() -> None:
    scheduler = Scheduler()
    assert await scheduler.run(_fan_out(2, asyncio.Event()), background=True) == 2
    steps = scheduler.background_steps
    assert await asyncio.ensure_future(_fan_out(5, asyncio.Event())) == 5
    assert scheduler.background_steps == steps
