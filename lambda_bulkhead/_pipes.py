"""The fd edge of :mod:`lambda_bulkhead._wire`: writing frames and reading bytes.

Writes use ``os.writev`` so a frame's header and a multi-megabyte payload go out
without being joined.  On a non-blocking fd a full pipe is waited for with
``poll`` until a deadline, so a peer that stopped reading can never block the
supervisor for longer than the caller allows.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Sequence

from lambda_bulkhead._wire import FrameDecoder, Message, encode

__all__ = ["READ_BYTES", "read_available", "read_message", "send_message", "write_parts"]

READ_BYTES = 1024 * 1024


def write_parts(fd: int, parts: Sequence[bytes], deadline: float | None = None) -> None:
    """Write ``parts`` in order, all of them.

    Raises ``TimeoutError`` when the fd is non-blocking and still full at
    ``deadline`` (a ``time.monotonic()`` value), ``BrokenPipeError`` when the
    reader is gone.
    """
    views = [memoryview(part) for part in parts if part]
    while views:
        try:
            written = os.writev(fd, views)
        except BlockingIOError:
            _wait_writable(fd, deadline)
            continue
        while written and views:
            first = views[0]
            if written >= len(first):
                written -= len(first)
                views.pop(0)
            else:
                views[0] = first[written:]
                written = 0


def _wait_writable(fd: int, deadline: float | None) -> None:
    timeout_ms = None
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("peer stopped reading")
        timeout_ms = max(1, int(remaining * 1000))
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll(timeout_ms)


def send_message(fd: int, message: Message, deadline: float | None = None) -> None:
    write_parts(fd, encode(message), deadline)


def read_available(fd: int, limit: int = READ_BYTES) -> bytes | None:
    """What a non-blocking fd holds now (up to ``limit``): ``b""`` at EOF, None if empty."""
    try:
        return os.read(fd, limit)
    except BlockingIOError:
        return None


def read_message(fd: int, decoder: FrameDecoder, backlog: list[Message]) -> Message | None:
    """Block until the next whole message arrives on ``fd``; None at end of stream.

    ``backlog`` holds messages decoded beyond the one returned.
    """
    while not backlog:
        data = os.read(fd, READ_BYTES)
        if not data:
            return None
        backlog.extend(decoder.feed(data))
    return backlog.pop(0)
