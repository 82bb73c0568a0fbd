"""What every route shares: the function, the invocations and their queues, the records.

Everything here runs on the emulator's loop thread (no locks, except in
:class:`~._records.History`, which other threads read).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from lambda_bulkhead.emulator._faults import NextFault, PostFault
from lambda_bulkhead.emulator._records import (
    ApiCall,
    History,
    InitErrorReport,
    InvokeResult,
    RestoreErrorReport,
    StreamChunk,
)
from lambda_bulkhead.emulator._wire import Connection

__all__ = [
    "FunctionConfig",
    "Invocation",
    "PendingFault",
    "Platform",
    "State",
    "StreamListener",
    "new_trace_id",
]

State = Literal[
    "queued", "delivered", "streaming", "responded", "errored", "timed_out", "exited",
    "init_failed",
]


FatalKind = Literal["init_error", "restore_error"]


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """The function the emulator pretends to run."""

    name: str
    version: str
    memory_mb: int
    timeout_s: float
    arn: str
    handler: str
    snap_start: bool
    restore_delay_s: float


def new_trace_id() -> str:
    """An X-Ray trace header as Lambda sends it for an untraced call."""
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


class StreamListener(Protocol):
    """A caller that wants a streamed answer as it comes (the invoke endpoint)."""

    def begin(self, status: int, headers: list[tuple[str, str]]) -> None:
        """The status and headers, before the first byte of the body."""

    def body(self, data: bytes) -> None:
        """Body bytes for the caller."""

    def set_source(self, source: Connection | None) -> None:
        """The runtime's connection the stream is read from (for back-pressure)."""


class Invocation:
    """One invoke, from submission until ``on_done`` is given its result.

    Header values are wire strings: one code point per byte (latin-1).
    ``keep_chunks``/``on_chunk``/``listener`` say what the caller wants of a
    streamed answer.
    """

    __slots__ = (
        "client_context", "cognito_identity", "content_type", "expires_at", "invocation_id",
        "is_abandoned", "keep_chunks", "listener", "on_cancel", "on_chunk", "on_done", "payload",
        "request_id", "state", "tenant_id", "trace_id",
    )

    def __init__(
        self,
        *,
        payload: bytes,
        content_type: str,
        client_context: str | None,
        cognito_identity: str | None,
        trace_id: str | None,
        tenant_id: str | None,
        on_done: Callable[[InvokeResult], None],
        is_abandoned: Callable[[], bool],
        on_cancel: Callable[[], object],
        keep_chunks: bool = True,
        on_chunk: Callable[[StreamChunk], None] | None = None,
        listener: StreamListener | None = None,
    ) -> None:
        self.request_id = str(uuid.uuid4())
        self.invocation_id = str(uuid.uuid4())
        self.payload = payload
        self.content_type = content_type
        self.client_context = client_context
        self.cognito_identity = cognito_identity
        self.trace_id = trace_id or new_trace_id()
        self.tenant_id = tenant_id
        self.on_done = on_done
        self.is_abandoned = is_abandoned
        self.on_cancel = on_cancel
        self.keep_chunks = keep_chunks
        self.on_chunk = on_chunk
        self.listener = listener
        self.state: State = "queued"
        self.expires_at = 0.0  # loop.time() at which a delivered invocation times out


class PendingFault:
    """A queued fault and how many more answers it spoils."""

    __slots__ = ("fault", "remaining")

    def __init__(self, fault: NextFault | PostFault, times: int) -> None:
        self.fault = fault
        self.remaining = times


class Platform:
    """The shared state of the Runtime API, the Extensions API and the invoke endpoint."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: FunctionConfig,
        history: History,
        max_finished: int | None,
    ) -> None:
        self.loop = loop
        self.config = config
        self.history = history
        self.max_finished = max_finished
        self.closing = False
        self.queue: deque[Invocation] = deque()
        self.polls: deque[Connection] = deque()  # long-polling /next, oldest first
        # Delivered invocations in delivery order, which is also deadline order
        # (one timeout for all): so one timer, armed for the oldest, serves them all.
        self.in_flight: dict[str, Invocation] = {}
        # request id -> (final state, invocation id), for late posts, and the ids
        # oldest first so the oldest can be forgotten in O(1).
        self.finished: dict[str, tuple[State, str]] = {}
        self.finished_order: deque[str] = deque()
        self.next_faults: deque[PendingFault] = deque()
        self.post_faults: list[PendingFault] = []
        self.poll_waiters: list[tuple[int, concurrent.futures.Future[None]]] = []
        self.init_waiters: list[concurrent.futures.Future[None]] = []
        # The report that makes every invoke fail (init or restore error), and its kind.
        self.fatal: tuple[FatalKind, InitErrorReport | RestoreErrorReport] | None = None
        self.exit_reason: str | None = None
        self.initialized = False  # the runtime polled /next: init is over
        self.restored = False  # SnapStart: restore/next was answered
        self.extensions_ready: Callable[[], bool] = lambda: True
        self.dispatch: Callable[[], None] = lambda: None
        # (read size, bytes per second) for streamed bodies: the slow-reader mode.
        self.stream_reading: tuple[int, float] | None = None

    @property
    def init_complete(self) -> bool:
        """Every extension waits in event/next, the runtime polled /next (and was restored)."""
        return (
            self.initialized
            and self.extensions_ready()
            and (self.restored or not self.config.snap_start)
        )

    def record_call(self, name: str, detail: str | None = None, status: int | None = None) -> None:
        self.history.add_call(ApiCall(name=name, detail=detail, status=status, at=time.monotonic()))

    def wake_init_waiters(self) -> None:
        if self.init_waiters and self.init_complete:
            for waiter in self.init_waiters:
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(None)
            self.init_waiters.clear()

    def finish(self, invocation: Invocation, state: State, result: InvokeResult) -> None:
        """End ``invocation`` in ``state`` and hand its caller ``result``."""
        invocation.state = state
        self.in_flight.pop(invocation.request_id, None)
        self.finished[invocation.request_id] = (state, invocation.invocation_id)
        if self.max_finished is not None:
            order = self.finished_order
            order.append(invocation.request_id)
            if len(order) > self.max_finished:
                del self.finished[order.popleft()]
        invocation.on_done(result)
