"""Tests for lambda_bulkhead.logs._writer: the LogWriter policy (whole records, never
blocking, bounded, counted) and the telemetry framing, on real pipes and sockets."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambda_bulkhead._config import LogFormatName

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest
from structlog.typing import FilteringBoundLogger

from lambda_bulkhead.logs import _structlog as _slog
from lambda_bulkhead.logs._format import (
    LogFormat,
    LogSettings,
    format_captured_line,
    format_json_record,
    format_text_record,
)
from lambda_bulkhead.logs._stdlib import LambdaLogFormatter
from lambda_bulkhead.logs._telemetry import decode_frame
from lambda_bulkhead.logs._writer import LogWriter, record_level
from lambda_bulkhead.supervisor._decisions import InvocationReport, Outcome
from lambda_bulkhead.supervisor._report import format_report

T = 1795238169.123


@pytest.fixture
def small_pipe() -> Iterator[tuple[int, int]]:
    """A pipe that holds one page (4 KiB); the read end non-blocking."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(read_end, False)
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):  # a test may have closed it
            os.close(fd)


def _lines(count: int, width: int = 1000) -> list[bytes]:
    return [(f"{i:05d} " + "x" * width).encode() + b"\n" for i in range(count)]


def _drain(read_end: int, writer: LogWriter, timeout: float = 10.0) -> bytes:
    """Read until the writer holds nothing and the pipe is empty."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            while chunk := os.read(read_end, 65536):
                out += chunk
        except BlockingIOError:
            pass
        if writer.flush():
            try:
                while chunk := os.read(read_end, 65536):
                    out += chunk
            except BlockingIOError:
                return bytes(out)
    raise AssertionError("the writer never emptied")


def _write_each(writer: LogWriter, lines: list[bytes]) -> None:
    for line in lines:
        writer.write(line)


def _in_thread(work: Callable[[], None], timeout: float = 10.0) -> None:
    """Run ``work``; fail if it blocks (it must return while nobody reads)."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the write blocked on a full pipe"


def test_records_reach_a_pipe_whole(small_pipe: tuple[int, int]) -> None:
    """Lines written to a pipe with room come out as written."""
    read_end, write_end = small_pipe
    writer = LogWriter(write_end)
    writer.write(b"one\ntwo\n")
    assert os.read(read_end, 100) == b"one\ntwo\n"


def test_a_pipe_gets_its_own_nonblocking_description(small_pipe: tuple[int, int]) -> None:
    """The writer reopens the pipe: the fd others share stays blocking."""
    _, write_end = small_pipe
    writer = LogWriter(write_end)
    assert writer.fd != write_end
    assert os.get_blocking(write_end)
    assert not os.get_blocking(writer.fd)
    writer.close()


def test_a_full_pipe_never_blocks_and_held_records_come_out_whole(
    small_pipe: tuple[int, int],
) -> None:
    """With nobody reading, writes return at once; later every record arrives whole, in order."""
    read_end, write_end = small_pipe
    writer = LogWriter(write_end)
    lines = _lines(200)
    _in_thread(lambda: _write_each(writer, lines))
    assert writer.flush() is False  # still held: nobody read yet
    assert _drain(read_end, writer) == b"".join(lines)
    assert writer.dropped == 0


def test_past_the_bound_records_are_dropped_whole_counted_and_noticed(
    small_pipe: tuple[int, int],
) -> None:
    """Beyond max_pending new records are dropped whole; a WARNING record says how many."""
    read_end, write_end = small_pipe
    writer = LogWriter(write_end, max_pending=20_000)
    lines = _lines(100)
    _in_thread(lambda: _write_each(writer, lines))
    assert writer.dropped > 0
    out = _drain(read_end, writer).split(b"\n")
    assert out.pop() == b""
    notice = json.loads(out.pop())
    kept = [line + b"\n" for line in out]
    assert kept == lines[: len(kept)]  # whole records, the first ones, in order
    assert notice["level"] == "WARNING"
    assert notice["logger"] == "lambda_bulkhead.supervisor"
    assert notice["droppedRecords"] == len(lines) - len(kept)
    assert list(notice)[:3] == ["timestamp", "level", "message"]
    assert writer.dropped == 0


