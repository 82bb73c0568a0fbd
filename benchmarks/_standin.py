"""A lean loopback stand-in for the Runtime API, for benchmarks only.

Why not :class:`lambda_bulkhead.emulator.Emulator` for the hot-path figures:
the emulator is a faithful platform (function timeouts, fault injection,
history records, invoke endpoint), and each ``/next`` + ``/response`` pair
costs it a few tens of microseconds of Python: header rendering per
delivery, a UUID pair and a trace id per submit, records behind a lock, a
future per invoke.  That time is serial with the runtime's own on one
connection, so it dilutes every ratio towards 1.0.  This stand-in answers
``/next`` from pre-rendered heads and ``/response``/``/error`` with one
constant, and records what a benchmark needs (monotonic ns):

* ``sent_ns[i]``: when the answer to ``/next`` carrying event ``i`` was about
  to be written (stamped before the ``send``: the runtime it wakes may run on
  this CPU first, which would delay a stamp taken after it);
* ``done_ns[i]``: when the whole ``/response`` or ``/error`` post for it was read;
* ``next_polls``: when each ``GET /next`` request arrived;
* ``extension_registers``: when each extension registered (the Extensions
  API's register is answered, its ``event/next`` left waiting, as Lambda does
  for an extension subscribed to no event).

``docs/benchmarks.md`` compares both stand-ins (``run.py`` measures them with a
null client every run).  Only what the runtimes under test send is parsed:
``Content-Length`` bodies and ``Expect: 100-continue``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import deque
from collections.abc import Callable

__all__ = ["KIND_ERROR", "KIND_LOST", "KIND_NONE", "KIND_RESPONSE", "StandIn"]

PREFIX = "/2018-06-01/runtime"
NEXT_PATH = f"{PREFIX}/invocation/next"
INVOCATION_PREFIX = f"{PREFIX}/invocation/"
INIT_ERROR_PATH = f"{PREFIX}/init/error"
ARN = "arn:aws:lambda:us-east-1:012345678912:function:bench"

KIND_NONE = 0
KIND_RESPONSE = 1
KIND_ERROR = 2
KIND_LOST = 3  # delivered to a runtime that died before answering

_ACCEPTED = b'{"status":"OK"}'
_ACCEPTED_ANSWER = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_ACCEPTED), _ACCEPTED)
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
EXTENSION_REGISTER_PATH = "/2020-01-01/extension/register"
EXTENSION_NEXT_PATH = "/2020-01-01/extension/event/next"
_REGISTERED = b'{"functionName":"bench","functionVersion":"$LATEST","handler":"trivial.handler"}'
_REGISTERED_ANSWER = (
    b"HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: 00000000-0000-0000-0000-000000000001\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_REGISTERED), _REGISTERED)
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue", re.IGNORECASE)
_SINGLE_WRITE_BYTES = 64 * 1024
_BUFFER_BYTES = 256 * 1024


def render_event(request_id: str, body_size: int, deadline_ms: int) -> bytes:
    """The head of a ``/next`` answer, with the headers the emulator sends."""
    trace = (
        f"Root=1-{deadline_ms // 1000:08x}-{uuid.uuid4().hex[:24]};"
        f"Parent={uuid.uuid4().hex[:16]};Sampled=0"
    )
    lines = [
        "HTTP/1.1 200 OK",
        "Content-Type: application/json",
        f"Lambda-Runtime-Aws-Request-Id: {request_id}",
        f"Lambda-Runtime-Deadline-Ms: {deadline_ms}",
        f"Lambda-Runtime-Invoked-Function-Arn: {ARN}",
        f"Lambda-Runtime-Trace-Id: {trace}",
        f"Lambda-Runtime-Invocation-Id: {uuid.uuid4()}",
        f"Content-Length: {body_size}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1")


class StandIn:
    """The server state: events, the queue of those not yet delivered, the records."""

    def __init__(
        self,
        payloads: list[bytes],
        *,
        deadline_s: float = 900.0,
        keep_bodies: bool = False,
        on_done: Callable[[int], None] | None = None,
    ) -> None:
        count = len(payloads)
        deadline_ms = int((time.time() + deadline_s) * 1000)
        self.request_ids = [str(uuid.uuid4()) for _ in range(count)]
        self.index = {rid: i for i, rid in enumerate(self.request_ids)}
        self.payloads = payloads
        self.heads = [
            render_event(rid, len(body), deadline_ms)
            for rid, body in zip(self.request_ids, payloads, strict=True)
        ]
        # Small events go out in one write (head and body pre-joined).
        self.whole = [
            head + body if len(body) < _SINGLE_WRITE_BYTES else None
            for head, body in zip(self.heads, payloads, strict=True)
        ]
        self.sent_ns = [0] * count
        self.done_ns = [0] * count
        self.kinds = bytearray(count)
        self.bodies: list[bytes | None] = [None] * count
        self.keep_bodies = keep_bodies
        self.next_polls: list[int] = []
        #: When each internal extension registered (its event/next is left waiting).
        self.extension_registers: list[int] = []
        self.init_errors: list[tuple[int, bytes]] = []
        self.queue: deque[int] = deque()
        self.waiting: deque[_Connection] = deque()
        self.connections: set[_Connection] = set()
        self.done_count = 0
        self.on_done = on_done
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.abort()

    # -- events ----------------------------------------------------------------

    def enqueue(self, indices: range | list[int]) -> None:
        self.queue.extend(indices)
        while self.waiting and self.queue:
            self._deliver(self.waiting.popleft(), self.queue.popleft())

    def _deliver(self, connection: _Connection, index: int) -> None:
        # Stamped before the write: the send wakes the runtime, which may then
        # run on this CPU before this process gets to stamp anything.
        self.sent_ns[index] = time.monotonic_ns()
        whole = self.whole[index]
        if whole is not None:
            connection.write(whole)
        else:
            connection.write(self.heads[index])
            connection.write(self.payloads[index])
        connection.in_flight = index

    def _finish(self, index: int, kind: int, now: int, body: bytes | None) -> None:
        if self.kinds[index]:
            return  # answered twice: the first answer stands
        self.kinds[index] = kind
        self.done_ns[index] = now
        if self.keep_bodies:
            self.bodies[index] = body
        self.done_count += 1
        if self.on_done is not None:
            self.on_done(index)

    # -- requests --------------------------------------------------------------

    def handle(self, connection: _Connection, method: bytes, path: str, body: bytes) -> None:
        if method == b"GET" and path == NEXT_PATH:
            self.next_polls.append(time.monotonic_ns())
            if self.queue:
                self._deliver(connection, self.queue.popleft())
            else:
                connection.polling = True
                self.waiting.append(connection)
            return
        if method == b"POST" and path.startswith(INVOCATION_PREFIX):
            now = time.monotonic_ns()
            request_id, _, call = path[len(INVOCATION_PREFIX):].rpartition("/")
            index = self.index.get(request_id)
            connection.write(_ACCEPTED_ANSWER)
            if index is not None:
                if connection.in_flight == index:
                    connection.in_flight = None
                self._finish(index, KIND_ERROR if call == "error" else KIND_RESPONSE, now, body)
            return
        if method == b"POST" and path == EXTENSION_REGISTER_PATH:
            self.extension_registers.append(time.monotonic_ns())
            connection.write(_REGISTERED_ANSWER)
            return
        if method == b"GET" and path == EXTENSION_NEXT_PATH:
            return  # left waiting: an extension subscribed to no event gets none
        if method == b"POST" and path == INIT_ERROR_PATH:
            self.init_errors.append((time.monotonic_ns(), body))
            connection.write(_ACCEPTED_ANSWER)
            return
        connection.write(_NOT_FOUND)

    def lost(self, connection: _Connection) -> None:
        """A connection closed: an event it held unanswered is lost (its runtime died)."""
        self.connections.discard(connection)
        if connection.polling:
            with contextlib.suppress(ValueError):
                self.waiting.remove(connection)
        index = connection.in_flight
        if index is not None and not self.kinds[index]:
            self._finish(index, KIND_LOST, time.monotonic_ns(), None)


class _Connection(asyncio.BufferedProtocol):
    """One runtime connection: sequential requests, parsed from one growing buffer."""

    def __init__(self, server: StandIn) -> None:
        self.server = server
        self.buffer = bytearray(_BUFFER_BYTES)
        self.view = memoryview(self.buffer)
        self.start = 0
        self.end = 0
        self.transport: asyncio.Transport | None = None
        self.polling = False
        self.in_flight: int | None = None
        self.continued = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.lost(self)

    def write(self, data: bytes) -> None:
        self.polling = False
        if self.transport is not None:
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.end == len(self.buffer):
            if self.start:
                size = self.end - self.start
                self.view.release()
                self.buffer[:size] = self.buffer[self.start:self.end]
                self.start, self.end = 0, size
            else:
                self.view.release()
                self.buffer.extend(bytes(len(self.buffer)))
            self.view = memoryview(self.buffer)
        return self.view[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        buffer = self.buffer
        while self.start < self.end and not self.polling:
            head_end = buffer.find(b"\r\n\r\n", self.start, self.end)
            if head_end < 0:
                return
            head = bytes(buffer[self.start:head_end])
            match = _CONTENT_LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            body_start = head_end + 4
            if self.end - body_start < length:
                if not self.continued and _EXPECT_CONTINUE.search(head):
                    self.continued = True
                    self.write(_CONTINUE)
                return
            self.continued = False
            body = bytes(buffer[body_start:body_start + length]) if length else b""
            self.start = body_start + length
            if self.start == self.end:
                self.start = self.end = 0
            line_end = head.find(b"\r\n")
            method, _, rest = (head if line_end < 0 else head[:line_end]).partition(b" ")
            path = rest.partition(b" ")[0].decode("latin-1")
            self.server.handle(self, method, path, body)
