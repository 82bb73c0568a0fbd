"""Tests for lambda_bulkhead.logs._format: official log layouts, worker handler, captured lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambda_bulkhead._config import LogFormatName

import itertools
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_bulkhead._errors import ConfigError
from lambda_bulkhead.logs._format import (
    DEFAULT_MAX_LINE_BYTES,
    RECORD_MARKER,
    LineAssembler,
    LineChunk,
    LogFormat,
    LogSettings,
    format_captured_line,
    format_text_record,
    level_name,
    parse_log_format,
    parse_log_level,
    render_json,
)
from lambda_bulkhead.logs._stdlib import LambdaLogHandler, install_worker_logging

# 2026-11-21T05:16:09.123Z
T = 1795238169.123
REQUEST_ID = "8f507cfc-example-request"

# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, LogFormat.JSON),
        ("", LogFormat.JSON),
        ("JSON", LogFormat.JSON),
        ("json", LogFormat.JSON),
        ("Text", LogFormat.TEXT),
        ("TEXT", LogFormat.TEXT),
        (" text ", LogFormat.TEXT),
    ],
)
def test_parse_log_format_accepts_any_case_and_defaults_to_json(
    value: str | None, expected: LogFormatName
) -> None:
    """AWS_LAMBDA_LOG_FORMAT is JSON or Text in any case; unset means JSON."""
    assert parse_log_format(value) is expected


def test_parse_log_format_rejects_other_values_naming_variable_and_choices() -> None:
    """A bad AWS_LAMBDA_LOG_FORMAT is a ConfigError naming the variable and the accepted values."""
    with pytest.raises(
        ConfigError, match=r"AWS_LAMBDA_LOG_FORMAT='yaml' is not one of: JSON, Text"
    ):
        parse_log_format("yaml")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("TRACE", logging.DEBUG),
        ("DEBUG", logging.DEBUG),
        ("info", logging.INFO),
        ("Warn", logging.WARNING),
        ("ERROR", logging.ERROR),
        ("FATAL", 50),
        (None, None),
        ("", None),
    ],
)
def test_parse_log_level_maps_lambda_names_to_logging_levels(
    value: str | None, expected: int | None
) -> None:
    """The six Lambda level names map as the official runtime does (TRACE filters as DEBUG)."""
    assert parse_log_level(value) == expected


@pytest.mark.parametrize("value", ["WARNING", "CRITICAL", "verbose", "10"])
def test_parse_log_level_rejects_names_outside_the_documented_six(value: str) -> None:
    """A bad AWS_LAMBDA_LOG_LEVEL is a ConfigError listing the six accepted names."""
    with pytest.raises(ConfigError) as caught:
        parse_log_level(value)
    assert str(caught.value) == (
        f"AWS_LAMBDA_LOG_LEVEL={value!r} is not one of: TRACE, DEBUG, INFO, WARN, ERROR, FATAL"
    )


def test_log_settings_from_environ_reads_both_variables() -> None:
    """LogSettings.from_environ parses format and level from the mapping it is given."""
    settings = LogSettings.from_environ(
        {"AWS_LAMBDA_LOG_FORMAT": "Text", "AWS_LAMBDA_LOG_LEVEL": "ERROR"}
    )
    assert settings == LogSettings(format=LogFormat.TEXT, level=logging.ERROR)
    assert settings.threshold == logging.ERROR
    assert LogSettings.from_environ({}).threshold == logging.NOTSET


@pytest.mark.parametrize(
    ("levelno", "name"),
    [(0, "NOTSET"), (5, "NOTSET"), (10, "DEBUG"), (25, "INFO"), (30, "WARNING"), (99, "CRITICAL")],
)
def test_level_name_rounds_down_like_the_official_json_formatter(levelno: int, name: str) -> None:
    """JSON level names come from the level rounded down to a multiple of ten, capped at 50."""
    assert level_name(levelno) == name


# ---------------------------------------------------------------- pure formatters


def test_render_json_orders_keys_and_drops_none() -> None:
    """JSON records follow the official key order, drop None values and append extra fields."""
    line = render_json({
        "order": 7,
        "skipped": None,
        "timestamp": T,
        "level": "ERROR",
        "message": "boom",
        "logger": "app",
        "stackTrace": ['  File "x.py", line 1, in f\n'],
        "errorType": "ValueError",
        "errorMessage": "bad",
        "requestId": REQUEST_ID,
        "location": "x.py:f:1",
        "tenantId": None,
    })
    record = json.loads(line)
    assert list(record) == [
        "timestamp",
        "level",
        "message",
        "logger",
        "stackTrace",
        "errorType",
        "errorMessage",
        "requestId",
        "location",
        "order",
    ]
    assert record["timestamp"] == "2026-11-21T05:16:09Z"
    assert record["level"] == "ERROR"
    assert "\n" not in line


def test_render_json_keeps_unicode_and_stringifies_unknown_values() -> None:
    """Non-ASCII stays unescaped (ensure_ascii=False) and unencodable extras become str()."""
    line = render_json({"timestamp": T, "level": "INFO", "message": "héllo", "path": Path("/t")})
    assert '"message": "héllo"' in line
    assert json.loads(line)["path"] == "/t"


def test_format_text_record_layout_with_milliseconds() -> None:
    """Text records are [LEVEL] tab ISO.msZ tab request id tab message, newlines as \\r."""
    line = format_text_record(timestamp=T, level="INFO", message="a\nb\n", request_id=REQUEST_ID)
    assert line == f"[INFO]\t2026-11-21T05:16:09.123Z\t{REQUEST_ID}\ta\rb"
    assert format_text_record(timestamp=T, level="INFO", message="m", request_id=None) == (
        "[INFO]\t2026-11-21T05:16:09.123Z\t\tm"
    )


# ---------------------------------------------------------------- worker handler


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe (read end, write end), closed afterwards."""
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def _read_lines(fd: int) -> list[bytes]:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    assert data.endswith(b"\n") or not data
    # Split on \n only: Text records may hold \r, which bytes.splitlines() would cut at.
    return data.split(b"\n")[:-1]


