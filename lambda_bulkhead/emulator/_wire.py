"""One client connection, parsed and answered by h11 (the emulator's transport edge).

h11 owns the HTTP/1.1 grammar: request line and headers, ``Content-Length``
and chunked bodies with trailers, keep-alive, pipelining, ``Expect:
100-continue``.  On top of it the emulator adds its own limits (a head over
64 KiB is 431, a declared body over :data:`MAX_BODY_BYTES` is 413, an HTTP
version other than 1.0/1.1 is 505) and a JSON error body for every refusal.

A route receives a request as a :class:`RequestHead` and then gives the
connection a :class:`BodySink` for its body: the usual sink collects the body
(:class:`BufferedBody`), a streaming ``/response`` consumes it chunk by chunk.

Answers that h11 would refuse to write (a fault that lies about its
``Content-Length``, a reset mid-header) are raw bytes written past h11, after
which the connection is closed: see :meth:`Connection.write_raw_then_close`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol, cast

import h11

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "BodySink",
    "BufferedBody",
    "Connection",
    "Request",
    "RequestHead",
    "json_error",
    "raw_response",
    "wire_text",
]

MAX_HEAD_BYTES = 64 * 1024
"""Request line plus header fields; a longer head is answered 431."""

MAX_BODY_BYTES = 32 * 1024 * 1024
"""A buffered request body; five times Lambda's 6 MB payload limit, so that the
Runtime API's own 413 can be answered after reading a body that is just over.
A streamed ``/response`` is not buffered and has its own limit."""

_READ_BUFFER_BYTES = 64 * 1024
_JSON = (("Content-Type", "application/json"),)

_REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    505: "HTTP Version Not Supported",
}


class RequestHead(NamedTuple):
    """A request's line and headers: names lower-cased, values as wire strings."""

    method: str
    path: str
    headers: dict[str, str]


class Request(NamedTuple):
    """A complete request with its body (and the trailers of a chunked one)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    trailers: dict[str, str]


class BodySink(Protocol):
    """Where a request's body goes, as h11 hands it over."""

    def data(self, data: bytes, chunk_end: bool) -> None:
        """Body bytes; ``chunk_end`` is true on the last piece of an HTTP chunk."""

    def end(self, trailers: dict[str, str]) -> None:
        """The body is complete; ``trailers`` are a chunked body's trailer fields."""

    def lost(self) -> None:
        """The connection closed before the body was complete."""


class BufferedBody:
    """Collects a body of at most :data:`MAX_BODY_BYTES`, then calls ``on_request``."""

    __slots__ = ("_connection", "_head", "_on_request", "_parts", "_size")

    def __init__(
        self, connection: Connection, head: RequestHead, on_request: Callable[[Request], None]
    ) -> None:
        self._connection = connection
        self._head = head
        self._on_request = on_request
        self._parts: list[bytes] = []
        self._size = 0

    def data(self, data: bytes, chunk_end: bool) -> None:
        self._size += len(data)
        if self._size > MAX_BODY_BYTES:
            self._parts.clear()
            message = f"body over {MAX_BODY_BYTES} bytes"
            self._connection.refuse(413, "RequestEntityTooLarge", message)
        else:
            self._parts.append(data)

    def end(self, trailers: dict[str, str]) -> None:
        body = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts = []
        head = self._head
        self._on_request(Request(head.method, head.path, head.headers, body, trailers))

    def lost(self) -> None:
        self._parts = []


def _text_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    # latin-1 maps every byte to one code point, so header values keep their
    # exact wire bytes when they are written out again.  h11 lower-cases names.
    result: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        result[name] = f"{result[name]}, {value}" if name in result else value
    return result


def _wire_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