def test_a_write_the_kernel_cut_short_is_finished_even_past_the_bound(
    small_pipe: tuple[int, int],
) -> None:
    """Once part of a batch is in the pipe its rest is kept, bound or not: no torn record."""
    read_end, write_end = small_pipe
    writer = LogWriter(write_end, max_pending=100)
    batch = b"".join(_lines(30))
    _in_thread(lambda: writer.write(batch))
    assert _drain(read_end, writer) == batch


def test_text_notice_and_a_filtered_notice(small_pipe: tuple[int, int]) -> None:
    """The notice follows the log format; below the threshold it is not written."""
    read_end, write_end = small_pipe
    text = LogWriter(write_end, max_pending=0, settings=LogSettings(format=LogFormat.TEXT))
    _in_thread(lambda: _write_each(text, _lines(10)))
    records = _drain(read_end, text).decode().splitlines()
    assert re.fullmatch(
        r"\[WARNING\]\t\S+Z\t\t\d+ log records dropped: the log pipe was full", records[-1]
    )
    quiet = LogWriter(write_end, max_pending=0, settings=LogSettings(level=logging.ERROR))
    _in_thread(lambda: _write_each(quiet, _lines(10)))
    assert b"dropped" not in _drain(read_end, quiet)
    assert quiet.dropped == 0


def test_a_socket_is_written_without_blocking() -> None:
    """A stream socket destination: MSG_DONTWAIT, records held then delivered whole."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer = LogWriter(ours.fileno())
        lines = _lines(300)
        _in_thread(lambda: _write_each(writer, lines))
        theirs.setblocking(False)
        received = bytearray()
        deadline = time.monotonic() + 10
        while len(received) < len(b"".join(lines)) and time.monotonic() < deadline:
            try:
                received += theirs.recv(65536)
            except BlockingIOError:
                writer.flush()
        writer.close()
    assert bytes(received) == b"".join(lines)


def test_a_reader_that_is_gone_is_not_an_error(small_pipe: tuple[int, int]) -> None:
    """EPIPE: records are discarded quietly (nobody can read them)."""
    read_end, write_end = small_pipe
    writer = LogWriter(write_end)
    os.close(read_end)
    writer.write(b"lost\n")
    assert writer.flush() is True


def test_a_regular_file_is_written_as_is(tmp_path: Path) -> None:
    """Files do not fill up: records are appended directly."""
    path = tmp_path / "log"
    with path.open("wb") as file:
        writer = LogWriter(file.fileno())
        writer.write(b"a\nb\n")
    assert path.read_bytes() == b"a\nb\n"


# -- telemetry frames -----------------------------------------------------------


def _frames(data: bytes) -> list[tuple[int, int | None, bytes]]:
    frames = []
    while data:
        decoded = decode_frame(data)
        assert decoded is not None
        frame, data = decoded
        frames.append((frame.frame_type, frame.level, frame.payload))
    return frames


@pytest.mark.parametrize("fmt", list(LogFormat.ALL))
def test_telemetry_frames_carry_each_records_level(
    small_pipe: tuple[int, int], fmt: LogFormatName
) -> None:
    """One frame per record, newline dropped, the record's level in the frame type."""
    read_end, write_end = small_pipe
    writer = LogWriter(write_end, settings=LogSettings(format=fmt), telemetry=True)
    records = [
        _render(fmt, "INFO", "started"),
        _render(fmt, "ERROR", "crashed"),
        _render(fmt, "WARNING", "slow"),
    ]
    writer.write(b"".join(line + b"\n" for line in records))
    frames = _frames(os.read(read_end, 65536))
    base = 0xA55A0002 if fmt == LogFormat.JSON else 0xA55A0003
    assert frames == [
        (base | 0b01100, logging.INFO, records[0]),
        (base | 0b10100, logging.ERROR, records[1]),
        (base | 0b10000, logging.WARNING, records[2]),
    ]