def _install(
    write_fd: int, fmt: LogFormatName = LogFormat.JSON, level: int | None = logging.INFO
) -> LambdaLogHandler:
    return install_worker_logging(write_fd, fmt, level, lambda: REQUEST_ID, lambda: "tenant-1")


def test_handler_writes_marked_official_json_line(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """A handler record is one marked JSON line with request and tenant ids and extra fields."""
    _install(pipe[1])
    logging.getLogger("app.orders").info("order %s", 42, extra={"orderId": 42})
    [line] = _read_lines(pipe[0])
    assert line.startswith(RECORD_MARKER)
    record = json.loads(line[1:])
    assert list(record) == [
        "timestamp",
        "level",
        "message",
        "logger",
        "requestId",
        "tenantId",
        "orderId",
    ]
    assert record["message"] == "order 42"
    assert record["logger"] == "app.orders"
    assert record["requestId"] == REQUEST_ID
    assert record["tenantId"] == "tenant-1"
    assert record["orderId"] == 42


def test_handler_turns_exc_info_into_error_fields_and_location(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """logger.exception fills stackTrace, errorType, errorMessage and location (path:func:line)."""
    _install(pipe[1])

    def failing() -> None:
        raise ValueError("bad input")

    try:
        failing()
    except ValueError:
        logging.getLogger("app").exception("it failed")
    [line] = _read_lines(pipe[0])
    record = json.loads(line[1:])
    assert record["level"] == "ERROR"
    assert record["errorType"] == "ValueError"
    assert record["errorMessage"] == "bad input"
    assert any("failing" in frame for frame in record["stackTrace"])
    path, func, lineno = record["location"].rsplit(":", 2)
    assert path == __file__
    assert func == "test_handler_turns_exc_info_into_error_fields_and_location"
    assert lineno.isdigit()


def test_handler_ignores_exc_info_true_outside_an_exception(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """exc_info=True with no exception being handled adds no error fields and does not fail."""
    _install(pipe[1])
    logging.getLogger("app").error("no exception here", exc_info=True)
    [line] = _read_lines(pipe[0])
    record = json.loads(line[1:])
    assert "errorType" not in record
    assert "location" not in record


def test_handler_keeps_a_dict_message_as_a_json_object(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """A dict logged on its own stays an object (queryable), and %-args still format."""
    _install(pipe[1])
    logging.getLogger("app").info({"a": 1, "nested": {"b": [1, 2]}})
    logging.getLogger("app").info("%s items", 3)
    first, second = _read_lines(pipe[0])
    assert json.loads(first[1:])["message"] == {"a": 1, "nested": {"b": [1, 2]}}
    assert json.loads(second[1:])["message"] == "3 items"


def test_in_process_handler_writes_plain_lines_without_the_marker(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """With an empty marker each record is the bare JSON line (the in-process runtime)."""
    install_worker_logging(pipe[1], LogFormat.JSON, None, lambda: "req-1", lambda: None, marker=b"")
    logging.getLogger("app").warning("plain")
    [line] = _read_lines(pipe[0])
    assert json.loads(line)["requestId"] == "req-1"


def test_level_filtering_follows_the_configured_level(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """Records below AWS_LAMBDA_LOG_LEVEL are dropped; WARNING and CRITICAL keep Python names."""
    _install(pipe[1], level=logging.WARNING)
    log = logging.getLogger("app")
    log.info("dropped")
    log.warning("kept")
    log.critical("fatal")
    levels = [json.loads(line[1:])["level"] for line in _read_lines(pipe[0])]
    assert levels == ["WARNING", "CRITICAL"]


def test_unset_level_leaves_the_root_level_alone(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """With no AWS_LAMBDA_LOG_LEVEL the root logger keeps its level, as in the official runtime."""
    root_logger.setLevel(logging.ERROR)
    _install(pipe[1], level=None)
    assert root_logger.level == logging.ERROR


def test_text_format_writes_one_line_with_traceback_joined_by_cr(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """Text records keep the record's level name and fold a traceback into one \\r-joined line."""
    _install(pipe[1], fmt=LogFormat.TEXT)
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("app").warning("careful", exc_info=True)
    [line] = _read_lines(pipe[0])
    level, timestamp, request_id, message = line[1:].decode().split("\t", 3)
    assert level == "[WARNING]"
    assert timestamp.endswith("Z")
    assert len(timestamp) == len("2026-11-21T05:16:09.123Z")
    assert request_id == REQUEST_ID
    assert message.startswith("careful\rTraceback (most recent call last):\r")
    assert message.endswith("KeyError: 'k'")


def test_install_again_replaces_instead_of_stacking(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """A second install (as in a forked worker) replaces the first handler; others stay."""
    other = logging.NullHandler()
    root_logger.addHandler(other)
    first = _install(pipe[1])
    second = _install(pipe[1])
    ours = [h for h in root_logger.handlers if isinstance(h, LambdaLogHandler)]
    assert ours == [second]
    assert first is not second
    assert other in root_logger.handlers
    logging.getLogger("app").info("once")
    assert len(_read_lines(pipe[0])) == 1


def test_reinstall_in_a_forked_child_writes_each_record_once(
    root_logger: logging.Logger, pipe: tuple[int, int]
) -> None:
    """A worker forked from a set-up template re-installs and writes each record once."""
    _install(pipe[1])
    pid = os.fork()
    if pid == 0:  # the child: any failure shows in its exit status
        status = 1
        try:
            install_worker_logging(
                pipe[1], LogFormat.JSON, logging.INFO, lambda: "child-request", lambda: None
            )
            logging.getLogger("child").info("from the child")
            status = 0
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    [line] = _read_lines(pipe[0])
    assert json.loads(line[1:])["requestId"] == "child-request"


def test_each_record_is_a_single_os_write(
    root_logger: logging.Logger, pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler hands the whole marked line to one os.write call."""
    _install(pipe[1])
    calls: list[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: bytes) -> int:
        calls.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    logging.getLogger("app").info("x" * 3000)
    monkeypatch.undo()
    assert len(calls) == 1
    assert calls[0].startswith(RECORD_MARKER)
    assert calls[0].endswith(b"\n")


def test_threads_never_interleave_lines(root_logger: logging.Logger, tmp_path: Path) -> None:
    """Records logged from many threads at once arrive as whole lines."""
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        _install(fd)
        log = logging.getLogger("app")

        def spam(n: int) -> None:
            for i in range(200):
                log.info("thread %d line %d %s", n, i, "y" * 500)

        threads = [threading.Thread(target=spam, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        os.close(fd)
    lines = (tmp_path / "log").read_bytes().split(b"\n")[:-1]
    assert len(lines) == 1600
    assert all(json.loads(line[1:])["message"].endswith("y" * 500) for line in lines)


# ---------------------------------------------------------------- LineAssembler


def test_assembler_joins_partial_reads_into_lines() -> None:
    """Lines split across reads come out whole; the unterminated rest waits for flush."""
    assembler = LineAssembler(100)
    assert assembler.feed(b"hel") == []
    assert assembler.feed(b"lo\nwor") == [LineChunk(b"hello")]
    assert assembler.feed(b"ld\n\nta") == [LineChunk(b"world"), LineChunk(b"")]
    assert assembler.flush() == [LineChunk(b"ta")]
    assert assembler.flush() == []


def test_assembler_cuts_long_lines_and_marks_the_pieces() -> None:
    """A line over the limit comes out in limit-sized chunks marked continued/resumed."""
    assembler = LineAssembler(4)
    assert assembler.feed(b"abcdefghij\nxy\n") == [
        LineChunk(b"abcd", continued=True),
        LineChunk(b"efgh", continued=True, resumed=True),
        LineChunk(b"ij", resumed=True),
        LineChunk(b"xy"),
    ]


def test_assembler_keeps_a_line_of_exactly_the_limit_whole() -> None:
    """A line of exactly max_line_bytes is one chunk, even when its newline arrives later."""
    assembler = LineAssembler(4)
    assert assembler.feed(b"abcd") == []
    assert assembler.feed(b"\n") == [LineChunk(b"abcd")]


def test_assembler_rejects_a_non_positive_limit() -> None:
    """max_line_bytes must be at least one byte."""
    with pytest.raises(ValueError, match="positive"):
        LineAssembler(0)


def test_default_limit_is_below_the_cloudwatch_event_size() -> None:
    """The default line limit is under CloudWatch's 256 KiB event size less 26 bytes of overhead."""
    assert DEFAULT_MAX_LINE_BYTES < 256 * 1024 - 26
    assert LineAssembler().max_line_bytes == DEFAULT_MAX_LINE_BYTES


def _expected_chunks(stream: bytes, limit: int) -> list[LineChunk]:
    *lines, tail = stream.split(b"\n")
    if tail:
        lines.append(tail)
    chunks: list[LineChunk] = []
    for line in lines:
        pieces = [line[i : i + limit] for i in range(0, len(line), limit)] or [b""]
        for index, piece in enumerate(pieces):
            chunks.append(LineChunk(piece, index < len(pieces) - 1, index > 0))
    return chunks


@settings(database=None)  # keep example files out of the checkout
@given(
    stream=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\n")),
    limit=st.integers(min_value=1, max_value=20),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12),
)
def test_assembler_output_does_not_depend_on_how_the_stream_is_read(
    stream: bytes, limit: int, cuts: list[int]
) -> None:
    """For any stream and any split into reads, the chunks equal those of the whole stream."""
    assembler = LineAssembler(limit)
    bounds = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
    chunks: list[LineChunk] = []
    for start, end in itertools.pairwise(bounds):
        chunks += assembler.feed(stream[start:end])
    chunks += assembler.flush()
    assert chunks == _expected_chunks(stream, limit)
    assert all(len(chunk.data) <= limit for chunk in chunks)
    rejoined = b"".join(c.data + (b"" if c.continued else b"\n") for c in chunks)
    assert rejoined == (stream if stream.endswith(b"\n") or not stream else stream + b"\n")


# ---------------------------------------------------------------- captured lines


def _capture(line: bytes, **overrides: object) -> bytes | None:
    arguments: dict[str, object] = {
        "stream": "stdout",
        "request_id": REQUEST_ID,
        "tenant_id": None,
        "fmt": LogFormat.JSON,
        "min_level": logging.NOTSET,
        "now": T,
    }
    arguments.update(overrides)
    return format_captured_line(line, **arguments)  # type: ignore[arg-type]


def test_marked_line_passes_through_without_marker() -> None:
    """A whole pre-formatted line is written as it is, marker removed, newline added."""
    assert _capture(b'\x1e{"level": "DEBUG"}', min_level=logging.ERROR) == b'{"level": "DEBUG"}\n'


def test_stdout_line_becomes_info_json_record() -> None:
    """Raw stdout is wrapped as an INFO record with requestId and stream."""
    out = _capture(b"hello world", tenant_id="t-9")
    assert out is not None
    assert out.endswith(b"\n")
    assert out.count(b"\n") == 1
    record = json.loads(out)
    assert list(record) == ["timestamp", "level", "message", "requestId", "tenantId", "stream"]
    assert record == {
        "timestamp": "2026-11-21T05:16:09Z",
        "level": "INFO",
        "message": "hello world",
        "requestId": REQUEST_ID,
        "tenantId": "t-9",
        "stream": "stdout",
    }


def test_captured_line_outside_an_invocation_has_empty_request_id() -> None:
    """Without a request id the record says requestId "" as official records do during init."""
    out = _capture(b"booting", request_id=None)
    assert out is not None
    assert json.loads(out)["requestId"] == ""


@pytest.mark.parametrize(
    ("line", "level"),
    [
        (b"DeprecationWarning: old api", "WARNING"),
        (b"some library chatter", "WARNING"),
        (b"Traceback (most recent call last):", "ERROR"),
        (b'  File "/var/task/app.py", line 3, in handler', "ERROR"),
        (b"    raise ValueError('boom')", "ERROR"),
        (b"ValueError: boom", "ERROR"),
        (b"botocore.exceptions.ClientError: denied", "ERROR"),
        (b"Fatal Python error: Segmentation fault", "ERROR"),
        (b"Current thread 0x00007f3a (most recent call first):", "ERROR"),
    ],
)
def test_stderr_level_rule(line: bytes, level: str) -> None:
    """stderr is WARNING except lines shaped like a traceback or fatal-error report (ERROR)."""
    out = _capture(line, stream="stderr")
    assert out is not None
    record = json.loads(out)
    assert record["level"] == level
    assert record["stream"] == "stderr"


def test_captured_lines_below_min_level_are_dropped() -> None:
    """format_captured_line returns None when the line's level is under min_level."""
    assert _capture(b"info chatter", min_level=logging.WARNING) is None
    assert _capture(b"warned", stream="stderr", min_level=logging.ERROR) is None
    assert _capture(b"ValueError: x", stream="stderr", min_level=logging.ERROR) is not None


def test_captured_line_in_text_format() -> None:
    """Text format wraps a captured line as [LEVEL] tab timestamp tab request id tab line."""
    out = _capture(b"hello", fmt=LogFormat.TEXT, stream="stderr")
    assert out == f"[WARNING]\t2026-11-21T05:16:09.123Z\t{REQUEST_ID}\thello\n".encode()


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    """Bytes that are not UTF-8 are replaced with U+FFFD."""
    out = _capture(b"caf\xe9 \xff")
    assert out is not None
    assert json.loads(out)["message"] == "caf\ufffd \ufffd"


def test_continued_chunks_are_marked() -> None:
    """A chunk that the next one continues carries "continued": true (Text: a trailing tag)."""
    out = _capture(b"part one", continued=True)
    assert out is not None
    assert json.loads(out)["continued"] is True
    last = _capture(b"end", resumed=True)
    assert last is not None
    assert "continued" not in json.loads(last)
    text = _capture(b"part", fmt=LogFormat.TEXT, continued=True)
    assert text is not None
    assert text.endswith(b"\tpart\t[continued]\n")


def test_marked_line_cut_into_chunks_is_wrapped_not_passed_through() -> None:
    """A pre-formatted line that was cut is wrapped chunk by chunk, each line valid JSON."""
    first = _capture(b'\x1e{"message": "very lo', continued=True)
    assert first is not None
    assert json.loads(first)["message"] == '\x1e{"message": "very lo'
    middle = _capture(b"\x1eng", continued=True, resumed=True)
    assert middle is not None
    assert json.loads(middle)["message"] == "\x1eng"


def test_escaping_never_pushes_a_record_past_the_limit() -> None:
    """When JSON escaping outgrows the limit the message is split over continued records."""
    line = bytes(range(32)) * 20  # control bytes escape to six bytes each
    out = _capture(line, max_line_bytes=300)
    assert out is not None
    records = out.split(b"\n")[:-1]
    assert len(records) > 1
    assert all(len(record) <= 300 for record in records)
    decoded = [json.loads(record) for record in records]
    assert "".join(r["message"] for r in decoded) == line.decode()
    assert [r.get("continued", False) for r in decoded] == [True] * (len(decoded) - 1) + [False]


def test_assembler_and_formatter_together_keep_every_byte() -> None:
    """Chunks of an over-long raw line, once formatted, reassemble to the original line."""
    assembler = LineAssembler(10)
    line = b"0123456789" * 3 + b"tail"
    chunks = assembler.feed(line + b"\n")
    messages = []
    for chunk in chunks:
        out = _capture(chunk.data, continued=chunk.continued, resumed=chunk.resumed)
        assert out is not None
        messages.append(json.loads(out)["message"])
    assert "".join(messages).encode() == line


# ---------------------------------------------------------------- lines that are JSON objects


POWERTOOLS_LINE = (
    b'{"level":"INFO","location":"handler:7","message":"order stored",'
    b'"timestamp":"2026-11-21 05:16:09,123+0000","service":"orders","cold_start":true,'
    b'"function_request_id":"' + REQUEST_ID.encode() + b'","xray_trace_id":"1-a-b"}'
)


def test_a_json_object_line_stays_that_object_with_the_request_id_added() -> None:
    """A line that is a JSON object is not wrapped: the same keys, top level, as
    written, and requestId added last."""
    out = _capture(POWERTOOLS_LINE, tenant_id="t-9")
    assert out is not None
    assert out == POWERTOOLS_LINE[:-1] + f', "requestId": "{REQUEST_ID}"}}\n'.encode()
    record = json.loads(out)
    assert record["service"] == "orders"
    assert record["cold_start"] is True
    assert list(record)[-1] == "requestId"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"requestId": "mine", "a": 1}', b'{"requestId": "mine", "a": 1}\n'),
        (b"{}", b'{"requestId": "' + REQUEST_ID.encode() + b'"}\n'),
        (b'{ "a" : [1, {"b": 2}] }  \r', b'{ "a" : [1, {"b": 2}], "requestId": "'
         + REQUEST_ID.encode() + b'"}\n'),
    ],
    ids=["own requestId kept", "empty object", "spacing and nesting"],
)
def test_json_object_lines_keep_the_users_keys_and_bytes(line: bytes, expected: bytes) -> None:
    """The user's own requestId wins; the rest of the line is kept byte for byte."""
    assert _capture(line) == expected


def test_json_object_line_outside_an_invocation_gets_an_empty_request_id() -> None:
    """At import time (no invocation) the added requestId is "", as for other lines."""
    assert _capture(b'{"a": 1}', request_id=None) == b'{"a": 1, "requestId": ""}\n'


def test_json_object_line_in_text_format_is_emitted_as_written() -> None:
    """Text format: a JSON line is written as it is, not put in the Text layout."""
    assert _capture(POWERTOOLS_LINE, fmt=LogFormat.TEXT) == POWERTOOLS_LINE + b"\n"


@pytest.mark.parametrize(
    "line",
    [b"{not json", b'{"a": 1', b"[1, 2]", b'"text"', b'{"a": 1} trailing', b" {\"a\": 1}",
     b'{"a": "\xff"}', b"{" * 5000],
)
def test_lines_that_only_look_like_json_are_ordinary_lines(line: bytes) -> None:
    """Not a JSON object (or not valid UTF-8 JSON): wrapped like any other line."""
    out = _capture(line)
    assert out is not None
    record = json.loads(out)
    assert record["message"] == line.decode("utf-8", "replace")
    assert record["stream"] == "stdout"


@pytest.mark.parametrize(
    ("level", "kept_at_warn"),
    [("debug", False), ("INFO", False), ("Warn", True), ("WARNING", True), ("error", True),
     ("FATAL", True), ("CRITICAL", True), ("nonsense", False), (3, False), (None, False)],
)
def test_json_object_lines_are_filtered_by_their_own_level(
    level: object, kept_at_warn: bool
) -> None:
    """As Lambda reads a JSON line: its "level" value, any case, INFO when missing or
    unknown; from stdout and stderr alike."""
    line = json.dumps({"level": level, "msg": "m"} if level is not None else {"msg": "m"}).encode()
    for stream in ("stdout", "stderr"):
        out = _capture(line, stream=stream, min_level=logging.WARNING)
        assert (out is not None) is kept_at_warn, (level, stream)


def test_a_json_line_that_would_outgrow_the_limit_is_kept_as_written() -> None:
    """Adding requestId never pushes a line past the line limit."""
    line = b'{"pad": "' + b"x" * 80 + b'"}'
    assert _capture(line, max_line_bytes=len(line) + 5) == line + b"\n"


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4),
       st.sampled_from([None, ", ", ",", ": ", ":"]))
def test_any_json_object_line_keeps_its_keys_top_level(
    value: dict[str, object], separators: object
) -> None:
    """Whatever the object and its spacing: the output is that object plus requestId
    (unless it had one), on one line."""
    seps = None if separators is None else ((", ", ": ") if separators in (", ", ": ")
                                            else (",", ":"))
    line = json.dumps(value, ensure_ascii=False, separators=seps).encode()
    out = _capture(line)
    assert out is not None
    assert out.count(b"\n") == 1
    expected = dict(value)
    expected.setdefault("requestId", REQUEST_ID)
    assert json.loads(out) == expected
