"""The runtime's own log, and the one writer every log line goes through.

Callers depend on the small :class:`RuntimeLog` protocol; the default is a
structlog logger (:mod:`lambda_bulkhead.logs._structlog`) built on first use, so that
structlog is never imported on the way to the first ``/next``.

A :class:`LogWriter` takes whole records, each a line ending in ``\\n``, and
writes them to one destination:

* stdout, as they are (each line becomes one CloudWatch event);
* the managed runtimes' telemetry fd (``_LAMBDA_TELEMETRY_LOG_FD``), one frame
  per record (:mod:`lambda_bulkhead.logs._telemetry`), the newline dropped (the frame
  is the boundary) and the record's level in the frame type.  The level is read
  back from the record (:func:`record_level`): every record the runtime writes,
  whoever made it, is laid out by :mod:`lambda_bulkhead.logs._format`, which puts
  the level first in Text (``[ERROR]\\t…``) and right after the timestamp in
  JSON (``{"timestamp": "…", "level": "ERROR", …``).  Nothing is parsed on the
  way to stdout.

Policy (``docs/logging.md``, "When the log pipe is full"):

1. Records are written whole: when the kernel takes only part of a write, the
   rest is held and written before anything else, so the reader never sees two
   records mixed, even from concurrent workers (one lock, one writer per fd).
2. Writing never blocks.  A pipe is written through a non-blocking file
   description of its own (``/proc/self/fd/N`` reopened with ``O_NONBLOCK``, so
   the description other processes share stays blocking); a socket with
   ``MSG_DONTWAIT``.  Regular files and terminals are written as they are: they
   do not fill up.
3. What a full pipe did not take is held, up to :data:`MAX_PENDING_BYTES` (plus
   the rest of a write the kernel cut short, which is always kept); past that,
   new records are dropped whole and counted.
4. Held records go out first at the next write or :meth:`LogWriter.flush` (the
   supervisor's main thread flushes every 50 ms while anything is held); once
   all are out, a ``WARNING`` record says how many were dropped.
5. At exit the runtime waits a moment (:meth:`LogWriter.flush` with a timeout)
   for what is held; a reader that is still stopped then loses it, and may see
   the last record cut, the one case where a line can be torn.
"""

from __future__ import annotations

import functools
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from lambda_bulkhead.logs._format import LogSettings
    from lambda_bulkhead.logs._interface import RuntimeLog

__all__ = [
    "MAX_PENDING_BYTES",
    "LogWriter",
    "default_log",
    "record_level",
    "stdout_writer",
]

MAX_PENDING_BYTES = 4 * 1024 * 1024
_MSG_DONTWAIT = 0x40  # socket.MSG_DONTWAIT (Linux)

#: Level names as both layouts write them (``logging``'s names in JSON, the
#: record's own name in Text) -> :mod:`logging` level.
_LEVELS: Mapping[bytes, int] = {
    b"DEBUG": 10,
    b"INFO": 20,
    b"WARNING": 30,
    b"WARN": 30,
    b"ERROR": 40,
    b"CRITICAL": 50,
    b"FATAL": 50,
}
_JSON_LEVEL_KEY = b'"level":'
#: Where the level must start in a JSON record: after ``{"timestamp": "…Z", ``
#: (or first, as Powertools' Logger writes it).
_JSON_LEVEL_WITHIN = 64


def record_level(line: bytes) -> int | None:
    """The :mod:`logging` level a record names, or ``None`` (no level, or unknown).

    Looks only where the layouts put it: ``[LEVEL]`` at the start of a Text
    record, ``"level": "LEVEL"`` within the first bytes of a JSON one.
    """
    if line.startswith(b"["):
        end = line.find(b"]", 1, 12)
        return _LEVELS.get(line[1:end]) if end > 0 else None
    start = line.find(_JSON_LEVEL_KEY, 0, _JSON_LEVEL_WITHIN)
    if start < 0:
        return None
    start += len(_JSON_LEVEL_KEY)
    # A handler's own JSON line (kept as written) may be compact and lower-case:
    # {"level":"info",...}.
    if line.startswith(b" ", start):
        start += 1
    if not line.startswith(b'"', start):
        return None
    start += 1
    end = line.find(b'"', start, start + 10)
    return _LEVELS.get(line[start:end].upper()) if end > 0 else None


