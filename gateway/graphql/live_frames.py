"""Live events written as prebuilt graphql-transport-ws frames: executed and encoded once per selection, then per
subscriber only the operation id is spliced in and the frame appended to its connection's send buffer.

A thousand dashboards on one directory would otherwise each run the event through their own chain of async
generators (the hub's stream, the resolver, graphql-core's per-event executor, Strawberry's result handling and
message encoding): ~200 µs of CPU per delivery. Here the hub's pump calls ``FrameSink.render`` once per group of
subscriptions with the same document and variables, and ``FrameSink.offer`` once per subscriber.

Every message of a connection (the pump's frames and everything Strawberry sends: acks, pongs, events read from the
log, completes) goes through one FIFO written by one writer task, so a subscriber sees its events in cursor order
whichever path each took. The FIFO is bounded: a subscriber whose frames do not fit falls behind and reads the log.
For a batched subscription (``directoryEventBatches``) events waiting in the FIFO join one frame, up to ``maxBatch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Hashable
from contextvars import ContextVar
from inspect import isawaitable
from time import perf_counter
from typing import Any, cast
from weakref import WeakValueDictionary

import orjson
from graphql import ExecutionResult, GraphQLError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message, SubscribeMessage

from gateway.events.filter import EventFilter
from gateway.events.hub import EventHub, StreamEvent, Subscriber
from gateway.graphql.context import Context
from gateway.graphql.execution import GatewayExecutionContext, subscription_executor, variables_key
from gateway.graphql.types import Event
from gateway.observe.metrics import DELIVERED_FROM_LOG, DELIVERED_LIVE
from gateway.ops.priority import Scheduler

# Events a connection may have waiting, per open operation, before its subscribers fall back to the log.
_BUFFERED_PER_OPERATION = 1000
# Frames all connections together may write per turn of the event loop. A burst makes every connection's writer
# ready at once; without a bound one turn would write them all (a million frames for 1,000 events to 1,000
# subscribers) before any SCIM request in this process takes its next step. With it, fan-out takes a few
# milliseconds per turn and ingest keeps its pace; with nothing else to do, turns are short and fan-out runs flat out.
_FRAMES_PER_TURN = 128
_FRAMES_PER_GRANT = 16
# While HTTP requests (SCIM above all) are in flight in this process, frames take at most this share of the event
# loop: after a turn whose writes took t, the next waits t * (1 - share) / share. A burst of SCIM creates with 1,000
# dashboards watching would otherwise see fan-out take most of the loop between any two steps of a request; spaced,
# ingest keeps most of its rate, and what waits meanwhile goes out afterwards in fewer, larger batches. With no
# request in flight, turns follow each other at once. The pause is bounded, so fan-out always advances.
_SHARE_WHILE_REQUESTS = 0.25
_MAX_PAUSE_SECONDS = 0.05

# The ASGI scope key under which gateway.app puts the server's own ``send`` for WebSocket connections.
SERVER_SEND = "dsync.server_send"
# ... and where gateway.ws_transport puts the connection's abort (drop it without a closing handshake), if any.
TRANSPORT_ABORT = "dsync.transport_abort"

_operation: ContextVar[tuple[FrameHandler, str] | None] = ContextVar("dsync_ws_operation", default=None)

logger = logging.getLogger("dsync.realtime")


class Parked(BaseException):
    """Raised by a subscription resolver whose subscription the hub now serves by itself (``FrameSink.attach``):
    it unwinds the operation's task (Strawberry's and graphql-core's generators, extensions, executor) without the
    ``complete`` message a returning resolver would send. A BaseException, so that no layer reports it as an error."""


class _Turns:
    """The per-turn budget of frames shared by every connection's writer (see ``_FRAMES_PER_TURN``): a writer asks
    for a grant of a few frames; when the turn's budget is spent it queues, and the next turn wakes as many queued
    writers as its budget covers, in order (the others sleep on: no wake-up storm). While ``scheduler`` counts
    requests in flight, turns are spaced (``_SHARE_WHILE_REQUESTS``); writers add the time their sends took to
    ``spent``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, scheduler: Scheduler | None) -> None:
        self.loop = loop
        self.scheduler = scheduler
        self.left = _FRAMES_PER_TURN
        self.spent = 0.0
        self._queued: deque[asyncio.Future[int]] = deque()
        self._scheduled = False

    async def grant(self) -> int:
        """Frames the caller may write now (at least one)."""
        if not self._scheduled:  # whatever is spent in this turn, the next one starts afresh
            self._scheduled = True
            self.loop.call_soon(self._next_turn)
        if self.left > 0 and not self._queued:
            granted = min(_FRAMES_PER_GRANT, self.left)
            self.left -= granted
            return granted
        waiter: asyncio.Future[int] = self.loop.create_future()
        self._queued.append(waiter)
        return await waiter

    def _next_turn(self) -> None:
        spent, self.spent = self.spent, 0.0
        if spent > 0 and self.scheduler is not None and self.scheduler.foreground_requests > 0:
            self.left = 0  # writers arriving during the pause queue behind the others
            pause = min(spent * (1 - _SHARE_WHILE_REQUESTS) / _SHARE_WHILE_REQUESTS, _MAX_PAUSE_SECONDS)
            self.loop.call_later(pause, self._next_turn)
            return
        self.left = _FRAMES_PER_TURN
        while self._queued and self.left > 0:
            waiter = self._queued.popleft()
            if not waiter.done():  # not cancelled (its connection closed)
                granted = min(_FRAMES_PER_GRANT, self.left)
                self.left -= granted
                waiter.set_result(granted)
        self._scheduled = bool(self._queued)
        if self._scheduled:
            self.loop.call_soon(self._next_turn)


