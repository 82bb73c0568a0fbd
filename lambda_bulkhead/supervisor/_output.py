"""A worker's fd 1 and fd 2, as log lines tagged with the invocation's request id.

Each slot has one sink.  Bytes arrive as the worker writes them; whole lines
leave at once through the log writer, and a partial line is held until its
newline, the end of the invocation, or the worker's death (:meth:`end`), so
output written just before a crash is still logged, with its request id.

The template's fd 1 and fd 2 are pipes too (:class:`PipeOutput`), read by the
supervisor's main thread: what the handler's module prints at import time is
logged the same way, with ``"requestId": ""``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from lambda_bulkhead.logs._format import LineAssembler, LineChunk, LogSettings, format_captured_line
from lambda_bulkhead.wire._pipes import read_available

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Stream = Literal["stdout", "stderr"]

__all__ = ["OutputSink", "PipeOutput"]



class OutputSink:
    """Turns one worker's captured output into log lines."""

    def __init__(
        self,
        settings: LogSettings,
        write: Callable[[bytes], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._write = write
        self._clock = clock
        self._assemblers: dict[Stream, LineAssembler] = {
            "stdout": LineAssembler(),
            "stderr": LineAssembler(),
        }
        self._request_id: str | None = None
        self._tenant_id: str | None = None

    def begin(self, request_id: str | None, tenant_id: str | None) -> None:
        """Output from now on belongs to this invocation (None: to none)."""
        self._request_id, self._tenant_id = request_id, tenant_id

    def feed(self, stream: Stream, data: bytes) -> None:
        self._emit(stream, self._assemblers[stream].feed(data))

    def end(self) -> None:
        """The invocation is over (answered, or its worker died): flush partial lines.

        Output fed after this, until the next :meth:`begin`, is still that
        invocation's: what its worker wrote after its answer (see docs/logging.md).
        """
        for stream, assembler in self._assemblers.items():
            self._emit(stream, assembler.flush())

    def _emit(self, stream: Stream, chunks: list[LineChunk]) -> None:
        if not chunks:
            return
        now = self._clock()
        lines = []
        for chunk in chunks:
            line = format_captured_line(
                chunk.data,
                stream=stream,
                request_id=self._request_id,
                tenant_id=self._tenant_id,
                fmt=self._settings.format,
                min_level=self._settings.threshold,
                now=now,
                continued=chunk.continued,
                resumed=chunk.resumed,
            )
            if line is not None:
                lines.append(line)
        if lines:
            self._write(b"".join(lines))


class PipeOutput:
    """A process's stdout and stderr pipes (our non-blocking read ends), fed to a sink.

    Reads only what is there: a pipe that a process's own children still hold
    open never blocks the reader.
    """

    def __init__(self, stdout_fd: int, stderr_fd: int, sink: OutputSink) -> None:
        self._streams: dict[int, Stream] = {stdout_fd: "stdout", stderr_fd: "stderr"}
        self._sink = sink

    @property
    def fds(self) -> list[int]:
        """The pipes still open (poll them for reading)."""
        return list(self._streams)

    def read(self, fd: int) -> None:
        """Forward what ``fd`` holds; at end of stream, close it."""
        data = read_available(fd)
        if data:
            self._sink.feed(self._streams[fd], data)
        elif data == b"":
            del self._streams[fd]
            os.close(fd)

    def drain(self) -> None:
        """Forward all that is buffered now, then the partial lines (the process ended)."""
        for fd, stream in list(self._streams.items()):
            while data := read_available(fd):
                self._sink.feed(stream, data)
        self._sink.end()

    def close(self) -> None:
        for fd in self._streams:
            os.close(fd)
        self._streams.clear()