def test_telemetry_drop_notice_is_a_frame_too(small_pipe: tuple[int, int]) -> None:
    """Held and dropped records are whole frames; the notice is a WARNING frame."""
    read_end, write_end = small_pipe
    writer = LogWriter(write_end, max_pending=5_000, telemetry=True)
    lines = [_render(LogFormat.JSON, "INFO", "x" * 900) + b"\n" for _ in range(40)]
    _in_thread(lambda: _write_each(writer, lines))
    frames = _frames(_drain(read_end, writer))
    *kept, notice = frames
    assert all(payload == lines[0].rstrip(b"\n") for _, _, payload in kept)
    assert notice[1] == logging.WARNING
    assert json.loads(notice[2])["droppedRecords"] == len(lines) - len(kept)


# -- record_level: every producer's layout -----------------------------------------


def _render(fmt: LogFormatName, level: str, message: str) -> bytes:
    if fmt == LogFormat.JSON:
        return format_json_record(timestamp=T, level=level, message=message).encode()
    return format_text_record(timestamp=T, level=level, message=message, request_id="r").encode()


LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


@pytest.mark.parametrize("fmt", list(LogFormat.ALL))
@pytest.mark.parametrize("level", list(LEVELS))
def test_record_level_of_formatted_records(fmt: LogFormatName, level: str) -> None:
    """The level of a record laid out by _logformat, JSON or Text."""
    assert record_level(_render(fmt, level, "message with \"level\": \"ERROR\" inside")) == (
        LEVELS[level]
    )


@pytest.mark.parametrize("fmt", list(LogFormat.ALL))
def test_record_level_of_every_producer(fmt: LogFormatName) -> None:
    """Supervisor (structlog), captured lines, worker logging records and reports."""
    written: list[str] = []
    log: FilteringBoundLogger = _slog.configure(fmt, None, written.append, clock=lambda: T)
    log.warning("restart back-off", delaySeconds=0.1)
    log.error("fatal", exc_info=ValueError("x"))
    assert [record_level(line.encode()) for line in written] == [30, 40]

    captured: list[tuple[Literal["stdout", "stderr"], bytes, int]] = [
        ("stdout", b"hello", 20), ("stderr", b"careful", 30), ("stderr", b"KeyError: 'k'", 40),
    ]
    for stream, text, level in captured:
        line = format_captured_line(
            text, stream=stream, request_id="r", tenant_id=None, fmt=fmt, min_level=0, now=T,
        )
        assert line is not None
        assert record_level(line) == level

    record = logging.LogRecord("app", logging.CRITICAL, __file__, 1, "bad", (), None)
    assert record_level(LambdaLogFormatter(fmt).format(record).encode()) == 50

    report = InvocationReport(
        request_id="r", tenant_id=None, outcome=Outcome.CRASH, duration_ms=1.0, max_memory_mb=1.0,
        worker_pid=1, worker_replaced=True, error_type="Runtime.ExitError", signal="SIGSEGV",
        stack=("  File \"a.py\", line 1 in f\n",),
    )
    line = format_report(report, LogSettings(format=fmt), T)
    assert line is not None
    assert record_level(line) == 40


@pytest.mark.parametrize(
    ("line", "level"),
    [(b'{"level":"INFO","location":"handler:7","message":"m"}', 20),
     (b'{"level": "warning", "msg": "m"}', 30), (b'{"level":"Error"}', 40)],
)
def test_record_level_of_a_handlers_own_json_line(line: bytes, level: int) -> None:
    """A JSON line the handler wrote (Powertools: compact, level first), kept as
    written, is framed with its level too."""
    assert record_level(line) == level


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"plain text",
        b'{"level": 3}',
        b'{"timestamp": "2026-11-21T05:16:09Z", "level": "NOTICE", "message": "x"}',
        b'{"timestamp": "2026-11-21T05:16:09Z", "message": "x", "extra": 1, "level": "ERROR"}',
        b"[NOTICE]\t2026-11-21T05:16:09.123Z\tr\tcustom level",
        b"[unterminated",
    ],
)
def test_record_level_none_for_unknown_shapes(line: bytes) -> None:
    """Lines without a known level where the layouts put it frame with no level."""
    assert record_level(line) is None