_turns: _Turns | None = None


def _frame_turns(scheduler: Scheduler | None) -> _Turns:
    global _turns
    loop = asyncio.get_running_loop()
    if _turns is None or _turns.loop is not loop:
        _turns = _Turns(loop, scheduler)
    return _turns


class _Batch:
    """Events of one batched subscription waiting to be written as one frame."""

    __slots__ = ("items", "sink")

    def __init__(self, sink: FrameSink, item: str) -> None:
        self.sink = sink
        self.items = [item]


class _Message:
    """A message Strawberry sends (not the pump): its sender waits until it is written (unless it has no ``sent``:
    a server ping, whose sender waits for nothing)."""

    __slots__ = ("sent", "text")

    def __init__(self, text: str, *, wait: bool = True) -> None:
        self.text = text
        self.sent: asyncio.Future[None] | None = asyncio.get_running_loop().create_future() if wait else None


_Entry = str | _Batch | _Message


class FrameHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws whose messages all go through one send buffer (see the module's docstring)."""

    _outbox: deque[_Entry] | None = None
    _buffered = 0  # events in the outbox
    _writer: asyncio.Task[None] | None = None
    _broken = False
    _server_send: Any = None
    _parked: dict[str, FrameSink] | None = None  # operation id -> its sink, for subscriptions the hub serves

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # The subscription resolver runs in this task: it finds its connection and operation id here.
        _operation.set((self, operation.id))
        # Parked: the operation lives on as its sink; ``cleanup_operation`` (a complete, the socket closing) ends it.
        with contextlib.suppress(Parked):
            await super().run_operation(operation)
        # The finished task keeps its context: these would keep this operation's executor alive with it.
        _operation.set(None)
        subscription_executor.set(None)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        await super().handle_subscribe(message)
        # Read into the operation: the message (its document text) would otherwise stay referenced by the receive
        # loop until the client's next message, for an idle subscriber hours later.
        cast(dict[str, Any], message).clear()

    def park(self, operation_id: str, sink: FrameSink) -> None:
        if self._parked is None:
            self._parked = {}
        self._parked[operation_id] = sink
        operation = self.operations.get(operation_id)
        if operation is not None:  # its document and variables were parsed into the sink's executor
            # The task is about to finish (``Parked``): nothing waits for it, and kept it would hold its context.
            operation.query, operation.variables, operation.task = "", None, None

    async def cleanup_operation(self, operation_id: str) -> None:
        sink = self._parked.pop(operation_id, None) if self._parked else None
        if sink is not None:
            sink.detach()
            self.operations.pop(operation_id, None)
            return
        await super().cleanup_operation(operation_id)

    def end_parked(self, operation_id: str, last_message: str) -> None:
        """A parked subscription ends from the server's side (the hub stopping): its last message, and its id is
        free again."""
        if self._parked is not None and self._parked.pop(operation_id, None) is not None:
            self.operations.pop(operation_id, None)
            self.send_nowait(last_message)

    async def send_message(self, message: Message) -> None:
        await self.send_text(str(self.view.encode_json(message)))

    async def send_text(self, text: str) -> None:
        """Queue a message (already JSON) in order with everything else and wait until it is written."""
        entry = _Message(text)
        self._enqueue(entry)
        assert entry.sent is not None
        await entry.sent

    def send_nowait(self, text: str) -> None:
        """Queue a message (already JSON) in order with everything else, without waiting for it to be written."""
        self._enqueue(_Message(text, wait=False))

    async def shutdown(self) -> None:
        await super().shutdown()
        if self._writer is not None:
            self._writer.cancel()

    def offer_frame(self, frame: str) -> bool:
        if self._buffered >= self._limit():
            return False
        self._buffered += 1
        self._enqueue(frame)
        return True

    def offer_item(self, sink: FrameSink, item: str) -> bool:
        if self._buffered >= self._limit():
            return False
        self._buffered += 1
        batch = sink.open_batch
        if batch is not None and len(batch.items) < sink.max_batch:
            batch.items.append(item)
            return True
        sink.open_batch = batch = _Batch(sink, item)
        self._enqueue(batch)
        return True

    def _limit(self) -> int:
        return _BUFFERED_PER_OPERATION * max(1, len(self.operations))

    def _enqueue(self, entry: _Entry) -> None:
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append(entry)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        events = granted = 0
        turns = _frame_turns(self._scheduler())
        try:
            while outbox:
                if granted == 0:
                    granted = await turns.grant()
                    continue  # the outbox may have been emptied meanwhile (cancelled)
                granted -= 1
                entry = outbox.popleft()
                started = perf_counter()
                if isinstance(entry, _Message):
                    await self._send(entry.text, entry.sent)
                elif isinstance(entry, str):
                    self._buffered -= 1
                    events += 1
                    await self._send(entry)
                else:
                    if entry.sink.open_batch is entry:
                        entry.sink.open_batch = None
                    self._buffered -= len(entry.items)
                    events += len(entry.items)
                    await self._send(entry.sink.batch_frame(entry.items))
                turns.spent += perf_counter() - started
        finally:
            DELIVERED_LIVE.inc(events)
            self._writer = None
            self._outbox = None  # an idle connection keeps no buffer
            for entry in outbox:  # cancelled (the connection is shutting down): release the senders
                if isinstance(entry, _Message) and entry.sent is not None and not entry.sent.done():
                    entry.sent.cancel()

    def _scheduler(self) -> Scheduler | None:
        """The app's request scheduler (it counts the HTTP requests in flight), None outside a gateway app."""
        app = self.websocket.ws.scope.get("app")  # type: ignore[attr-defined]
        state = getattr(app, "state", None)
        scheduler = getattr(state, "scheduler", None)
        return scheduler if isinstance(scheduler, Scheduler) else None

    async def _send(self, text: str, sent: asyncio.Future[None] | None = None) -> None:
        error: Exception | None = None
        if self._broken:
            error = WebSocketDisconnected()
        else:
            try:
                if self._server_send is None:
                    ws = self.websocket.ws  # type: ignore[attr-defined]
                    self._server_send = ws.scope.get(SERVER_SEND) or ws.send
                await self._server_send({"type": "websocket.send", "text": text})
            except Exception:
                # The peer is gone: what is still queued is dropped; the connection's shutdown ends its operations.
                self._broken = True
                error = WebSocketDisconnected()
        if sent is None or sent.done():  # done: its sender was cancelled
            return
        if error is None:
            sent.set_result(None)
        else:
            sent.set_exception(error)


class FrameSink:
    """One subscription's fast path: implements the hub's ``AttachedSink`` for a graphql-transport-ws operation.
    Once attached it is all that remains of the operation (with its executor, to render events)."""

    __slots__ = (
        "_executor",
        "_handler",
        "_hub",
        "_operation_id",
        "_prefix",
        "_response_key",
        "_subscriber",
        "group",
        "max_batch",
        "open_batch",
    )

    def __init__(
        self, *, handler: FrameHandler, operation_id: str, executor: GatewayExecutionContext, max_batch: int
    ) -> None:
        self._handler = handler
        self._operation_id = operation_id
        self._executor = executor
        self._hub: EventHub | None = None
        self._subscriber: Subscriber | None = None
        self.max_batch = max_batch  # 0: one event per frame (``directoryEvents``)
        self.open_batch: _Batch | None = None
        self._prefix = f'{{"id":{orjson.dumps(operation_id).decode()},"type":"next","payload":'
        self._response_key = ""
        self.group: Hashable = (id(executor.operation), variables_key(executor.variable_values), max_batch > 0)

    async def render(self, event: StreamEvent) -> object | None:
        root: Any = Event.from_row(event.row)
        result = self._executor.build_per_event_executor([root] if self.max_batch else root).execute_operation(False)
        if isawaitable(result):
            result = await result
        if not isinstance(result, ExecutionResult) or result.errors or not isinstance(result.data, dict):
            return None
        if not self.max_batch:
            return orjson.dumps({"data": result.data}).decode()
        ((key, items),) = result.data.items()
        return (orjson.dumps(key).decode(), orjson.dumps(items[0]).decode())

    def offer(self, rendered: object) -> bool:
        if isinstance(rendered, tuple):
            self._response_key, item = rendered
            return self._handler.offer_item(self, item)
        return self._handler.offer_frame(f"{self._prefix}{rendered}}}")

    def pending(self) -> int:
        return len(self.open_batch.items) if self.open_batch is not None else 0

    async def attach(self, hub: EventHub, event_filter: EventFilter, *, after: int | None) -> None:
        """Hand the subscription to the hub (``EventHub.attach``) and register it with its connection; the resolver
        then raises ``Parked``."""
        self._hub = hub
        self._subscriber = await hub.attach(event_filter, after=after, sink=self)
        self._handler.park(self._operation_id, self)

    def detach(self) -> None:
        if self._hub is not None and self._subscriber is not None:
            self._hub.detach(self._subscriber)
        self._subscriber = None

    async def deliver(self, rows: list[Any]) -> bool:
        step = self.max_batch or 1
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            root: Any = [Event.from_row(row) for row in chunk] if self.max_batch else Event.from_row(chunk[0])
            result = self._executor.build_per_event_executor(root).execute_operation(False)
            if isawaitable(result):
                result = await result
            payload: dict[str, Any] = {"data": result.data}
            if result.errors:
                payload["errors"] = [_formatted(error) for error in result.errors]
            try:
                await self._handler.send_text(f"{self._prefix}{orjson.dumps(payload).decode()}}}")
            except WebSocketDisconnected:
                return False  # the connection's shutdown detaches this sink
            DELIVERED_FROM_LOG.inc(len(chunk))
        return True

    def end(self, error: str | None) -> None:
        self._subscriber = None
        ident = orjson.dumps(self._operation_id).decode()
        if error is None:
            last = f'{{"id":{ident},"type":"complete"}}'
        else:
            last = orjson.dumps({"id": self._operation_id, "type": "error", "payload": [{"message": error}]}).decode()
        self._handler.end_parked(self._operation_id, last)

    def batch_frame(self, items: list[str]) -> str:
        return f'{self._prefix}{{"data":{{{self._response_key}:[{",".join(items)}]}}}}}}'


def _formatted(error: GraphQLError) -> dict[str, Any]:
    """An event's error as the schema's extensions would answer it: an exception that is no GraphQL error is logged
    and masked (its text may be SQL or internals)."""
    if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
        logger.error("resolving a subscription event failed", exc_info=error.original_error)
        masked = GraphQLError("Internal server error", nodes=error.nodes, path=error.path)
        return dict(masked.formatted)
    return dict(error.formatted)


def live_sink(*, max_batch: int) -> FrameSink | None:
    """The fast path for the subscription resolving in this task, or None when it runs outside a graphql-transport-ws
    operation (then the hub yields every event to the resolver)."""
    operation, executor = _operation.get(), subscription_executor.get()
    if operation is None or executor is None:
        return None
    handler, operation_id = operation
    principal = getattr(executor.context_value, "_principal", None)
    key = (id(executor.operation), variables_key(executor.variable_values), getattr(principal, "organization_id", ""))
    executor = _executors.setdefault(key, executor)
    return FrameSink(handler=handler, operation_id=operation_id, executor=executor, max_batch=max_batch)


# Subscriptions with the same selection, variables and organization scope share one executor (the pump renders each
# live event once per such group with one of them anyway): an idle subscriber then keeps no executor of its own
# (~3 KiB). An entry lives while a sink uses it; it holds the operation node, so its id() is not reused meanwhile.
_executors: WeakValueDictionary[Hashable, GatewayExecutionContext] = WeakValueDictionary()