class Connection(asyncio.BufferedProtocol):
    """One client connection: h11 parses its requests; answers go one at a time.

    ``on_head`` (the router) is called with each request's head and returns the
    sink for its body.  While an answer is pending (a ``/next`` long-poll, an
    invoke waiting for its result) later requests wait inside h11.

    A BufferedProtocol, so the loop reads into one buffer per connection
    instead of allocating a fresh one per read.
    """

    def __init__(self, on_head: Callable[[Connection, RequestHead], BodySink],
                 on_lost: Callable[[Connection], None]) -> None:
        self._on_head = on_head
        self._on_lost = on_lost
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._read_buffer = memoryview(bytearray(_READ_BUFFER_BYTES))
        self._read_size = _READ_BUFFER_BYTES
        self._read_pause_s = 0.0
        self._transport: asyncio.Transport | None = None
        self._sink: BodySink | None = None
        self._pumping = False
        self._paused_bytes = 0  # received while a request waits for its answer
        self._write_blocked = False
        self.on_writable: Callable[[bool], None] | None = None
        self.closed = False

    # -- asyncio callbacks --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer[: self._read_size]

    def buffer_updated(self, nbytes: int) -> None:
        self._h11.receive_data(bytes(self._read_buffer[:nbytes]))
        if self._h11.their_state is h11.DONE:
            self._paused_bytes += nbytes
            if self._paused_bytes > MAX_HEAD_BYTES + MAX_BODY_BYTES:
                # A peer that keeps sending while its request waits is not a runtime.
                self.abort()
                return
        self._pump()
        if self._read_pause_s and self._transport is not None and not self.closed:
            # The slow-reader mode: read at most read_size bytes per pause.
            self._transport.pause_reading()
            asyncio.get_running_loop().call_later(self._read_pause_s, self._resume_reading)

    def eof_received(self) -> bool | None:
        self._h11.receive_data(b"")
        self._pump()
        return None  # close the transport: a half-closed peer gets no more answers

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.on_writable is not None:
            self.on_writable(True)  # nobody left to wait for: stop holding back the source
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.lost()
        self._on_lost(self)

    def pause_writing(self) -> None:
        self._write_blocked = True
        if self.on_writable is not None:
            self.on_writable(False)

    def resume_writing(self) -> None:
        self._write_blocked = False
        if self.on_writable is not None:
            self.on_writable(True)

    # -- reading ----------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """Whether the peer is keeping up with what is written (no write back-pressure)."""
        return not self._write_blocked

    def read_slowly(self, read_size: int, bytes_per_second: float) -> None:
        """Read at most ``read_size`` bytes at a time, at about ``bytes_per_second``."""
        self._read_size = max(1, min(read_size, _READ_BUFFER_BYTES))
        self._read_pause_s = self._read_size / bytes_per_second
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is not None:
            # A small receive buffer, so that the sender feels the slowness at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, max(self._read_size, 4096))

    def pause_reading(self, paused: bool) -> None:
        """Stop or restart reading (back-pressure from a slow consumer)."""
        if self._transport is None or self.closed:
            return
        if paused:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self.closed:
                try:
                    event = self._h11.next_event()
                except h11.RemoteProtocolError as exc:
                    self._protocol_error(exc)
                    return
                if event is h11.NEED_DATA:
                    if self._h11.they_are_waiting_for_100_continue:
                        self._h11_send(h11.InformationalResponse(
                            status_code=100, headers=[], reason=b"Continue"))
                    return
                if event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    self._on_request_head(event)
                elif isinstance(event, h11.Data):
                    if self._sink is not None:
                        self._sink.data(bytes(event.data), event.chunk_end)
                elif isinstance(event, h11.EndOfMessage):
                    sink, self._sink = self._sink, None
                    self._read_size, self._read_pause_s = _READ_BUFFER_BYTES, 0.0
                    if sink is not None:
                        sink.end(_text_headers(event.headers))
                else:  # ConnectionClosed
                    return
        finally:
            self._pumping = False

    def _on_request_head(self, event: h11.Request) -> None:
        if event.http_version not in (b"1.1", b"1.0"):
            version = event.http_version.decode("latin-1")[:20]
            self.refuse(505, "UnsupportedVersion", f"HTTP version {version!r} not supported")
            return
        # h11 bounds only a head that arrives in pieces; one read can bring a whole large head.
        if sum(len(name) + len(value) + 4 for name, value in event.headers) > MAX_HEAD_BYTES:
            self.refuse(431, "HeadersTooLarge", "request head over 64 KiB")
            return
        headers = _text_headers(event.headers)
        length = headers.get("content-length")
        if length is not None and int(length) > MAX_BODY_BYTES:
            self.refuse(413, "RequestEntityTooLarge", f"body over {MAX_BODY_BYTES} bytes")
            return
        target = event.target.decode("latin-1")
        head = RequestHead(event.method.decode("latin-1"), target.partition("?")[0], headers)
        self._sink = self._on_head(self, head)

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint
        error_type = {431: "HeadersTooLarge", 501: "NotImplemented"}.get(status, "MalformedRequest")
        self.refuse(status, error_type, str(exc) or "malformed request")

    # -- writing --------------------------------------------------------------------

    def _h11_send(self, event: h11.Event) -> None:
        if self._transport is None or self.closed:
            return
        data = self._h11.send(event)
        if data:
            self._transport.write(data)

    def refuse(self, status: int, error_type: str, message: str) -> None:
        """Answer with a JSON error and close: the byte stream is not to be trusted."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.lost()  # e.g. a streamed body cut short: its owner must know
        self.answer(status, _JSON, json_error(error_type, message), close=True)

    def answer(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes, *, close: bool = False
    ) -> None:
        """Answer the current request, then serve the next one (or close)."""
        if self.closed or self._transport is None:
            return
        # An answer before the request's body was read leaves the stream out of step.
        close = close or self._h11.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)
        fields = [*headers, ("Content-Length", str(len(body)))]
        if close:
            fields.append(("Connection", "close"))
        connection = self._h11
        try:
            # One write, so one send() system call, for head, body and end.
            data = connection.send(h11.Response(status_code=status, headers=_wire_headers(fields),
                                                reason=_REASONS.get(status, "Unknown").encode()))
            if body:
                data = (data or b"") + (connection.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (connection.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            self.abort()
            return
        self._transport.write(data)
        self._answered()

    def start_stream(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Begin a chunked answer (declaring the error trailers it may end with)."""
        fields = [*headers, ("Transfer-Encoding", "chunked"),
                  ("Trailer", "Lambda-Runtime-Function-Error-Type, "
                              "Lambda-Runtime-Function-Error-Body")]
        self._h11_send(h11.Response(status_code=status, headers=_wire_headers(fields),
                                    reason=_REASONS.get(status, "Unknown").encode()))

    def send_chunk(self, data: bytes) -> None:
        """One chunk of a streamed answer."""
        if data:
            self._h11_send(h11.Data(data=data))

    def end_stream(self, trailers: Iterable[tuple[str, str]]) -> None:
        """End a streamed answer with ``trailers``; then serve the next request."""
        if self.closed:
            return
        self._h11_send(h11.EndOfMessage(headers=_wire_headers(trailers)))
        self._answered()

    def _answered(self) -> None:
        connection = self._h11
        if connection.our_state is h11.MUST_CLOSE or connection.their_state in (
            h11.MUST_CLOSE, h11.CLOSED, h11.ERROR
        ):
            self.close()
        elif connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
            self._paused_bytes = 0
            self._pump()

    # -- ending -------------------------------------------------------------------------

    def is_closed(self) -> bool:
        """Whether the peer can no longer get an answer here."""
        return self.closed

    def close(self) -> None:
        """Close cleanly (FIN) once what was written is sent."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def write_raw_then_close(self, data: bytes) -> None:
        """Send ``data`` past h11 (a deliberately broken answer), then close cleanly."""
        if self.closed or self._transport is None:
            return
        self._transport.write(data)
        self.close()

    def write_raw_then_reset(self, data: bytes) -> None:
        """Send ``data`` past h11, then reset the connection (RST), as a crashed peer would."""
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


def wire_text(text: str) -> str:
    """``text`` as a header value on the wire: its UTF-8 bytes, one code point per byte."""
    return text.encode("utf-8").decode("latin-1")


def json_error(error_type: str, message: str) -> bytes:
    """The Runtime API's error body: ``{"errorType": ..., "errorMessage": ...}``."""
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def raw_response(
    status: int, headers: Iterable[tuple[str, str]], body: bytes, *, declared_length: int
) -> bytes:
    """A response h11 would not write: ``declared_length`` may lie about the body (faults)."""
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    head.extend(f"{name}: {value}" for name, value in headers)
    head.append(f"Content-Length: {declared_length}")
    head.append("\r\n")
    return "\r\n".join(head).encode("latin-1") + body
