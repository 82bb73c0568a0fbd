"""Log lines in the official Python runtime's layout, as pure functions.

Every record the runtime writes is laid out here, by :func:`render_json` or
:func:`format_text_record`, whoever makes it::

    runtime's own records  ──structlog chain (_structlog)──────▶ render_json / format_text_record
    worker  logging record ──LambdaLogHandler (_stdlib)──▶ fd 1:  b"\\x1e" + line + b"\\n"
    worker  print(), C code, tracebacks ───────▶ fd 1/2: raw bytes
    supervisor ──LineAssembler──▶ LineChunk ──format_captured_line──▶ its own stdout
    LogWriter's dropped-records notice ──────────────────────▶ render_json / format_text_record

A captured line starting with :data:`RECORD_MARKER` (ASCII record separator) was
already formatted by the worker and passes through without the marker; a line
that is a JSON object (Powertools' Logger, ``print(json.dumps(...))``) stays that
object, with ``requestId`` added in the JSON format; any other line is wrapped
into a record here.  CloudWatch makes each ``\\n``-terminated
stdout line one event, so every line leaving this module is one line.

Facts followed (awslambdaric ``lambda_runtime_log_utils.py`` and ``bootstrap.py``):

1. JSON keys in order, ``None`` values dropped: ``timestamp``, ``level``,
   ``message``, ``logger``, ``stackTrace``, ``errorType``, ``errorMessage``,
   ``requestId``, ``location``, ``tenantId``, then the record's ``extra`` fields
   (which never replace those keys): :data:`JSON_KEYS`, laid out by
   :func:`render_json` alone.  Encoded with ``ensure_ascii=False`` and the
   default separators.
2. JSON ``timestamp`` has second precision, UTC: ``2026-11-21T05:16:09Z``
   (milliseconds are only an opt-in in an unmerged upstream change).
3. ``level`` is the record level rounded down to a multiple of ten, capped at 50,
   and named by :mod:`logging`: ``DEBUG INFO WARNING ERROR CRITICAL`` (never
   ``WARN``/``FATAL``); ``NOTSET`` below 10.
4. ``message`` is ``record.getMessage()``; a dict logged on its own (no ``%``
   args) stays a JSON object, as the official JSON formatter keeps it.
5. ``exc_info`` gives ``stackTrace`` (``traceback.format_tb``), ``errorType`` (class
   name), ``errorMessage`` (``str(exc)``) and ``location``
   (``path:function:line``), which appears only with an exception.
6. ``requestId`` is ``""`` outside an invocation (kept, since it is not ``None``).
7. Text layout: ``[LEVEL]\\t<ISO>.<ms>Z\\t<request id>\\t<message>`` with the
   record's own level name.  The official runtime joins a multi-line error with
   ``\\r`` so it stays one CloudWatch event; Text lines here do the same.
8. ``AWS_LAMBDA_LOG_LEVEL=TRACE`` filters as ``DEBUG`` (Python has no TRACE level);
   ``WARN`` is 30 and ``FATAL`` is 50.  Unlike the official runtime, which falls
   back silently, a value outside the documented six is a :class:`ConfigError`.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping

from lambda_bulkhead._config import (
    CRITICAL,
    DEBUG,
    ERROR,
    INFO,
    LOG_LEVELS,
    WARNING,
    LogFormat,
    LogSettings,
    parse_log_format,
    parse_log_level,
)
from lambda_bulkhead._record import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from lambda_bulkhead._config import LogFormatName

__all__ = [
    "CRITICAL",
    "DEBUG",
    "DEFAULT_MAX_LINE_BYTES",
    "ERROR",
    "INFO",
    "JSON_KEYS",
    "LOG_LEVELS",
    "RECORD_MARKER",
    "RUNTIME_LOGGER",
    "WARNING",
    "LineAssembler",
    "LineChunk",
    "LogFormat",
    "LogSettings",
    "format_captured_line",
    "format_text_record",
    "level_name",
    "parse_log_format",
    "parse_log_level",
    "render_json",
    "utc_millis",
    "utc_seconds",
    "write_fully",
]

RECORD_MARKER = b"\x1e"
"""First byte of a worker line that is already a formatted record."""

DEFAULT_MAX_LINE_BYTES = 255 * 1024
"""Longest line (without its ``\\n``) this module emits or assembles.

