"""Background priority on the event loop: an expensive operation (a costly GraphQL query) runs one step at a time,
and every other request gets its turn between two steps.

Why: asyncio runs ready callbacks first come, first served. A page of groups with nine ``members`` pages each (the
most a GraphQL budget of 2,000 allows) resolves one DataLoader batch and so wakes ~180 tasks at once, each building
and completing a page of users (~1 ms): a SCIM request whose database answer arrives just then waits behind all of
them. Measured on the event loop: a callback made ready during such a query waited up to 200-500 ms. Yielding inside
the query does not help, the other ~179 steps are queued ahead already; what helps is keeping them out of the queue.

So an operation's coroutine, and every task created while it runs, are wrapped (``Scheduler.run``). An operation
known to be costly starts in the background; any other is moved there once it has held the loop for
``foreground_seconds`` in all (the cost of a query does not always tell its CPU: a page of groups with their members'
pages costs the same whether each holds one member or a hundred). In the background, before each step the wrapper
asks the ``Scheduler`` for a turn, and only one background step is let onto the loop at a time, the next one queued
behind whatever became ready meanwhile. While foreground requests are in flight (``foreground``: every HTTP
request but a background one), background steps are spaced so that they take at most ``share`` of the loop (a step of
1 ms is followed by 3 ms for others at 0.25); when none is, they run back to back. A background operation is never
refused or starved: under a constant foreground load it still runs at ``share`` of the speed it would alone, within
its deadline like any other.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Scheduler"]


class Scheduler:
    """The turns of one process's background steps (one per app; bound to the loop that first runs one)."""

    def __init__(self, *, share: float = 0.25, foreground_seconds: float = 0.01) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.share = share
        self.foreground_seconds = foreground_seconds
        self.foreground_requests = 0
        self.background_steps = 0  # for tests and metrics: steps taken through the turnstile
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = True
        self._queue: deque[asyncio.Future[None]] = deque()
        self._reopening: asyncio.Handle | None = None

    async def run(self, work: Awaitable[T], *, background: bool) -> T:
        """Await ``work`` (a coroutine not yet started) and every task it creates stepwise: in the background from the
        start if ``background``, else once it has held the loop for ``foreground_seconds``."""
        operation = _Operation(self, _foreground.get(), self.foreground_seconds)
        if background:
            operation.to_background()
        _install_task_factory(asyncio.get_running_loop())
        token = _operation.set(operation)
        try:
            return await _Stepwise(operation, _as_coroutine(work))
        finally:
            _operation.reset(token)

    @contextmanager
    def foreground(self) -> Iterator[None]:
        """Counts a request as foreground while it runs (until an operation it runs turns background)."""
        mark = _ForegroundMark(self)
        self.foreground_requests += 1
        token = _foreground.set(mark)
        try:
            yield
        finally:
            _foreground.reset(token)
            mark.release()

    def _turn(self) -> asyncio.Future[None] | None:
        """None: the caller may take a step now; else a future to wait on, resolved when its turn comes."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run many): nothing of the old one's turns carries over
            self._loop, self._open, self._queue, self._reopening = loop, True, deque(), None
        if self._open and not self._queue:
            self._open = False
            return None
        ticket: asyncio.Future[None] = loop.create_future()
        self._queue.append(ticket)
        return ticket

    def _stepped(self, seconds: float) -> None:
        """A background step (holding the turn) took ``seconds``: schedule the next turn."""
        self.background_steps += 1
        if self._reopening is not None or self._loop is None:
            return
        if self.foreground_requests > 0:
            # ``share`` of the loop for background steps: the others get (1 - share) / share of this step's time.
            self._reopening = self._loop.call_later(seconds * (1 - self.share) / self.share, self._reopen)
        else:
            self._reopening = self._loop.call_soon(self._reopen)

    def _reopen(self) -> None:
        self._reopening = None
        while self._queue:
            ticket = self._queue.popleft()
            if not ticket.done():  # a cancelled waiter gave its turn up
                ticket.set_result(None)  # the turn is its own: it calls ``_stepped`` once it has taken its step
                return
        self._open = True


class _ForegroundMark:
    __slots__ = ("_scheduler", "counted")

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self.counted = True

    def release(self) -> None:
        if self.counted:
            self.counted = False
            self._scheduler.foreground_requests -= 1


class _Operation:
    """One operation run by ``Scheduler.run``: in the foreground until it has used its loop time, then background."""

    __slots__ = ("_mark", "background", "remaining", "scheduler")

    def __init__(self, scheduler: Scheduler, mark: _ForegroundMark | None, seconds: float) -> None:
        self.scheduler = scheduler
        self._mark = mark
        self.remaining = seconds
        self.background = False

    def to_background(self) -> None:
        self.background = True
        if self._mark is not None:
            self._mark.release()  # the request running it no longer holds background work back


_foreground: ContextVar[_ForegroundMark | None] = ContextVar("dsync_foreground", default=None)
# The operation running in this context: tasks created here are its own.
_operation: ContextVar[_Operation | None] = ContextVar("dsync_operation", default=None)


async def _await(work: Awaitable[T]) -> T:
    return await work


def _as_coroutine(work: Awaitable[T]) -> Coroutine[Any, Any, T]:
    return work if isinstance(work, Coroutine) else _await(work)


class _Stepwise(Coroutine[Any, Any, T]):
    """A coroutine whose every step waits for its turn (``Scheduler._turn``). The task driving it sees the turn's
    future as one more thing its coroutine waits for."""

    __slots__ = ("_inner", "_operation", "_scheduler", "_ticket")

    def __init__(self, operation: _Operation, inner: Coroutine[Any, Any, T]) -> None:
        self._operation = operation
        self._scheduler = operation.scheduler
        self._inner = inner
        self._ticket: asyncio.Future[None] | None = None

    def send(self, value: Any) -> Any:
        if not self._operation.background:
            return self._foreground_step(self._inner.send, value)
        ticket = self._ticket
        if ticket is None or not ticket.done():
            if ticket is not None:  # woken while still waiting: not by its turn; give the place up
                ticket.cancel()
            ticket = self._ticket = self._scheduler._turn()
            if ticket is not None:
                ticket._asyncio_future_blocking = True  # what a Future's __await__ sets: the task then waits on it
                return ticket
        self._ticket = None
        return self._step(self._inner.send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        # Cancellation (the deadline) reaches the operation at once, turn or no turn.
        if not self._operation.background:
            return self._foreground_step(self._inner.throw, typ, val, tb)
        ticket, self._ticket = self._ticket, None
        if ticket is not None and not ticket.done():
            ticket.cancel()
        return self._step(self._inner.throw, typ, val, tb)

    def _foreground_step(self, step: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return step(*args)
        finally:
            operation = self._operation
            operation.remaining -= time.perf_counter() - started
            if operation.remaining <= 0 and not operation.background:
                operation.to_background()

    def _step(self, step: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return step(*args)
        finally:
            self._scheduler._stepped(time.perf_counter() - started)

    def close(self) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            if ticket.done() and not ticket.cancelled():
                self._scheduler._stepped(0.0)  # a turn given and never taken: hand it on
            else:
                ticket.cancel()
        self._inner.close()

    def __await__(self) -> Generator[Any, None, T]:
        return self  # send/throw/close: the generator protocol

    def __iter__(self) -> _Stepwise[T]:
        return self

    def __next__(self) -> Any:
        return self.send(None)


def _install_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Tasks created while an operation runs (graphql-core resolves fields and list items in tasks of their own;
    DataLoaders dispatch in theirs) are stepwise too, as part of it. The factory wraps only those; it is installed
    once per loop, on the first operation, and keeps any factory already set."""
    previous = loop.get_task_factory()
    if getattr(previous, "_dsync_background", False):
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        operation = _operation.get()
        if operation is not None and isinstance(coro, Coroutine) and not isinstance(coro, _Stepwise):
            coro = _Stepwise(operation, coro)
        if previous is not None:
            return previous(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    factory._dsync_background = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)
