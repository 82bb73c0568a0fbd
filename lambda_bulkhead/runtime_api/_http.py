"""A minimal HTTP/1.1 client for the Runtime API over one keep-alive socket.

The Runtime API is a loopback HTTP/1.1 server answering small, well-formed
messages; a general client (httpx) spends most of its per-request time on
generality this conversation never uses (see ``docs/benchmarks.md``).  This
module is the default transport: :func:`encode_head` and :class:`ResponseParser`
are pure (bytes in, values out); :class:`SocketTransport` is the thin I/O edge.

Supported answers: ``Content-Length`` bodies, ``Transfer-Encoding: chunked``
bodies, and bodies delimited by the server closing the connection.

A streamed ``/response`` (:meth:`SocketTransport.open_stream`) is sent as
HTTP/1.1 chunks, each written as it comes (from memory, or moved from a pipe
to the socket with ``os.splice``), and ended by the last chunk with optional
trailers (:func:`chunk_head`, :func:`last_chunk`); its writes wait for room in
the socket a tick at a time, calling back between ticks, so that the caller
can watch a deadline while a slow reader holds the stream back.
"""

from __future__ import annotations

import _socket
import os
import select
import struct
import time

from lambda_bulkhead._errors import TransportError
from lambda_bulkhead.process._writes import drop_written
from lambda_bulkhead.runtime_api._protocol import NEXT_REQUEST, Request, Response

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    _Into = TypeVar("_Into")
    _Got = TypeVar("_Got")

__all__ = [
    "MAX_BODY_BYTES",
    "ChunkedUpload",
    "ProtocolViolation",
    "ResponseParser",
    "SocketTransport",
    "chunk_head",
    "encode_head",
    "last_chunk",
]

#: Largest answer body accepted; ``/next`` bodies are at most 6 MB.
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
# A larger receive costs more than the receive itself (Python allocates the
# whole buffer first, past malloc's mmap threshold): large bodies are received
# into one buffer of their exact size instead.
_RECV_BYTES = 64 * 1024
_COALESCE_BYTES = 64 * 1024
#: The send buffer of a connection that streamed an answer (the kernel doubles it).
STREAM_SEND_BUFFER = 1024 * 1024


class ProtocolViolation(Exception):
    """The server's bytes are not a well-formed HTTP/1.1 answer."""


def encode_head(request: Request, host: str) -> bytes:
    """The request line and headers for ``request`` (the body is sent after it)."""
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in request.headers)
    chunked = ("Transfer-Encoding", "chunked") in request.headers
    if not chunked and (request.method != "GET" or request.body):
        lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk_head(size: int) -> bytes:
    """What precedes a chunk of ``size`` bytes (``size`` > 0; ``\r\n`` follows it)."""
    return b"%x\r\n" % size