A CloudWatch Logs event holds at most 256 KiB (262,144 bytes) and PutLogEvents
counts 26 bytes of overhead per event; Lambda has been observed splitting stdout
lines at 2**18 - 26 bytes.  (The newest PutLogEvents reference allows 1 MB per
event, but Lambda's own pipeline is the narrower gate.)  One KiB of headroom stays
below both.
"""

#: logging.getLevelName of each multiple of ten.
_LEVEL_NAMES = {
    0: "NOTSET", DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR",
    CRITICAL: "CRITICAL",
}


def level_name(levelno: int) -> str:
    """The official JSON level name: ``levelno`` rounded down to a multiple of ten."""
    return _LEVEL_NAMES[min(50, max(0, levelno)) // 10 * 10]


def _json_fallback(value: object) -> str:
    # The official encoder raises on such values and the record is lost; a
    # str() keeps the line.
    return str(value)


@functools.cache
def _encode_json() -> Callable[[object], str]:
    # On first use: json (it imports re) costs the supervisor's cold start ~5 ms.
    import json  # noqa: PLC0415

    return json.JSONEncoder(ensure_ascii=False, default=_json_fallback).encode

#: The official JSON record's keys, in their order; every other field follows
#: them as an extra.  The one list: every JSON record is laid out by
#: :func:`render_json` from a mapping with these names.
JSON_KEYS = (
    "timestamp",
    "level",
    "message",
    "logger",
    "stackTrace",
    "errorType",
    "errorMessage",
    "requestId",
    "location",
    "tenantId",
)
_LAYOUT_KEYS = frozenset(JSON_KEYS)
#: The keys after the three every record has.
_OPTIONAL_KEYS = JSON_KEYS[3:]

RUNTIME_LOGGER = "lambda_bulkhead.supervisor"
"""The ``logger`` of the runtime's own records (supervised and in-process alike:
the name users filter on)."""


def utc_seconds(timestamp: float) -> str:
    """``2026-11-21T05:16:09Z``: the official JSON records' timestamp."""
    return _utc_second_text(int(timestamp))