class LogWriter:
    """Writes whole records to ``fd`` without ever blocking on a full pipe.

    ``settings`` give the format and threshold of the dropped-records notice
    (default: JSON, unfiltered).  With ``telemetry``, ``fd`` is the telemetry
    fd and each record is sent as one frame of ``settings.format``.
    """

    def __init__(
        self,
        fd: int = 1,
        max_pending: int = MAX_PENDING_BYTES,
        *,
        settings: LogSettings | None = None,
        telemetry: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._max_pending = max_pending
        self._settings = settings
        self._frames: Callable[[bytes], bytes] | None = None
        if telemetry:
            self._frames = _frame_encoder(settings)
        #: Records dropped since the last notice.
        self.dropped = 0
        self._fd = fd
        self._owned = False
        self._sock: socket.socket | None = None
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            mode = 0
        if stat.S_ISFIFO(mode):
            # A new open file description: O_NONBLOCK here leaves the fd other
            # processes share (our parent's, say) blocking.
            try:
                flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
                self._fd = os.open(f"/proc/self/fd/{fd}", flags)
                self._owned = True
            except OSError:
                pass
        elif stat.S_ISSOCK(mode):
            # A socket cannot be reopened through /proc: send with MSG_DONTWAIT.
            import socket  # noqa: PLC0415 - only a socket log fd needs it

            self._sock = socket.socket(fileno=os.dup(fd))

    @property
    def fd(self) -> int:
        """The fd written to (a reopened copy of a pipe): poll it for room."""
        return self._fd if self._sock is None else self._sock.fileno()

    def write(self, data: bytes) -> None:
        """Queue one or more whole records (``data`` ends with a newline)."""
        out = data if self._frames is None else self._frames(data)
        with self._lock:
            if self._pending:
                self._drain()
            if self._pending:
                self._hold(out, data.count(b"\n") or 1)
                return
            written = self._write_some(out)
            if not written:
                self._hold(out, data.count(b"\n") or 1)
            else:  # the rest of a record the reader has begun is always kept
                self._pending += out[written:]

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

    def _hold(self, data: bytes, records: int) -> None:
        if len(self._pending) + len(data) > self._max_pending:
            self.dropped += records
            return
        self._pending += data

    def _drain(self) -> None:
        written = self._write_some(self._pending)
        del self._pending[:written]  # O(1) for a bytearray's head
        if not self._pending and self.dropped:
            notice = _dropped_notice(self.dropped, self._settings)
            self.dropped = 0
            if notice and self._frames is not None:
                notice = self._frames(notice)
            self._pending += notice[self._write_some(notice) :]

    def _write_some(self, data: bytes | bytearray) -> int:
        total = 0
        # Released on return: the held bytearray can be resized again.
        with memoryview(data) as view:
            while total < len(view):
                try:
                    if self._sock is not None:
                        total += self._sock.send(view[total:], _MSG_DONTWAIT)
                    else:
                        total += os.write(self._fd, view[total:])
                except BlockingIOError:
                    break
                except (BrokenPipeError, ConnectionResetError):
                    return len(view)  # nobody reads any more: nothing to keep
        return total

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)
            self._owned = False
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _frame_encoder(settings: LogSettings | None) -> Callable[[bytes], bytes]:
    from lambda_bulkhead.logs._format import LogFormat  # noqa: PLC0415
    from lambda_bulkhead.logs._telemetry import encode_frame  # noqa: PLC0415

    fmt = LogFormat.JSON if settings is None else settings.format

    def frames(data: bytes) -> bytes:
        """One telemetry frame per record of ``data``."""
        lines = data.split(b"\n")
        if not lines[-1]:
            lines.pop()
        now_us = time.time_ns() // 1000
        return b"".join(
            encode_frame(line, fmt=fmt, level=record_level(line), timestamp_us=now_us)
            for line in lines
        )

    return frames


def _dropped_notice(dropped: int, settings: LogSettings | None) -> bytes:
    """The WARNING record that says ``dropped`` records were lost (empty if filtered)."""
    from lambda_bulkhead.logs import _format as _logformat  # noqa: PLC0415

    settings = settings or _logformat.LogSettings()
    if settings.threshold > _logformat.WARNING:
        return b""
    message = f"{dropped} log records dropped: the log pipe was full"
    if settings.format is _logformat.LogFormat.TEXT:
        line = _logformat.format_text_record(
            timestamp=time.time(), level="WARNING", message=message, request_id=None
        )
    else:
        line = _logformat.render_json({
            "timestamp": time.time(),
            "level": "WARNING",
            "message": message,
            "logger": _logformat.RUNTIME_LOGGER,
            "droppedRecords": dropped,
        })
    return line.encode("utf-8") + b"\n"


@functools.cache
def stdout_writer() -> LogWriter:
    """The process's writer for fd 1, made on first use (the in-process runtime's)."""
    return LogWriter(1)


def default_log(settings: LogSettings, writer: LogWriter | None = None) -> RuntimeLog:
    """The runtime log in ``settings``' format and level, writing to ``writer``
    (default: :func:`stdout_writer`)."""
    from lambda_bulkhead.logs import _structlog as _slog  # noqa: PLC0415

    out = stdout_writer() if writer is None else writer
    return _slog.configure(
        settings.format,
        settings.level,
        # A lone surrogate (a surrogateescape'd file name in an error message)
        # is written escaped rather than failing the record.
        lambda line: out.write(line.encode("utf-8", "backslashreplace")),
    )
