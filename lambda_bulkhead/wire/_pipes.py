"""The fd edge of :mod:`lambda_bulkhead.wire._frames`: writing frames and reading bytes.

Writes use ``os.writev`` so a frame's header and a multi-megabyte payload go out
without being joined.  On a non-blocking fd a full pipe is waited for with
``poll`` until a deadline, so a peer that stopped reading can never block the
supervisor for longer than the caller allows.
"""

from __future__ import annotations

import _socket
import array
import fcntl
import os
import select
import time
from collections.abc import Sequence

from lambda_bulkhead.process._writes import drop_written
from lambda_bulkhead.wire._frames import FrameDecoder, encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lambda_bulkhead.wire._frames import Message

__all__ = [
    "FRAME_PIPE_BYTES",
    "READ_BYTES",
    "enlarge_pipe",
    "pipe_holds",
    "read_available",
    "read_message",
    "read_size",
    "receive_with_fds",
    "send_message",
    "send_with_fds",
    "write_parts",
]

#: What one read asks for: a larger request costs more than the read itself
#: (Python allocates the whole buffer first, past malloc's mmap threshold);
#: a frame known to be larger is asked for whole (see ``read_size``).
READ_BYTES = 64 * 1024
#: Pipes that carry frames are enlarged to this, so a large event or result
#: crosses in one write and one read instead of sixteen.
FRAME_PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = 1031
_F_GETPIPE_SZ = 1032
#: The longest wait ``poll`` takes (a C int of milliseconds, about 24 days).
_MAX_POLL_MS = 2**31 - 1
#: Up to this, a frame's parts are joined and written with one os.write.
_JOIN_BYTES = 4096


def write_parts(fd: int, parts: Sequence[bytes], deadline: float | None = None) -> None:
    """Write ``parts`` in order, all of them.

    Raises ``TimeoutError`` when the fd is non-blocking and still full at
    ``deadline`` (a ``time.monotonic()`` value), ``BrokenPipeError`` when the
    reader is gone.
    """
    if len(parts) == 2 and len(parts[0]) + len(parts[1]) <= _JOIN_BYTES:
        # A small frame (most events and answers): one buffer, one write.
        data = parts[0] + parts[1]
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        if written == len(data):
            return
        parts = [data[written:]]
    views = [memoryview(part) for part in parts if part]
    while views:
        try:
            written = os.writev(fd, views)
        except BlockingIOError:
            _wait_writable(fd, deadline)
            continue
        drop_written(views, written)


def _wait_writable(fd: int, deadline: float | None) -> None:
    timeout_ms = None
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("peer stopped reading")
        # At most poll's int: a deadline centuries away is a deadline all the same.
        timeout_ms = min(max(1, int(remaining * 1000)), _MAX_POLL_MS)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll(timeout_ms)


def send_message(fd: int, message: Message, deadline: float | None = None) -> None:
    write_parts(fd, encode(message), deadline)


def enlarge_pipe(fd: int) -> int:
    """Give a pipe :data:`FRAME_PIPE_BYTES` of buffer where the kernel allows (it
    may not: past the user's share of pipe memory a pipe keeps its 64 KiB);
    the bytes it now holds at most."""
    try:
        return int(fcntl.fcntl(fd, _F_SETPIPE_SZ, FRAME_PIPE_BYTES))
    except OSError:
        return int(fcntl.fcntl(fd, _F_GETPIPE_SZ))


def pipe_holds(fd: int) -> int:
    """How many bytes the pipe ``fd`` holds, not read yet (``FIONREAD``; 0 once closed)."""
    import termios  # noqa: PLC0415 - streams and deaths only: off the cold start

    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count)
    except OSError:
        return 0
    return count[0]


def read_size(decoder: FrameDecoder) -> int:
    """How much to ask for next: the rest of a large frame, else :data:`READ_BYTES`."""
    return max(READ_BYTES, decoder.remaining())


def read_available(fd: int, limit: int = READ_BYTES) -> bytes | None:
    """What a non-blocking fd holds now (up to ``limit``): ``b""`` at EOF, None if empty."""
    try:
        return os.read(fd, limit)
    except BlockingIOError:
        return None


def send_with_fds(sock: _socket.socket, data: bytes, fds: Sequence[int]) -> None:
    r"""Send ``data`` with ``fds`` attached (``SCM_RIGHTS``), as ``socket.send_fds``;
    a peer gone is :class:`BrokenPipeError`, never SIGPIPE (which a handler's
    import may have set to kill the template).

    The runtime's sockets are ``_socket.socket``\s: importing :mod:`socket`
    (with :mod:`enum` and :mod:`selectors`) costs the cold start ~5 ms.
    """
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))],
                 _socket.MSG_NOSIGNAL)


def receive_with_fds(sock: _socket.socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    """Up to ``size`` bytes and the fds that came with them, as ``socket.recv_fds``."""
    data, ancillary, _, _ = sock.recvmsg(size, _socket.CMSG_LEN(max_fds * 4))
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def read_message(fd: int, decoder: FrameDecoder, backlog: list[Message]) -> Message | None:
    """Block until the next whole message arrives on ``fd``; None at end of stream.

    ``backlog`` holds messages decoded beyond the one returned.
    """
    while not backlog:
        data = os.read(fd, read_size(decoder))
        if not data:
            return None
        backlog.extend(decoder.feed(data))
    return backlog.pop(0)