@functools.lru_cache(maxsize=4)
def _utc_second_text(second: int) -> str:
    # Every record within one second shares this text: formatting it once a
    # second takes strftime off the per-line cost.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def utc_millis(timestamp: float) -> str:
    # Whole milliseconds first: the float's fraction of .123 may be .12299999.
    seconds, millis = divmod(round(timestamp * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def render_json(fields: Mapping[str, Any]) -> str:
    """One JSON record, without its ``\\n``: the official layout, and the only
    place it is written.

    ``fields`` holds ``timestamp`` (epoch seconds, a float), ``level`` and
    ``message`` (both kept as they are, ``None`` included), any of the other
    :data:`JSON_KEYS`, then extra fields, which follow in their own order.  A
    ``None`` value is dropped.  An extra never takes a layout key's place: a
    caller that merges extras gives them first and the layout values after.
    """
    record: dict[str, object] = {
        "timestamp": utc_seconds(fields["timestamp"]),
        "level": fields["level"],
        "message": fields["message"],
    }
    # Building only the non-None keys keeps the official order without a second
    # filtering pass.
    for key in _OPTIONAL_KEYS:
        value = fields.get(key)
        if value is not None:
            record[key] = value
    for key, value in fields.items():
        if value is not None and key not in _LAYOUT_KEYS:
            record[key] = value
    return _encode_json()(record)


def format_text_record(
    *, timestamp: float, level: str, message: str, request_id: str | None
) -> str:
    """``[LEVEL]\\t<ISO>.<ms>Z\\t<request id>\\t<message>``, without its ``\\n``.

    Newlines inside ``message`` become ``\\r`` so the record stays one line.
    """
    text = message.rstrip("\n").replace("\n", "\r")
    return f"[{level}]\t{utc_millis(timestamp)}\t{request_id or ''}\t{text}"


def write_fully(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``: one ``os.write`` unless the kernel takes less.

    A blocking pipe takes the whole buffer in one call (a write of at most
    PIPE_BUF bytes is also atomic); the loop only finishes a write cut short.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class LineChunk(NamedTuple):
    """A captured line, or one piece of a line longer than the assembler's limit.

    ``continued``: more of this line follows in the next chunk.
    ``resumed``: this chunk carries on from the previous one (so its first byte
    is not the start of a line).
    """

    data: bytes
    continued: bool = False
    resumed: bool = False


class LineAssembler:
    """Turns a byte stream into lines of at most ``max_line_bytes`` (without ``\\n``).

    A longer line is cut every ``max_line_bytes`` bytes; the chunk boundaries
    depend only on the stream, never on how it was split into reads.  A cut may
    fall inside a multi-byte UTF-8 character (decoding then replaces both halves).
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes}")
        self.max_line_bytes = max_line_bytes
        self._pending = bytearray()
        self._resumed = False

    def feed(self, data: bytes) -> list[LineChunk]:
        """The lines and full-size chunks that ``data`` completes."""
        self._pending += data
        pending, limit = self._pending, self.max_line_bytes
        chunks: list[LineChunk] = []
        start = 0
        while True:
            # A newline at offset `limit` still ends a line of exactly `limit` bytes.
            newline = pending.find(b"\n", start, start + limit + 1)
            if newline != -1:
                chunks.append(LineChunk(bytes(pending[start:newline]), False, self._resumed))
                self._resumed = False
                start = newline + 1
            elif len(pending) - start > limit:
                chunks.append(LineChunk(bytes(pending[start : start + limit]), True, self._resumed))
                self._resumed = True
                start += limit
            else:
                break
        del pending[:start]
        return chunks

    def flush(self) -> list[LineChunk]:
        """The unterminated rest of the stream, if any (call at EOF)."""
        if not self._pending:
            return []
        chunk = LineChunk(bytes(self._pending), False, self._resumed)
        self._pending.clear()
        self._resumed = False
        return [chunk]


# Lines of what CPython and faulthandler print when a program fails: the
# traceback header and frames, chained-exception separators, the final
# `SomeError: message`, and fatal-error reports.
_ERROR_LINE_PREFIXES = (
    "Traceback (most recent call last):",
    '  File "',
    "    ",
    "During handling of the above exception",
    "The above exception was the direct cause",
    "Exception ignored in",
    "Fatal Python error:",
    "Current thread 0x",
    "Thread 0x",
    "Stack (most recent call first):",
)



def _captured_level(text: str, stream: Literal["stdout", "stderr"]) -> int:
    if stream == "stdout":
        return INFO
    if text.startswith(_ERROR_LINE_PREFIXES) or _is_exception_line(text):
        return ERROR
    return WARNING


def _is_exception_line(text: str) -> bool:
    r"""``SomeError: message`` or ``pkg.SomeException`` alone: the regex
    ``[A-Za-z_][\w.]*(?:Error|Exception)(?::|$)`` without importing ``re``."""
    name, colon, _ = text.partition(":")
    if not colon and name != text:
        return False
    return (
        name.endswith(("Error", "Exception"))
        and (name[0].isalpha() or name[0] == "_")
        and all(char.isalnum() or char in "_." for char in name)
    )


@functools.cache
def _decode_json() -> Callable[[bytes], object]:
    # On the first line that starts with "{": json costs the supervisor's cold start.
    import json  # noqa: PLC0415

    return json.loads


def _json_object(line: bytes) -> dict[str, object] | None:
    """The JSON object ``line`` holds, or None (not JSON, or JSON but not an object)."""
    try:
        value = _decode_json()(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


#: Level names a JSON line may carry, any case, as Lambda reads them when it
#: filters JSON lines by level (TRACE filters as DEBUG, as LOG_LEVELS says).
_JSON_LINE_LEVELS: Mapping[str, int] = {**LOG_LEVELS, "WARNING": WARNING, "CRITICAL": CRITICAL}


def _json_line_level(record: Mapping[str, object]) -> int:
    """The level of a JSON line: its ``level`` value, or INFO when that is missing
    or not a level name, as Lambda assigns it."""
    level = record.get("level")
    if isinstance(level, str):
        return _JSON_LINE_LEVELS.get(level.strip().upper(), INFO)
    return INFO


def _with_request_id(line: bytes, request_id: str, max_line_bytes: int) -> bytes:
    """``line`` (a JSON object) with ``"requestId"`` added as its last key.

    The user's bytes are kept as written (key order, spacing, number spelling):
    the key is spliced in before the closing brace.  A line that would outgrow
    ``max_line_bytes`` by it is left as it is.
    """
    head = line.rstrip()[:-1].rstrip()  # everything before the closing "}"
    separator = b"" if head.endswith(b"{") else b", "
    quoted = _encode_json()(request_id).encode("utf-8", "backslashreplace")
    spliced = head + separator + b'"requestId": ' + quoted + b"}"
    return spliced if len(spliced) <= max_line_bytes else line


def format_captured_line(
    line: bytes,
    *,
    stream: Literal["stdout", "stderr"],
    request_id: str | None,
    tenant_id: str | None,
    fmt: LogFormatName,
    min_level: int,
    now: float,
    continued: bool = False,
    resumed: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> bytes | None:
    """What the supervisor writes for one captured line (or :class:`LineChunk`).

    A whole line starting with :data:`RECORD_MARKER` passes through without the
    marker (the worker already filtered it by level).  Any other line, and a
    marked line that was cut into chunks, becomes a record with level:

    * stdout: ``INFO``;
    * stderr: ``ERROR`` for lines shaped like a Python traceback or fatal-error
      report (``Traceback (most recent call last):``, ``  File "…``, lines
      indented four spaces, chained-exception separators, ``SomeError: …`` /
      ``SomeException``, ``Fatal Python error:``, faulthandler's thread and stack
      headers), ``WARNING`` for everything else.

    A whole line that is a JSON object (what Powertools' Logger and
    ``print(json.dumps({...}))`` write) is not wrapped: it is emitted as written,
    in the JSON format with ``"requestId"`` added as its last key unless it has
    one.  Its level is its own ``level`` value (INFO when missing or unknown), as
    Lambda reads a JSON line.  Only lines whose first byte is ``{`` are parsed.

    Returns ``None`` when that level is below ``min_level``.  JSON records are
    ``timestamp, level, message, requestId, tenantId, stream`` plus
    ``"continued": true`` on a chunk that the next one continues; Text records end
    with ``\\t[continued]`` instead.  Bytes that are not UTF-8 are replaced.  If
    escaping would push a record past ``max_line_bytes``, its message is split
    over several records (all ``continued`` but the last), returned together,
    each ending in ``\\n``.
    """
    if (
        line.startswith(RECORD_MARKER)
        and not continued
        and not resumed
        and len(line) <= max_line_bytes + len(RECORD_MARKER)
    ):
        return line[len(RECORD_MARKER) :] + b"\n"
    if line.startswith(b"{") and not continued and not resumed:
        # The first byte keeps every other line off this path.
        record = _json_object(line)
        if record is not None:
            if _json_line_level(record) < min_level:
                return None
            if fmt == LogFormat.TEXT or "requestId" in record:
                return line + b"\n"
            return _with_request_id(line, request_id or "", max_line_bytes) + b"\n"
    text = line.decode("utf-8", "replace")
    level = _captured_level(text, stream)
    if level < min_level:
        return None

    def render(message: str, more: bool) -> bytes:
        if fmt == LogFormat.TEXT:
            rendered = format_text_record(
                timestamp=now, level=level_name(level), message=message, request_id=request_id
            ) + ("\t[continued]" if more else "")
        else:
            rendered = render_json({
                "timestamp": now,
                "level": level_name(level),
                "message": message,
                "requestId": request_id or "",
                "tenantId": tenant_id,
                "stream": stream,
                "continued": True if more else None,
            })
        return rendered.encode("utf-8", "backslashreplace")

    def render_within_limit(message: str, more: bool) -> list[bytes]:
        rendered = render(message, more)
        if len(rendered) <= max_line_bytes or len(message) <= 1:
            return [rendered]
        # Only escaping (control bytes, replaced invalid UTF-8) makes a chunk
        # that fit the assembler outgrow the limit, so halving converges fast.
        half = len(message) // 2
        return render_within_limit(message[:half], True) + render_within_limit(message[half:], more)

    return b"".join(record + b"\n" for record in render_within_limit(text, continued))
