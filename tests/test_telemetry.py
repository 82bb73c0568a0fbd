"""Tests for lambda_bulkhead.logs._telemetry: frames for _LAMBDA_TELEMETRY_LOG_FD."""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Iterator

import pytest

from lambda_bulkhead._config import take_telemetry_fd
from lambda_bulkhead._errors import ConfigError
from lambda_bulkhead.logs._format import LogFormat
from lambda_bulkhead.logs._telemetry import (
    TelemetryFrame,
    TelemetrySink,
    decode_frame,
    encode_frame,
    frame_type,
)

# The constants awslambdaric's lambda_runtime_log_utils.py writes, per logging level.
OFFICIAL_JSON = {
    0: 0xA55A0002,
    10: 0xA55A000A,
    20: 0xA55A000E,
    30: 0xA55A0012,
    40: 0xA55A0016,
    50: 0xA55A001A,
}
OFFICIAL_TEXT = {
    0: 0xA55A0003,
    10: 0xA55A000B,
    20: 0xA55A000F,
    30: 0xA55A0013,
    40: 0xA55A0017,
    50: 0xA55A001B,
}


@pytest.mark.parametrize("level", sorted(OFFICIAL_JSON))
def test_frame_types_match_the_official_python_runtime(level: int) -> None:
    """JSON and Text frame types per level equal the official runtime's constants."""
    assert frame_type(LogFormat.JSON, level) == OFFICIAL_JSON[level]
    assert frame_type(LogFormat.TEXT, level) == OFFICIAL_TEXT[level]


@pytest.mark.parametrize(("level", "rounded"), [(5, 0), (15, 10), (35, 30), (60, 50), (-1, 0)])
def test_in_between_levels_round_down_like_the_official_runtime(level: int, rounded: int) -> None:
    """Levels between the standard ones round down (below DEBUG: no level), capped at CRITICAL."""
    assert frame_type(LogFormat.JSON, level) == OFFICIAL_JSON[rounded]


def test_no_level_is_the_bare_frame_type() -> None:
    """A frame without a level uses 0xA55A0002 (JSON) or 0xA55A0003 (Text)."""
    assert frame_type(LogFormat.JSON, None) == 0xA55A0002
    assert frame_type(LogFormat.TEXT, None) == 0xA55A0003


def test_encode_frame_layout() -> None:
    """A frame is type, length, timestamp in µs (big-endian 4+4+8 bytes), then the payload."""
    frame = encode_frame(b"hello\n", fmt=LogFormat.TEXT, level=logging.INFO, timestamp_us=123456789)
    assert frame[:16] == struct.pack(">IIQ", 0xA55A000F, 6, 123456789)
    assert frame[16:] == b"hello\n"


def test_decode_frame_round_trips_and_waits_for_whole_frames() -> None:
    """decode_frame returns the first frame and the rest, or None until a frame is complete."""
    one = encode_frame(b'{"a": 1}', fmt=LogFormat.JSON, level=logging.ERROR, timestamp_us=7)
    two = encode_frame(b"x", fmt=LogFormat.TEXT, level=None, timestamp_us=8)
    decoded = decode_frame(one + two)
    assert decoded is not None
    frame, rest = decoded
    assert frame == TelemetryFrame(frame_type=0xA55A0016, timestamp_us=7, payload=b'{"a": 1}')
    assert frame.format == LogFormat.JSON
    assert frame.level == logging.ERROR
    assert rest == two
    assert decode_frame(two[:15]) is None
    assert decode_frame(two[:-1]) is None
    second = decode_frame(rest)
    assert second is not None
    assert second[0].format == LogFormat.TEXT
    assert second[0].level is None


def test_decode_frame_rejects_foreign_bytes() -> None:
    """Bytes that do not start with a log frame type are an error, not a frame."""
    with pytest.raises(ValueError, match="not a telemetry log frame"):
        decode_frame(b"\x00" * 16)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe (read end, write end), closed afterwards."""
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def test_sink_writes_each_frame_with_one_os_write(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TelemetrySink.write hands the whole frame to a single os.write, stamped with now."""
    calls: list[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: bytes) -> int:
        calls.append(bytes(data))
        return real_write(fd, data)

    before = time.time_ns() // 1000
    monkeypatch.setattr(os, "write", recording_write)
    TelemetrySink(pipe[1]).write(b"line\n", fmt=LogFormat.JSON, level=logging.WARNING)
    monkeypatch.undo()
    after = time.time_ns() // 1000
    assert len(calls) == 1
    decoded = decode_frame(os.read(pipe[0], 1024))
    assert decoded is not None
    frame, rest = decoded
    assert rest == b""
    assert frame.payload == b"line\n"
    assert frame.frame_type == 0xA55A0012
    assert before <= frame.timestamp_us <= after


def test_take_telemetry_fd_pops_the_variable() -> None:
    """take_telemetry_fd returns the fd and removes the variable so children do not inherit it."""
    environ = {"_LAMBDA_TELEMETRY_LOG_FD": "3", "OTHER": "x"}
    assert take_telemetry_fd(environ) == 3
    assert environ == {"OTHER": "x"}
    assert take_telemetry_fd(environ) is None


@pytest.mark.parametrize("value", ["", "three", "-1"])
def test_take_telemetry_fd_rejects_a_non_descriptor(value: str) -> None:
    """A value that is not a file descriptor number is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match="_LAMBDA_TELEMETRY_LOG_FD"):
        take_telemetry_fd({"_LAMBDA_TELEMETRY_LOG_FD": value})
