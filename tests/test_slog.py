"""Tests for lambda_bulkhead.logs._structlog: the supervisor's structlog logger."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambda_bulkhead._config import LogFormatName

import json
import logging

import structlog
from structlog.testing import capture_logs
from structlog.typing import FilteringBoundLogger

from lambda_bulkhead.logs._format import RUNTIME_LOGGER, LogFormat
from lambda_bulkhead.logs._structlog import configure

T = 1795238169.123  # 2026-11-21T05:16:09.123Z


class Lines:
    """Collects what the logger writes."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def __call__(self, line: str) -> None:
        self.written.append(line)

    def records(self) -> list[dict[str, object]]:
        assert all(line.endswith("\n") and line.count("\n") == 1 for line in self.written)
        return [json.loads(line) for line in self.written]


def _logger(
    lines: Lines, fmt: LogFormatName = LogFormat.JSON, min_level: int | None = logging.INFO
) -> FilteringBoundLogger:
    return configure(fmt, min_level, lines, clock=lambda: T)


def test_json_line_layout() -> None:
    """A record is one JSON line: timestamp, level, message, logger, then keyword fields."""
    lines = Lines()
    _logger(lines).info("worker started", pid=42, slot=3)
    [record] = lines.records()
    assert list(record) == ["timestamp", "level", "message", "logger", "pid", "slot"]
    assert record == {
        "timestamp": "2026-11-21T05:16:09Z",
        "level": "INFO",
        "message": "worker started",
        "logger": RUNTIME_LOGGER,
        "pid": 42,
        "slot": 3,
    }


def test_records_below_min_level_are_not_written() -> None:
    """Methods below min_level write nothing; None keeps every level."""
    lines = Lines()
    log = _logger(lines, min_level=logging.WARNING)
    log.debug("d")
    log.info("i")
    log.warning("w")
    assert [r["message"] for r in lines.records()] == ["w"]
    everything = Lines()
    _logger(everything, min_level=None).debug("d")
    assert [r["level"] for r in everything.records()] == ["DEBUG"]


def test_in_between_min_level_rounds_up() -> None:
    """A threshold between standard levels (25) keeps WARNING and drops INFO."""
    lines = Lines()
    log = _logger(lines, min_level=25)
    log.info("dropped")
    log.warning("kept")
    assert [r["message"] for r in lines.records()] == ["kept"]


def test_level_names_match_the_official_python_names() -> None:
    """warn/fatal/exception aliases are named WARNING, CRITICAL and ERROR."""
    lines = Lines()
    log = _logger(lines)
    log.warn("a")
    log.fatal("b")
    log.critical("c")
    log.error("d")
    assert [r["level"] for r in lines.records()] == ["WARNING", "CRITICAL", "CRITICAL", "ERROR"]


def test_exception_fills_the_official_error_fields() -> None:
    """log.exception turns the active exception into stackTrace, errorType and errorMessage."""
    lines = Lines()
    try:
        raise RuntimeError("worker 7 died")
    except RuntimeError:
        _logger(lines).exception("supervision failed", pid=7)
    [record] = lines.records()
    assert list(record)[:7] == [
        "timestamp",
        "level",
        "message",
        "logger",
        "stackTrace",
        "errorType",
        "errorMessage",
    ]
    assert record["errorType"] == "RuntimeError"
    assert record["errorMessage"] == "worker 7 died"
    assert record["pid"] == 7


def test_exception_instance_as_exc_info() -> None:
    """exc_info may be an exception instance, as structlog allows."""
    lines = Lines()
    _logger(lines).warning("ignored", exc_info=ValueError("nope"))
    [record] = lines.records()
    assert record["errorType"] == "ValueError"
    assert record["stackTrace"] == []


def test_a_request_id_field_takes_its_layout_place() -> None:
    """A requestId given with the call sits where the official layout puts it."""
    lines = Lines()
    _logger(lines).info("dispatched", worker=1, requestId="req-1", attempt=2)
    [record] = lines.records()
    assert list(record) == [
        "timestamp",
        "level",
        "message",
        "logger",
        "requestId",
        "worker",
        "attempt",
    ]
    assert record["requestId"] == "req-1"


def test_positional_arguments_are_interpolated() -> None:
    """log.info("x %s", y) interpolates like logging does."""
    lines = Lines()
    _logger(lines).info("restarted %d workers", 3)
    assert lines.records()[0]["message"] == "restarted 3 workers"


def test_bound_values_and_logger_override() -> None:
    """Initial values and bind() add fields; a bound logger name replaces the default."""
    lines = Lines()
    log = configure(LogFormat.JSON, None, lines, clock=lambda: T, logger="lambda_bulkhead.pool")
    log.bind(pool="main").info("sized", workers=4)
    [record] = lines.records()
    assert record["logger"] == "lambda_bulkhead.pool"
    assert list(record)[4:] == ["pool", "workers"]


def test_text_layout() -> None:
    """Text records are [LEVEL] tab ms timestamp tab request id tab message key=value..."""
    lines = Lines()
    _logger(lines, fmt=LogFormat.TEXT).warning("worker killed", pid=9, reason="out of memory")
    assert lines.written == [
        "[WARNING]\t2026-11-21T05:16:09.123Z\t\tworker killed pid=9 reason='out of memory'\n"
    ]


def test_text_layout_folds_tracebacks_into_one_line() -> None:
    """In Text format an exception follows the message on the same line, joined by \\r."""
    lines = Lines()
    try:
        raise OSError("pipe closed")
    except OSError:
        _logger(lines, fmt=LogFormat.TEXT).exception("read failed")
    [line] = lines.written
    assert line.count("\n") == 1
    assert line.endswith("\rOSError: pipe closed\n")
    assert "\tread failed\rTraceback (most recent call last):\r" in line


def test_global_structlog_configuration_is_untouched() -> None:
    """configure() leaves structlog's global config alone, so capture_logs does not see it."""
    before = structlog.get_config()
    lines = Lines()
    with capture_logs() as captured:
        _logger(lines).info("private")
    assert captured == []
    assert [r["message"] for r in lines.records()] == ["private"]
    assert structlog.get_config() == before


def test_text_layout_has_no_tenant_column() -> None:
    """A tenantId, like the logger name, has no place in the official Text
    layout: it is not appended as a field; the request id takes its column."""
    lines = Lines()
    log = _logger(lines, fmt=LogFormat.TEXT)
    log.info("dispatched", worker=1, requestId="req-1", tenantId="t-1")
    assert lines.written == ["[INFO]\t2026-11-21T05:16:09.123Z\treq-1\tdispatched worker=1\n"]
