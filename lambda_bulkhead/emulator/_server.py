"""The event-loop side of the emulator: one Protocol per connection and the state they share.

Everything here runs on the emulator's loop thread; :mod:`._emulator` reaches
it only through ``loop.call_soon_threadsafe``.  So nothing here takes a lock
(except :class:`~._records.History`, which other threads read).

An invocation's states and what moves it (rules cited in the code)::

    1. queued     --a /next poll takes it----> delivered    timeout clock starts
    2. queued     --/init/error posted-------> init_failed  invoke answered 502 + init error body
    3. queued     --runtime_exited()---------> exited       invoke answered 502 Runtime.ExitError
    4. delivered  --/response answered 202---> responded    invoke answered 200 + body
    5. delivered  --/error answered 202------> errored      200 + error body + X-Amz-Function-Error
    6. delivered  --timeout_s passes---------> timed_out    200 "Task timed out after N.NN seconds"
    7. delivered  --runtime_exited()---------> exited       502 Runtime.ExitError
    8. A post for a timed_out invocation is answered 410, for one that ended
       otherwise 403, for an id /next never gave out 400; a non-202 answer
       changes nothing.
    9. A queued invocation whose caller went away (future cancelled, HTTP
       client disconnected) is dropped, never delivered.

And the emulator's own:

    10. After an /init/error every invoke is answered 502 with its body and
        every /next 403: the runtime should have exited.  It is not undone.
    11. After runtime_exited(), invokes are answered 502 until a runtime polls
        /next again (the owner restarted it), as the RIE re-inits on the next
        invoke.
    12. /init/error after the first /next of a runtime is 403: init is over.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import json
import secrets
import socket
import struct
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, cast

from lambda_bulkhead.emulator._faults import (
    NextBody,
    NextFault,
    NextHeaders,
    NextPastDeadline,
    NextRequestId,
    NextReset,
    NextShortBody,
    NextStatus,
    PostFault,
    PostHang,
    PostReset,
    PostStatus,
    default_error_body,
)
from lambda_bulkhead.emulator._http import (
    CONTINUE,
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    BadRequest,
    Request,
    RequestParser,
    json_error,
    render_response,
    wire_text,
)
from lambda_bulkhead.emulator._records import (
    History,
    InitErrorReport,
    InvokeResult,
    NextDelivery,
    RuntimeAnswer,
)

__all__ = ["MAX_RESPONSE_BYTES", "Connection", "Core", "FunctionConfig", "Invocation"]

MAX_RESPONSE_BYTES = 6_291_556
"""Largest ``/response`` or ``/error`` body the Runtime API accepts; more is 413."""

NEXT_PATH = "/2018-06-01/runtime/invocation/next"
INVOCATION_PREFIX = "/2018-06-01/runtime/invocation/"
INIT_ERROR_PATH = "/2018-06-01/runtime/init/error"
INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"

_JSON = (("Content-Type", "application/json"),)
_ACCEPTED = b'{"status":"OK"}'
_SHUTDOWN_GRACE_S = 2.0
_READ_BUFFER_BYTES = 64 * 1024

State = Literal["queued", "delivered", "responded", "errored", "timed_out", "exited", "init_failed"]


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """The function the emulator pretends to run."""

    name: str
    version: str
    memory_mb: int
    timeout_s: float
    arn: str


def new_trace_id() -> str:
    """An X-Ray trace header as Lambda sends it for an untraced call."""
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


class Invocation:
    """One invoke, from submission until ``on_done`` is given its result.

    Header values are wire strings: one code point per byte (latin-1).
    """

    __slots__ = (
        "client_context",
        "cognito_identity",
        "content_type",
        "expires_at",
        "invocation_id",
        "is_abandoned",
        "on_cancel",
        "on_done",
        "payload",
        "request_id",
        "state",
        "tenant_id",
        "trace_id",
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
        self.state: State = "queued"
        self.expires_at = 0.0  # loop.time() at which a delivered invocation times out


class _PendingFault:
    """A queued fault and how many more answers it spoils."""

    __slots__ = ("fault", "remaining")

    def __init__(self, fault: NextFault | PostFault, times: int) -> None:
        self.fault = fault
        self.remaining = times


class Connection(asyncio.BufferedProtocol):
    """One client connection: parses its requests and writes the answers, one at a time.

    While a request is being handled (a ``/next`` long-poll, an invoke waiting
    for its result), later bytes wait in the parser.

    A BufferedProtocol, so the loop reads into one buffer per connection: a
    plain Protocol gets a fresh 256 KiB ``recv()`` allocation per read, which
    glibc serves with mmap, mremap and munmap, three extra system calls per
    request.
    """

    def __init__(self, core: Core) -> None:
        self._core = core
        self._parser = RequestParser()
        self._read_buffer = memoryview(bytearray(_READ_BUFFER_BYTES))
        self._transport: asyncio.Transport | None = None
        self._busy = False
        # True inside _serve(): an answer given synchronously must not re-enter it.
        self._serving = False
        self._close_when_answered = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._core.connection_opened(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._parser.feed(self._read_buffer[:nbytes])
        if not self._busy:
            self._serve()
        elif self._parser.buffered > MAX_HEAD_BYTES + MAX_BODY_BYTES:
            # A peer that keeps sending while its request waits is not a runtime.
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._core.connection_closed(self)

    def is_closed(self) -> bool:
        """Whether the peer can no longer get an answer here."""
        return self.closed

    def _serve(self) -> None:
        self._serving = True
        try:
            while not self._busy and not self.closed:
                try:
                    request = self._parser.next_request()
                except BadRequest as exc:
                    # The stream is out of step: answer, then close.
                    self._close_when_answered = True
                    self.answer(exc.status, _JSON, json_error(exc.error_type, exc.message))
                    return
                if request is None:
                    if self._parser.take_continue():
                        self._write(CONTINUE)
                    return
                self._busy = True
                self._close_when_answered = not request.keep_alive
                self._core.handle(self, request)
        finally:
            self._serving = False

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self.closed:
            self._transport.write(data)

    def answer(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        """Answer the current request, then serve the next one (or close)."""
        if self.closed or self._transport is None:
            return
        close = self._close_when_answered
        self._transport.write(render_response(status, headers, body, close=close))
        self._busy = False
        if close:
            self.closed = True
            self._transport.close()
        elif not self._serving and self._parser.has_data:
            self._serve()

    def answer_invoke(self, result: InvokeResult) -> None:
        """Answer an invoke request with its result."""
        self.answer(result.status, result.headers.items(), result.body)

    def write_then_close(self, data: bytes) -> None:
        """Send ``data`` and close the connection cleanly (FIN)."""
        if self.closed or self._transport is None:
            return
        self._transport.write(data)
        self.closed = True
        self._transport.close()

    def write_then_reset(self, data: bytes) -> None:
        """Send ``data``, then reset the connection (RST), as a crashed peer would."""
        if self.closed or self._transport is None:
            return
        self._transport.write(data)
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            # Linger on, timeout 0: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


class Core:
    """The Runtime API and invoke endpoint behind every connection (module docstring rules)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: FunctionConfig,
        history: History,
        max_finished: int | None,
    ) -> None:
        self._loop = loop
        self._config = config
        self._timeout_ms = round(config.timeout_s * 1000)
        self._history = history
        self._max_finished = max_finished
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._all_closed = asyncio.Event()
        self._closing = False
        self._queue: deque[Invocation] = deque()
        self._polls: deque[Connection] = deque()  # long-polling /next, oldest first
        # Delivered invocations in delivery order, which is also deadline order
        # (one timeout for all): so one timer, armed for the oldest, serves them all.
        self._in_flight: dict[str, Invocation] = {}
        self._expiry_timer: asyncio.TimerHandle | None = None
        # request id -> (final state, invocation id), for rule 8, and the ids
        # oldest first so the oldest can be forgotten in O(1).
        self._finished: dict[str, tuple[State, str]] = {}
        self._finished_order: deque[str] = deque()
        self._next_faults: deque[_PendingFault] = deque()
        self._post_faults: list[_PendingFault] = []
        self._poll_waiters: list[tuple[int, concurrent.futures.Future[None]]] = []
        self._init_error: InitErrorReport | None = None
        self._exit_reason: str | None = None
        self._initialized = False

    # -- lifecycle ---------------------------------------------------------

    async def listen(self, host: str, port: int) -> int:
        """Bind and start accepting; returns the bound port."""
        self._server = await self._loop.create_server(lambda: Connection(self), host, port)
        sockname = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def close(self) -> None:
        """Stop accepting, cancel every pending invocation, drop every connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        for invocation in [*self._in_flight.values(), *self._queue]:
            invocation.on_cancel()
        self._in_flight.clear()
        self._queue.clear()
        for _, waiter in self._poll_waiters:
            waiter.cancel()
        self._poll_waiters.clear()
        for connection in list(self._connections):
            connection.abort()
        if self._connections:
            # connection_lost (which closes each socket) runs on a later loop turn.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), _SHUTDOWN_GRACE_S)
        if self._server is not None:
            await self._server.wait_closed()

    def connection_opened(self, connection: Connection) -> None:
        if self._closing:
            connection.abort()
        self._connections.add(connection)

    def connection_closed(self, connection: Connection) -> None:
        self._connections.discard(connection)
        if connection in self._polls:
            self._polls.remove(connection)
        if self._closing and not self._connections:
            self._all_closed.set()

    # -- the owner's calls (from the Emulator, via call_soon_threadsafe) -----

    def submit(self, invocation: Invocation) -> None:
        """Queue an invoke, or answer it at once if the runtime cannot take it."""
        if self._closing:
            invocation.on_cancel()
        elif self._init_error is not None:
            self._finish(invocation, "init_failed", self._init_failed_result(invocation))  # 10
        elif self._exit_reason is not None:
            self._finish(invocation, "exited", self._exit_result(invocation))  # 11
        else:
            self._queue.append(invocation)
            if self._polls:
                self._dispatch()

    def inject(self, fault: NextFault | PostFault, times: int) -> None:
        if isinstance(fault, NextFault):
            self._next_faults.append(_PendingFault(fault, times))
            if self._polls:
                self._dispatch()
        else:
            self._post_faults.append(_PendingFault(fault, times))

    def clear_faults(self) -> None:
        self._next_faults.clear()
        self._post_faults.clear()

    def runtime_exited(self, reason: str) -> None:
        """The runtime process died: fail what it held and what waits (rules 3, 7, 11)."""
        self._exit_reason = reason
        self._initialized = False
        for invocation in list(self._in_flight.values()):
            self._finish(invocation, "exited", self._exit_result(invocation))
        while self._queue:
            invocation = self._queue.popleft()
            if not invocation.is_abandoned():
                self.submit(invocation)

    def add_poll_waiter(self, polls: int, waiter: concurrent.futures.Future[None]) -> None:
        """Resolve ``waiter`` once at least ``polls`` /next requests are waiting."""
        self._poll_waiters.append((polls, waiter))
        self._wake_poll_waiters()

    # -- routing -------------------------------------------------------------

    def handle(self, connection: Connection, request: Request) -> None:
        """Route one request; the answer may come now or later."""
        path = request.path
        method = request.method
        if path == NEXT_PATH:
            if method == "GET":
                self._on_next(connection)
            else:
                _wrong_method(connection, method, "GET")
        elif path.startswith(INVOCATION_PREFIX):
            segment, _, call = path[len(INVOCATION_PREFIX) :].partition("/")
            # One path segment, percent-decoded: the runtime encodes the id so.
            request_id = urllib.parse.unquote(segment, errors="surrogateescape")
            if not request_id or call not in ("response", "error"):
                _not_found(connection, path)
            elif method != "POST":
                _wrong_method(connection, method, "POST")
            else:
                self._on_post(connection, request, request_id, call)
        elif path == INIT_ERROR_PATH:
            if method == "POST":
                self._on_init_error(connection, request)
            else:
                _wrong_method(connection, method, "POST")
        elif self._is_invoke_path(path):
            if method == "POST":
                self._on_invoke(connection, request)
            else:
                _wrong_method(connection, method, "POST")
        else:
            _not_found(connection, path)

    def _is_invoke_path(self, path: str) -> bool:
        if not (path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX)):
            return False
        name = path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)]
        return name in ("function", self._config.name)

    # -- /next -----------------------------------------------------------------

    def _on_next(self, connection: Connection) -> None:
        if self._init_error is not None:  # 10
            body = json_error(
                "InvalidStateTransition", "the runtime posted /init/error: it should have exited"
            )
            self._record_delivery(None, 403, _JSON, len(body), None)
            connection.answer(403, _JSON, body)
            return
        self._exit_reason = None  # 11
        self._initialized = True  # 12
        self._polls.append(connection)
        self._dispatch()
        if self._poll_waiters:
            self._wake_poll_waiters()

    def _dispatch(self) -> None:
        """Pair waiting polls with queued invocations (and with faults that need none)."""
        polls = self._polls
        while polls:
            fault = cast(NextFault, self._next_faults[0].fault) if self._next_faults else None
            if fault is not None and not _uses_event(fault):
                self._take_next_fault()
                self._answer_without_event(polls.popleft(), fault)
                continue
            invocation = self._pop_queued()
            if invocation is None:
                return
            if fault is not None:
                self._take_next_fault()
            self._deliver(polls.popleft(), invocation, fault)

    def _pop_queued(self) -> Invocation | None:
        while self._queue:
            invocation = self._queue.popleft()
            if not invocation.is_abandoned():  # 9
                return invocation
        return None

    def _take_next_fault(self) -> None:
        pending = self._next_faults[0]
        pending.remaining -= 1
        if pending.remaining <= 0:
            self._next_faults.popleft()

    def _event_headers(self, invocation: Invocation) -> list[tuple[str, str]]:
        deadline_ms = int(time.time() * 1000) + self._timeout_ms
        headers = [
            ("Content-Type", invocation.content_type),
            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", self._config.arn),
            ("Lambda-Runtime-Trace-Id", invocation.trace_id),
        ]
        if invocation.client_context:
            headers.append(("Lambda-Runtime-Client-Context", invocation.client_context))
        if invocation.cognito_identity:
            headers.append(("Lambda-Runtime-Cognito-Identity", invocation.cognito_identity))
        if invocation.tenant_id:
            headers.append(("Lambda-Runtime-Aws-Tenant-Id", invocation.tenant_id))
        headers.append(("Lambda-Runtime-Invocation-Id", invocation.invocation_id))
        return headers

    def _deliver(
        self, connection: Connection, invocation: Invocation, fault: NextFault | None
    ) -> None:
        invocation.state = "delivered"  # 1
        if isinstance(fault, NextRequestId):
            invocation.request_id = fault.request_id
        self._in_flight[invocation.request_id] = invocation
        invocation.expires_at = self._loop.time() + self._config.timeout_s
        if self._expiry_timer is None:
            self._expiry_timer = self._loop.call_at(invocation.expires_at, self._expire)
        headers = self._event_headers(invocation)
        body = invocation.payload
        request_id = invocation.request_id
        match fault:
            case None:
                self._record_delivery(request_id, 200, headers, len(body), None)
                connection.answer(200, headers, body)
            case NextHeaders(headers=overrides):
                headers = _override(headers, overrides)
                self._record_delivery(request_id, 200, headers, len(body), fault)
                connection.answer(200, headers, body)
            case NextPastDeadline(by_ms=by_ms):
                past = str(int(time.time() * 1000) - by_ms)
                headers = _override(headers, {"Lambda-Runtime-Deadline-Ms": past})
                self._record_delivery(request_id, 200, headers, len(body), fault)
                connection.answer(200, headers, body)
            case NextRequestId():
                self._record_delivery(request_id, 200, headers, len(body), fault)
                connection.answer(200, headers, body)
            case NextBody(body=replacement):
                self._record_delivery(request_id, 200, headers, len(replacement), fault)
                connection.answer(200, headers, replacement)
            case NextShortBody():
                declared = max(len(body), 1)
                sent = body[: declared // 2]
                self._record_delivery(request_id, 200, headers, declared, fault)
                connection.write_then_close(
                    render_response(200, headers, sent, declared_length=declared)
                )
            case NextReset():
                head = render_response(200, headers, b"", declared_length=len(body))
                self._record_delivery(request_id, 200, headers, len(body), fault)
                connection.write_then_reset(head + body[: len(body) // 2])
            case _:
                raise AssertionError(f"unhandled /next fault {fault!r}")

    def _answer_without_event(self, connection: Connection, fault: NextFault) -> None:
        match fault:
            case NextStatus(status=status, body=body):
                body = default_error_body(status) if body is None else body
                self._record_delivery(None, status, _JSON, len(body), fault)
                connection.answer(status, _JSON, body)
            case NextReset(during="headers"):
                # Cut before Lambda-Runtime-Aws-Request-Id: no event is handed out.
                partial = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runt"
                self._record_delivery(None, 200, _JSON, 0, fault)
                connection.write_then_reset(partial.encode())
            case _:
                raise AssertionError(f"/next fault {fault!r} needs an event")

    def _expire(self) -> None:
        """Time out every invocation past its deadline; re-arm for the next one."""
        self._expiry_timer = None
        now = self._loop.time()
        while self._in_flight:
            oldest = next(iter(self._in_flight.values()))
            if oldest.expires_at > now:
                self._expiry_timer = self._loop.call_at(oldest.expires_at, self._expire)
                return
            self._time_out(oldest)

    def _time_out(self, invocation: Invocation) -> None:
        text = f"Task timed out after {self._config.timeout_s:.2f} seconds"
        result = InvokeResult(
            kind="timeout",
            status=200,
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "X-Amz-Function-Error": "Unhandled",
                "X-Amzn-RequestId": invocation.request_id,
            },
            body=text.encode(),
            request_id=invocation.request_id,
            invocation_id=invocation.invocation_id,
        )
        self._finish(invocation, "timed_out", result)  # 6

    # -- /response and /error ----------------------------------------------------

    def _on_post(
        self, connection: Connection, request: Request, request_id: str, call: str
    ) -> None:
        fault = self._take_post_fault(call)
        match fault:
            case PostHang(seconds=seconds):
                self._loop.call_later(
                    seconds, self._settle_post, connection, request, request_id, call, fault
                )
            case PostReset(after_accept=False):
                self._record_answer(request, request_id, call, None, fault)
                connection.write_then_reset(b"")
            case _:
                self._settle_post(connection, request, request_id, call, fault)

    def _take_post_fault(self, call: str) -> PostFault | None:
        if not self._post_faults:
            return None
        for index, pending in enumerate(self._post_faults):
            fault = cast(PostFault, pending.fault)
            if fault.applies_to(call):
                pending.remaining -= 1
                if pending.remaining <= 0:
                    del self._post_faults[index]
                return fault
        return None

    def _settle_post(
        self,
        connection: Connection,
        request: Request,
        request_id: str,
        call: str,
        fault: PostFault | None,
    ) -> None:
        invocation = self._in_flight.get(request_id)
        finish: tuple[State, InvokeResult] | None = None
        if isinstance(fault, PostStatus):
            status = fault.status
            body = default_error_body(status) if fault.body is None else fault.body
        else:
            status, body, finish = self._judge_post(invocation, request, request_id, call)
        if isinstance(fault, PostReset):  # after_accept=True: accepted, then reset
            self._record_answer(request, request_id, call, None, fault)
            connection.write_then_reset(b"")
        else:
            self._record_answer(request, request_id, call, status, fault)
            connection.answer(status, _JSON, body)
        if finish is not None and invocation is not None:
            self._finish(invocation, *finish)

    def _judge_post(
        self, invocation: Invocation | None, request: Request, request_id: str, call: str
    ) -> tuple[int, bytes, tuple[State, InvokeResult] | None]:
        """The status and body to answer a post with, and how it ends the invocation."""
        if invocation is None:  # 8
            ended = self._finished.get(request_id)
            if ended is None:
                message = f"unknown request id {request_id!r}: /next never gave it out"
                return 400, json_error("InvalidRequestID", message), None
            if ended[0] == "timed_out":
                message = f"invocation {request_id} timed out; its {call} came too late"
                return 410, json_error("InvokeTimeout", message), None
            message = f"invocation {request_id} has already ended ({ended[0]})"
            return 403, json_error("InvalidStateTransition", message), None
        size = len(request.body)
        if size > MAX_RESPONSE_BYTES:
            message = f"{call} body of {size} bytes exceeds the limit of {MAX_RESPONSE_BYTES}"
            return 413, json_error("RequestEntityTooLarge", message), None
        headers = {
            "Content-Type": request.headers.get("content-type") or "application/json",
            "X-Amzn-RequestId": request_id,
        }
        if call == "error":
            headers["X-Amz-Function-Error"] = "Unhandled"
        result = InvokeResult(
            kind="response" if call == "response" else "error",
            status=200,
            headers=headers,
            body=request.body,
            request_id=request_id,
            invocation_id=invocation.invocation_id,
        )
        return 202, _ACCEPTED, ("responded" if call == "response" else "errored", result)  # 4, 5

    # -- /init/error -------------------------------------------------------------

    def _on_init_error(self, connection: Connection, request: Request) -> None:
        error_type = request.headers.get("lambda-runtime-function-error-type")
        if self._initialized:  # 12
            report = InitErrorReport(
                error_type=error_type, headers=request.headers, body=request.body, status=403
            )
            self._history.add_init_error(report)
            message = "init is over: the runtime already polled /next"
            connection.answer(403, _JSON, json_error("InvalidStateTransition", message))
            return
        report = InitErrorReport(
            error_type=error_type, headers=request.headers, body=request.body, status=202
        )
        self._history.add_init_error(report)
        connection.answer(202, _JSON, _ACCEPTED)
        if self._init_error is None:
            self._init_error = report
        while self._queue:  # 2, 10
            invocation = self._queue.popleft()
            if not invocation.is_abandoned():
                self._finish(invocation, "init_failed", self._init_failed_result(invocation))
        while self._polls:  # other pollers of a runtime whose init failed
            self._on_next(self._polls.popleft())

    def _init_failed_result(self, invocation: Invocation) -> InvokeResult:
        report = self._init_error
        assert report is not None
        return InvokeResult(
            kind="init_error",
            status=502,
            headers={
                "Content-Type": report.headers.get("content-type") or "application/json",
                "X-Amzn-RequestId": invocation.request_id,
            },
            body=report.body,
            request_id=invocation.request_id,
            invocation_id=invocation.invocation_id,
        )

    def _exit_result(self, invocation: Invocation) -> InvokeResult:
        message = (
            f"RequestId: {invocation.request_id} Error: Runtime exited with error: "
            f"{self._exit_reason}"
        )
        body = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message})
        return InvokeResult(
            kind="exit",
            status=502,
            headers={"Content-Type": "application/json", "X-Amzn-RequestId": invocation.request_id},
            body=body.encode(),
            request_id=invocation.request_id,
            invocation_id=invocation.invocation_id,
        )

    # -- the invoke endpoint -------------------------------------------------------

    def _on_invoke(self, connection: Connection, request: Request) -> None:
        headers = request.headers
        try:
            client_context = _decode_client_context(headers.get("x-amz-client-context"))
        except ValueError as exc:
            error = json_error("InvalidRequestContentException", str(exc))
            connection.answer(400, _JSON, error)
            return
        content_type = headers.get("content-type", "")
        # curl -d sends a form content type; Lambda's Invoke API has only JSON payloads.
        if not content_type or content_type.startswith("application/x-www-form-urlencoded"):
            content_type = "application/json"
        invocation = Invocation(
            payload=request.body,
            content_type=content_type,
            client_context=client_context,
            cognito_identity=None,
            trace_id=headers.get("x-amzn-trace-id"),
            tenant_id=headers.get("x-amz-tenant-id"),
            on_done=connection.answer_invoke,
            is_abandoned=connection.is_closed,
            on_cancel=connection.abort,
        )
        self.submit(invocation)

    # -- bookkeeping ---------------------------------------------------------------

    def _finish(self, invocation: Invocation, state: State, result: InvokeResult) -> None:
        invocation.state = state
        self._in_flight.pop(invocation.request_id, None)
        self._finished[invocation.request_id] = (state, invocation.invocation_id)
        if self._max_finished is not None:
            order = self._finished_order
            order.append(invocation.request_id)
            if len(order) > self._max_finished:
                del self._finished[order.popleft()]
        invocation.on_done(result)

    def _wake_poll_waiters(self) -> None:
        waiting = len(self._polls)
        still_waiting = []
        for polls, waiter in self._poll_waiters:
            if waiting >= polls:
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(None)
            elif not waiter.cancelled():
                still_waiting.append((polls, waiter))
        self._poll_waiters = still_waiting

    def _record_delivery(
        self,
        request_id: str | None,
        status: int,
        headers: Iterable[tuple[str, str]],
        body_size: int,
        fault: NextFault | None,
    ) -> None:
        # Recorded before the answer is written, so a test that has read the
        # answer always finds its record.
        self._history.add_delivery(
            NextDelivery(
                request_id=request_id,
                status=status,
                headers=tuple(headers),
                body_size=body_size,
                fault=fault,
            )
        )

    def _record_answer(
        self,
        request: Request,
        request_id: str,
        call: str,
        status: int | None,
        fault: PostFault | None,
    ) -> None:
        invocation = self._in_flight.get(request_id)
        if invocation is not None:
            expected: str | None = invocation.invocation_id
        else:
            ended = self._finished.get(request_id)
            expected = ended[1] if ended is not None else None
        headers = request.headers
        self._history.add_answer(
            RuntimeAnswer(
                call="response" if call == "response" else "error",
                request_id=request_id,
                headers=headers,
                body=request.body,
                error_type=headers.get("lambda-runtime-function-error-type"),
                invocation_id=headers.get("lambda-runtime-invocation-id"),
                expected_invocation_id=expected,
                status=status,
                fault=fault,
            )
        )


def _uses_event(fault: NextFault) -> bool:
    """Whether a /next fault delivers (and so waits for) an invocation."""
    if isinstance(fault, NextStatus):
        return False
    return not (isinstance(fault, NextReset) and fault.during == "headers")


def _override(
    headers: list[tuple[str, str]], overrides: Mapping[str, str | None]
) -> list[tuple[str, str]]:
    """``headers`` with ``overrides`` applied by case-insensitive name; ``None`` removes.

    Overrides are sent as UTF-8: one code point per byte, like every header here.
    """
    by_name = {
        name.lower(): (wire_text(name), None if value is None else wire_text(value))
        for name, value in overrides.items()
    }
    result: list[tuple[str, str]] = []
    for name, value in headers:
        override = by_name.pop(name.lower(), None)
        if override is None:
            result.append((name, value))
        elif override[1] is not None:
            result.append((name, override[1]))
    result.extend((name, value) for name, value in by_name.values() if value is not None)
    return result


def _decode_client_context(value: str | None) -> str | None:
    """``X-Amz-Client-Context`` (base64 of a JSON object) as the JSON text /next sends."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError("X-Amz-Client-Context is not valid base64") from exc
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ValueError("X-Amz-Client-Context is not base64 of JSON") from exc
    if isinstance(parsed, dict):
        # The wire bytes as they came, one code point per byte (see _http).
        return raw.decode("latin-1")
    raise ValueError("X-Amz-Client-Context is not base64 of a JSON object")


def _not_found(connection: Connection, path: str) -> None:
    message = f"no such endpoint {path[:200]!r}"
    connection.answer(404, _JSON, json_error("NotFound", message))


def _wrong_method(connection: Connection, method: str, allowed: str) -> None:
    message = f"method {method[:20]} not allowed here; use {allowed}"
    headers = (*_JSON, ("Allow", allowed))
    connection.answer(405, headers, json_error("MethodNotAllowed", message))