def last_chunk(trailers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The end of a chunked body: the zero-size chunk, the trailers, an empty line."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in trailers)
    return b"0\r\n" + lines.encode("latin-1") + b"\r\n"


class ResponseParser:
    """Incremental parser of one HTTP/1.1 answer: :meth:`feed` bytes until it
    returns a :class:`Response`, and call :meth:`feed_eof` when the peer closes.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._length: int | None = None
        self._chunked = False
        self._chunks: list[bytes] = []
        self.keep_alive = True
        #: Bytes received after this answer's end: the start of the next answer
        #: on a connection whose requests were sent back to back.
        self.leftover = b""

    @property
    def headers(self) -> dict[str, str] | None:
        """The answer's headers once they are complete (lower-case names)."""
        return self._headers

    @property
    def started(self) -> bool:
        """Whether any byte of the answer arrived (a retry is then unsafe)."""
        return bool(self._buffer) or self._headers is not None

    def body_remaining(self) -> int:
        """Bytes of a ``Content-Length`` body still to come (0 when not known yet)."""
        if self._headers is None or self._length is None:
            return 0
        return max(0, self._length - len(self._buffer))

    @property
    def partial_body(self) -> bytes:
        """The body bytes received so far (for a caller reading the rest itself)."""
        return bytes(self._buffer)

    def complete(self, body: bytes) -> Response:
        """The answer, its whole ``Content-Length`` body read by the caller."""
        if self._length is None or len(body) != self._length:
            raise ProtocolViolation("body does not match its Content-Length")
        return self._finish(body)

    def feed(self, data: bytes) -> Response | None:
        if self._headers is None:
            return self._feed_head(data)
        self._buffer += data
        return self._after_head()

    def _feed_head(self, data: bytes) -> Response | None:
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD_BYTES:
                raise ProtocolViolation("status line and headers too long")
            self._buffer += data
            return None
        self._parse_head(data[:end].decode("latin-1"))
        rest = data[end + 4 :]
        length = self._length
        if length is not None and not self._chunked and len(rest) >= length:
            # The common case, a whole answer in one read: no buffer at all.
            self.leftover = rest[length:]
            return self._finish(rest[:length])
        self._buffer += rest
        return self._after_head()

    def _after_head(self) -> Response | None:
        if self._chunked:
            return self._parse_chunks()
        if self._length is not None and len(self._buffer) >= self._length:
            self.leftover = bytes(self._buffer[self._length :])
            return self._finish(bytes(self._buffer[: self._length]))
        return None

    def feed_eof(self) -> Response:
        """The peer closed: the answer ends here, or was cut short."""
        if self._headers is None:
            raise ProtocolViolation("connection closed before a complete status line and headers")
        if self._chunked or self._length is not None:
            raise ProtocolViolation("connection closed before the end of the body")
        self.keep_alive = False
        return self._finish(bytes(self._buffer))

    def _parse_head(self, head: str) -> None:
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status_text = rest[:3]
        if not version.startswith("HTTP/1.") or not status_text.isdigit():
            raise ProtocolViolation(f"bad status line {lines[0][:80]!r}")
        self._status = int(status_text)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolViolation(f"bad header line {line[:80]!r}")
            headers[name.lower()] = value.strip()
        self._headers = headers
        connection = headers.get("connection", "").lower()
        self.keep_alive = version == "HTTP/1.1" and connection != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            text = headers["content-length"]
            if not text.isdigit():
                raise ProtocolViolation(f"bad Content-Length {text[:40]!r}")
            self._length = int(text)
            if self._length > MAX_BODY_BYTES:
                raise ProtocolViolation(f"body of {self._length} bytes is over {MAX_BODY_BYTES}")
        elif self._status in (204, 304) or 100 <= self._status < 200:
            self._length = 0

    def _parse_chunks(self) -> Response | None:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return None
            size_text = self._buffer[:line_end].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolViolation(f"bad chunk size {bytes(size_text[:20])!r}") from None
            if size == 0:
                # The last chunk is followed by optional trailers and an empty line.
                end = self._buffer.find(b"\r\n\r\n", line_end)
                if end < 0:
                    return None
                self.leftover = bytes(self._buffer[end + 4 :])
                return self._finish(b"".join(self._chunks))
            if len(self._buffer) < line_end + 2 + size + 2:
                return None
            start = line_end + 2
            self._chunks.append(bytes(self._buffer[start : start + size]))
            if sum(map(len, self._chunks)) > MAX_BODY_BYTES:
                raise ProtocolViolation(f"chunked body over {MAX_BODY_BYTES} bytes")
            del self._buffer[: start + size + 2]

    def _finish(self, body: bytes) -> Response:
        assert self._headers is not None
        return Response(self._status, self._headers, body)


class SocketTransport:
    """Sends :class:`Request` values over one keep-alive TCP connection.

    A request on a reused connection that fails before any answer byte arrives
    (the server closed an idle keep-alive connection) is sent once more on a new
    connection; any other failure is a :class:`TransportError`.

    :meth:`send_pair` sends two requests back to back (HTTP/1.1 pipelining) and
    returns the first's answer; :meth:`receive_pending` then reads the second's.
    The loop uses it to post a response and poll ``/next`` in one write, and
    does its own bookkeeping while the server answers (``after_send``).

    The socket stays in blocking mode: a Python-level timeout would cost a
    ``poll`` before every send and receive and an ``ioctl`` at each change.  A
    call's timeout is the kernel's instead (``SO_RCVTIMEO``/``SO_SNDTIMEO``, set
    when it changes, so once in practice); a receive without a timeout (the
    ``/next`` long poll) simply resumes when the kernel's expires.
    """

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._host_header = f"{host}:{port}"
        self._next_head = encode_head(NEXT_REQUEST, self._host_header)  # sent per invocation
        self._sock: _socket.socket | None = None
        #: The timeout the connection's kernel timeouts are set to (None: none).
        self._kernel_timeout: float | None = None
        self._leftover = b""
        self._pending: Request | None = None
        self._pending_timeout: float | None = None
        self._after_send: Callable[[], object] | None = None

    def close(self, *, reset: bool = False) -> None:
        """Close the connection; ``reset``: with a TCP reset, dropping what its
        send buffer still holds (a stream given up: the peer learns at once
        that it ends here, instead of reading the rest first)."""
        if self._sock is not None:
            if reset:
                self._sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, _LINGER_RESET)
            self._sock.close()
            self._sock = None
            self._kernel_timeout = None
        self._leftover = b""
        self._pending = None
        self._pending_timeout = None

    def clone(self) -> SocketTransport:
        """Another transport to the same endpoint, on its own connection."""
        return SocketTransport(*self._address)

    def request(self, request: Request, *, timeout: float | None = None) -> Response:
        return self._send_and_receive((request,), timeout)

    def send_pair(
        self,
        first: Request,
        second: Request,
        *,
        timeout: float | None,
        after_send: Callable[[], object] | None = None,
    ) -> Response:
        """Send both requests at once; the first's answer (the second's is pending).

        ``after_send`` is called once, as soon as both are written (before the
        first's answer is waited for), unless the write fails for good.
        """
        self._after_send = after_send
        try:
            answer = self._send_and_receive((first, second), timeout)
        finally:
            self._after_send = None
        self._pending = second
        self._pending_timeout = None
        return answer

    def send(self, request: Request, *, timeout: float) -> None:
        """Write ``request`` without waiting for its answer, which
        :meth:`receive_pending` reads (within ``timeout``)."""
        try:
            self._write((request,), timeout)
        except _Retryable as exc:
            self.close()
            raise TransportError(request.call, str(exc.__cause__ or exc)) from exc
        self._pending = request
        self._pending_timeout = timeout

    def receive_pending(self) -> Response:
        """The answer to the second request of :meth:`send_pair` (waits without
        limit), or to the request :meth:`send` wrote (within its timeout)."""
        request, self._pending = self._pending, None
        timeout, self._pending_timeout = self._pending_timeout, None
        if request is None:
            raise TransportError("next", "no request is waiting for its answer")
        if self._sock is None:  # the server closed after the first answer: ask again
            return self.request(request, timeout=timeout)
        try:
            return self._receive(self._sock, request, timeout)
        except _Retryable as exc:
            self.close()
            raise TransportError(request.call, str(exc.__cause__ or exc)) from exc

    def open_stream(
        self, request: Request, *, tick: float, stall_limit: float | None
    ) -> ChunkedUpload:
        """Start ``request`` (a :func:`~lambda_bulkhead.runtime_api._protocol.stream_request`
        head) on this connection; its body goes through the :class:`ChunkedUpload`.

        The head is sent with the first chunk.  A reused connection the server
        has closed meanwhile (it reads as readable: a keep-alive server sends
        nothing unasked) is replaced first, since a stream cannot be sent twice.
        """
        sock = self._sock
        if sock is not None and _reads_as_closed(sock):
            self.close()
            sock = None
        sock = sock or self._connect()
        # A bounded send buffer (the kernel's grows to 4 MiB): what a slow reader
        # has not taken yet stays little, so the handler's yield follows the
        # reader closely and trailers after a failure are not queued behind MiBs.
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, STREAM_SEND_BUFFER)
        _set_kernel_timeout(sock, tick)
        self._kernel_timeout = tick
        head = encode_head(request, self._host_header)
        return ChunkedUpload(self, sock, head, request, stall_limit)

    def _send_and_receive(self, requests: tuple[Request, ...], timeout: float | None) -> Response:
        reused = self._sock is not None
        try:
            return self._exchange(requests, timeout)
        except _Retryable as exc:
            self.close()
            if not reused:
                raise TransportError(requests[0].call, str(exc.__cause__ or exc)) from exc
        try:
            return self._exchange(requests, timeout)
        except _Retryable as exc:
            self.close()
            raise TransportError(requests[0].call, str(exc.__cause__ or exc)) from exc

    def _connect(self) -> _socket.socket:
        try:
            sock = _open_connection(*self._address)
        except OSError as exc:
            raise TransportError("connect", f"{self._host_header}: {exc}") from exc
        sock.settimeout(None)  # blocking, whatever socket.setdefaulttimeout() says
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock

    def _exchange(self, requests: tuple[Request, ...], timeout: float | None) -> Response:
        sock = self._write(requests, timeout)
        after_send, self._after_send = self._after_send, None
        if after_send is not None:
            after_send()
        return self._receive(sock, requests[0], timeout)

    def _write(self, requests: tuple[Request, ...], timeout: float | None) -> _socket.socket:
        sock = self._sock or self._connect()
        if timeout is not None and timeout != self._kernel_timeout:
            _set_kernel_timeout(sock, timeout)
            self._kernel_timeout = timeout
        parts: list[bytes] = []
        for request in requests:
            parts.append(
                self._next_head if request is NEXT_REQUEST
                else encode_head(request, self._host_header)
            )
            if request.body:
                parts.append(request.body)
        try:
            if sum(map(len, parts)) < _COALESCE_BYTES:
                sock.sendall(b"".join(parts))
            else:
                # Large bodies: several sends beat copying megabytes into one buffer.
                for part in parts:
                    sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _Retryable from exc
        except BlockingIOError as exc:  # the kernel's send timeout
            self.close()
            raise TransportError(requests[0].call, f"no answer within {timeout} s") from exc
        except OSError as exc:
            self.close()
            raise TransportError(requests[0].call, str(exc)) from exc
        return sock

    def _receive(
        self, sock: _socket.socket, request: Request, timeout: float | None
    ) -> Response:
        parser = ResponseParser()
        leftover, self._leftover = self._leftover, b""
        try:
            response = parser.feed(leftover) if leftover else None
            while response is None:
                remaining = parser.body_remaining()
                if remaining > _RECV_BYTES:
                    body = _recv_rest(sock, parser.partial_body, remaining, timeout)
                    response = parser.complete(body)
                    break
                data = _receive_some(sock.recv, _RECV_BYTES, timeout)
                if not data:
                    if not parser.started:
                        raise _Retryable from ConnectionResetError("connection closed by server")
                    response = parser.feed_eof()
                    break
                response = parser.feed(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            if not parser.started:
                raise _Retryable from exc
            self.close()
            raise TransportError(request.call, str(exc), parser.headers) from exc
        except TimeoutError as exc:
            self.close()
            reason = f"no answer within {timeout} s"
            raise TransportError(request.call, reason, parser.headers) from exc
        except (ProtocolViolation, OSError) as exc:
            self.close()
            raise TransportError(request.call, str(exc), parser.headers) from exc
        self._leftover = parser.leftover
        if not parser.keep_alive:
            self.close()
        return response


def _receive_some(receive: Callable[[_Into], _Got], into: _Into, timeout: float | None) -> _Got:
    """``receive(into)``, waiting for as long as ``timeout`` says: without one, a
    kernel receive timeout (``SO_RCVTIMEO``, set for an earlier call) is waited
    through; with one, it is the call's :class:`TimeoutError`."""
    while True:
        try:
            return receive(into)
        except BlockingIOError:
            if timeout is not None:
                raise TimeoutError from None


def _set_kernel_timeout(sock: _socket.socket, timeout: float) -> None:
    seconds = int(timeout)
    value = struct.pack("@ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, value)
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, value)


def _open_connection(host: str, port: int) -> _socket.socket:
    """A TCP connection, as ``socket.create_connection`` makes it.

    Made with ``_socket``: importing :mod:`socket` (with :mod:`enum` and
    :mod:`selectors`) costs the cold start ~5 ms.  A literal address (Lambda's
    is ``127.0.0.1``) skips the resolver, whose IDNA codec costs ~2 ms more.
    """
    addresses: list[tuple[int, tuple[str, int]]] = []
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except OSError:
            continue
        addresses.append((family, (host, port)))
        break
    else:
        for family, _, _, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
            addresses.append((family, (str(address[0]), int(address[1]))))
    error: OSError = OSError(f"no address for {host}")
    for family, address in addresses:
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


def _recv_rest(sock: _socket.socket, start: bytes, rest: int, timeout: float | None) -> bytes:
    """``start`` and the next ``rest`` bytes of ``sock``, received into one buffer."""
    buffer = bytearray(len(start) + rest)
    buffer[: len(start)] = start
    view = memoryview(buffer)
    received = len(start)
    while received < len(buffer):
        got = _receive_some(sock.recv_into, view[received:], timeout)
        if not got:
            raise ProtocolViolation("connection closed before the end of the body")
        received += got
    return bytes(buffer)


def _reads_as_closed(sock: _socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class ChunkedUpload:
    """One streamed request body, written chunk by chunk on its transport's socket.

    :meth:`send` writes a chunk (the request head first, with the first one),
    :meth:`send_from_pipe` one that waits in a pipe; while the socket has no
    room, ``blocked`` is called every tick, or sooner (it may raise: the
    unsent rest is kept and sent by :meth:`finish`).  A server that takes no
    byte for ``stall_limit`` seconds has failed.  :meth:`finish` ends the body,
    with trailers if given, and returns the server's answer.  Any failure
    closes the connection and raises :class:`TransportError`.
    """

    def __init__(
        self,
        transport: SocketTransport,
        sock: _socket.socket,
        head: bytes,
        request: Request,
        stall_limit: float | None,
    ) -> None:
        self._transport = transport
        self._stall_limit = stall_limit
        self._sock = sock
        self._request = request
        self._unsent: list[memoryview] = [memoryview(head)]
        #: Whether any byte of the request was written.
        self.started = False
        #: Whether all of it was, its end included (:meth:`finish`).
        self.written = False

    def send(self, chunk: bytes, blocked: Callable[[], object] | None = None) -> None:
        self._unsent += [memoryview(chunk_head(len(chunk))), memoryview(chunk), _CRLF]
        self._write(blocked)

    def send_from_pipe(
        self, fd: int, size: int, blocked: Callable[[], object] | None = None
    ) -> None:
        """Send as one chunk the next ``size`` bytes of the non-blocking pipe ``fd``,
        which holds them all already: moved pipe to socket by the kernel
        (``os.splice``), they never enter this process.  Should ``blocked`` raise
        (or the connection fail), what is left of them is read out of the pipe
        first, so that the chunk stays whole for :meth:`finish` to complete
        whatever happens to the pipe afterwards (at most a pipe's capacity)."""
        self._unsent.append(memoryview(chunk_head(size)))
        piped = _Piped(fd, size)
        try:
            # MSG_MORE: the head waits for the chunk's first bytes, not its own packet.
            self._write(blocked, _socket.MSG_MORE, piped)
        finally:
            if piped.left:
                self._unsent.append(memoryview(_read_exactly(fd, piped.left)))
            self._unsent.append(_CRLF)
        self._write(blocked)

    def finish(
        self, trailers: tuple[tuple[str, str], ...] = (), *, timeout: float | None
    ) -> Response:
        """End the body and read the answer (within ``timeout`` s per wait).

        The body's end is written a tick at a time as every chunk is (the
        stall limit applies); :attr:`written` says once it all left."""
        sock = self._sock
        self._unsent.append(memoryview(last_chunk(trailers)))
        self._write(None)
        self.written = True
        if timeout is not None:
            _set_kernel_timeout(sock, timeout)
            self._transport._kernel_timeout = timeout
        try:
            return self._transport._receive(sock, self._request, timeout)
        except _Retryable as exc:  # closed with no answer: a stream cannot be sent again
            self._transport.close()
            raise TransportError(self._request.call, str(exc.__cause__ or exc)) from exc

    def _write(
        self, blocked: Callable[[], object] | None, flags: int = 0, piped: _Piped | None = None
    ) -> None:
        """Write the unsent bytes (with ``flags``), then those of ``piped``."""
        views = self._unsent
        stalled_since: float | None = None
        try:
            while views or (piped is not None and piped.left):
                try:
                    if views:
                        drop_written(views, self._sock.sendmsg(views, (), flags))
                    else:
                        assert piped is not None  # (for the type checker)
                        piped.left -= os.splice(
                            piped.fd, self._sock.fileno(), piped.left, flags=os.SPLICE_F_MORE
                        )
                except BlockingIOError:  # no room for a whole tick
                    now = time.monotonic()
                    if stalled_since is None:
                        stalled_since = now
                    elif self._stall_limit is not None and now - stalled_since > self._stall_limit:
                        raise TimeoutError from None
                    if blocked is not None:
                        blocked()
                    continue
                stalled_since = None
                self.started = True
                if (views or (piped is not None and piped.left)) and blocked is not None:
                    blocked()  # a part went, within a tick: a slow reader all the same
        except TimeoutError as exc:
            self._transport.close(reset=True)
            raise TransportError(self._request.call, "the stream was not read in time") from exc
        except OSError as exc:
            self._transport.close()
            raise TransportError(self._request.call, str(exc)) from exc


_CRLF = memoryview(b"\r\n")
#: SO_LINGER on, with no time to linger: close() resets the connection.
_LINGER_RESET = struct.pack("ii", 1, 0)


class _Piped:
    """The bytes of a chunk still in a pipe, to be spliced to the socket."""

    __slots__ = ("fd", "left")

    def __init__(self, fd: int, left: int) -> None:
        self.fd = fd
        self.left = left


def _read_exactly(fd: int, size: int) -> bytes:
    """The next ``size`` bytes of the pipe ``fd``, which holds them already."""
    parts = []
    while size:
        part = os.read(fd, size)
        if not part:
            raise EOFError
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


class _Retryable(Exception):
    """The request can be sent again: no byte of an answer was seen."""
