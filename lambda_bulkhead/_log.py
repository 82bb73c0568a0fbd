"""The runtime's own log, and the one writer every log line goes through.

Callers depend on the small :class:`RuntimeLog` protocol; the default is a
structlog logger (:mod:`lambda_bulkhead._slog`) built on first use, so that
structlog is never imported on the way to the first ``/next``.

:class:`LogWriter` policy (``docs/logging.md``): a line is written whole or not
at all, lines from concurrent workers never interleave, and a full stdout pipe
never blocks the caller: when the pipe is a FIFO the writer uses its own
non-blocking file description of it and keeps what did not fit in a bounded
buffer, written first at the next chance; past :data:`MAX_PENDING_BYTES` new
lines are dropped and counted, and a record says how many once the pipe drains.
"""

from __future__ import annotations

import functools
import os
import stat
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["MAX_PENDING_BYTES", "LogWriter", "RuntimeLog", "default_log", "stdout_writer"]

MAX_PENDING_BYTES = 4 * 1024 * 1024


class RuntimeLog(Protocol):
    def debug(self, event: str, **fields: Any) -> Any: ...

    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


class LogWriter:
    """Writes whole lines to ``fd`` without ever blocking on a full pipe."""

    def __init__(self, fd: int = 1, max_pending: int = MAX_PENDING_BYTES) -> None:
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._max_pending = max_pending
        self.dropped = 0
        self._fd = fd
        self._owned = False
        try:
            is_fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except OSError:
            is_fifo = False
        if is_fifo:
            # A new open file description: O_NONBLOCK here leaves the fd other
            # processes share (the template's stdout) blocking.
            try:
                flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
                self._fd = os.open(f"/proc/self/fd/{fd}", flags)
                self._owned = True
            except OSError:
                pass

    def write(self, data: bytes) -> None:
        """Queue one or more whole lines (``data`` ends with a newline)."""
        with self._lock:
            if self._pending:
                self._drain()
            if self._pending:
                self._hold(data)
                return
            written = self._write_some(data)
            if written < len(data):
                self._hold(data[written:])

    def flush(self, timeout: float = 0.0) -> bool:
        """Try to write what is held, for up to ``timeout`` s; True when all out."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                self._drain()
                if not self._pending:
                    return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.001)

    def _hold(self, data: bytes) -> None:
        if len(self._pending) + len(data) > self._max_pending:
            self.dropped += data.count(b"\n") or 1
            return
        self._pending += data

    def _drain(self) -> None:
        written = self._write_some(bytes(self._pending))
        del self._pending[:written]
        if not self._pending and self.dropped:
            notice = (
                f'{{"level":"WARNING","message":"log lines dropped: stdout was full",'
                f'"logger":"lambda_bulkhead.supervisor","dropped":{self.dropped}}}\n'
            ).encode()
            self.dropped = 0
            self._pending += notice[self._write_some(notice) :]

    def _write_some(self, data: bytes) -> int:
        view = memoryview(data)
        total = 0
        while total < len(data):
            try:
                total += os.write(self._fd, view[total:])
            except BlockingIOError:
                break
            except BrokenPipeError:
                return len(data)  # nobody reads our stdout any more: nothing to keep
        return total

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)
            self._owned = False


@functools.cache
def stdout_writer() -> LogWriter:
    """The process's writer for fd 1, made on first use."""
    return LogWriter(1)


def default_log(environ: Mapping[str, str] | None = None) -> RuntimeLog:
    """The runtime log configured from ``AWS_LAMBDA_LOG_FORMAT``/``_LEVEL``."""
    from lambda_bulkhead import _logformat, _slog  # noqa: PLC0415

    env = os.environ if environ is None else environ
    settings = _logformat.LogSettings.from_environ(env)
    writer = stdout_writer()
    return _slog.configure(
        settings.format, settings.level, lambda line: writer.write(line.encode())
    )
