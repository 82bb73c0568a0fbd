"""Frames for the platform's log fd, ``_LAMBDA_TELEMETRY_LOG_FD``.

Managed runtimes get this fd instead of writing logs to stdout; each frame is
one CloudWatch event, newlines and all.  Layout, big-endian::

    +----------------------+----------------------+-------------------------+-----------------+
    | frame type (4 bytes) | payload length (4 B) | timestamp, µs (8 bytes) | payload (length) |
    +----------------------+----------------------+-------------------------+-----------------+

    frame type = 0xA55A0002 (JSON) or 0xA55A0003 (Text), OR-ed with a level mask:

        no level 0b00000   TRACE 0b00100   DEBUG 0b01000   INFO  0b01100
        WARN     0b10000   ERROR 0b10100   FATAL 0b11000

The masks are the Node.js runtime client's (``src/logging/constants.ts``); the
Python runtime client (``lambda_runtime_log_utils.py``) hard-codes the same
values for ``logging`` levels rounded down to a multiple of ten (DEBUG
0xA55A000A/0B … CRITICAL 0xA55A001A/1B) and has no TRACE: a level below DEBUG
is sent with no level, as there.  The runtime pops the variable from its
environment so that child processes do not inherit it.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lambda_bulkhead.logs._format import LogFormat, write_fully

if TYPE_CHECKING:
    from lambda_bulkhead._config import LogFormatName

__all__ = [
    "FRAME_HEADER",
    "JSON_FRAME_TYPE",
    "MAX_PAYLOAD_BYTES",
    "TEXT_FRAME_TYPE",
    "TelemetryFrame",
    "TelemetrySink",
    "decode_frame",
    "encode_frame",
    "frame_type",
]

JSON_FRAME_TYPE = 0xA55A0002
TEXT_FRAME_TYPE = 0xA55A0003
FRAME_HEADER = struct.Struct(">IIQ")
MAX_PAYLOAD_BYTES = 2**32 - 1
"""The length field's limit; the platform's own event limit is far lower."""

_LEVEL_MASK_BITS = 0b11100
# logging level rounded down to a multiple of ten -> mask (TRACE's 0b00100 has
# no logging level).
_LEVEL_MASKS = {
    logging.NOTSET: 0b00000,
    logging.DEBUG: 0b01000,
    logging.INFO: 0b01100,
    logging.WARNING: 0b10000,
    logging.ERROR: 0b10100,
    logging.CRITICAL: 0b11000,
}
_MASK_LEVELS = {mask: level for level, mask in _LEVEL_MASKS.items()}


def frame_type(fmt: LogFormatName, level: int | None) -> int:
    """The frame type for a record of :mod:`logging` ``level`` (``None``: no level)."""
    base = JSON_FRAME_TYPE if fmt == LogFormat.JSON else TEXT_FRAME_TYPE
    if level is None:
        return base
    return base | _LEVEL_MASKS[min(50, max(0, level)) // 10 * 10]


def encode_frame(
    payload: bytes, *, fmt: LogFormatName, level: int | None, timestamp_us: int
) -> bytes:
    """One frame: header and payload, ready for a single write."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    return FRAME_HEADER.pack(frame_type(fmt, level), len(payload), timestamp_us) + payload


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryFrame:
    """A decoded frame (what the platform reads; used by tests and local runs)."""

    frame_type: int
    timestamp_us: int
    payload: bytes

    @property
    def format(self) -> LogFormatName:
        """JSON or Text, from the frame type's lowest bit."""
        return LogFormat.TEXT if self.frame_type & 1 else LogFormat.JSON

    @property
    def level(self) -> int | None:
        """The :mod:`logging` level the frame carries (``None``: no level or TRACE)."""
        return _MASK_LEVELS.get(self.frame_type & _LEVEL_MASK_BITS) or None


def decode_frame(data: bytes) -> tuple[TelemetryFrame, bytes] | None:
    """The first frame in ``data`` and the bytes after it; ``None`` if incomplete."""
    if len(data) < FRAME_HEADER.size:
        return None
    kind, length, timestamp_us = FRAME_HEADER.unpack_from(data)
    if kind & ~(_LEVEL_MASK_BITS | 1) != JSON_FRAME_TYPE:
        raise ValueError(f"not a telemetry log frame: type {kind:#010x}")
    end = FRAME_HEADER.size + length
    if len(data) < end:
        return None
    frame = TelemetryFrame(
        frame_type=kind, timestamp_us=timestamp_us, payload=bytes(data[FRAME_HEADER.size : end])
    )
    return frame, bytes(data[end:])


class TelemetrySink:
    """Writes frames to the telemetry fd, one ``os.write`` per frame."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(
        self,
        payload: bytes,
        *,
        fmt: LogFormatName,
        level: int | None,
        timestamp_us: int | None = None,
    ) -> None:
        """Frame ``payload`` (stamped now unless ``timestamp_us`` is given) and write it."""
        if timestamp_us is None:
            timestamp_us = time.time_ns() // 1000
        write_fully(self.fd, encode_frame(payload, fmt=fmt, level=level, timestamp_us=timestamp_us))
