"""Tests for lambda_bulkhead.supervisor._report: the per-invocation summary record,
emitted through the runtime's structlog chain."""

from __future__ import annotations

import json
import logging
import os

import pytest
import structlog

from lambda_bulkhead.logs._format import LogFormat, LogSettings
from lambda_bulkhead.logs._structlog import configure
from lambda_bulkhead.logs._writer import LogWriter, default_log
from lambda_bulkhead.supervisor._decisions import InvocationReport, Outcome
from lambda_bulkhead.supervisor._report import emit_report

T = 1795238169.123  # 2026-11-21T05:16:09.123Z
STACK = ("Current thread 0x00007f (most recent call first):\n",
         '  File "/var/task/app.py", line 9 in handler\n')


def _report(outcome: str, **fields: object) -> InvocationReport:
    values: dict[str, object] = {
        "request_id": "req-1", "tenant_id": None, "outcome": Outcome(outcome),
        "duration_ms": 12.3456, "max_memory_mb": 41.26, "worker_pid": 321,
        "worker_replaced": outcome != "success",
    }
    values.update(fields)
    return InvocationReport(**values)  # type: ignore[arg-type]


def format_report(report: InvocationReport, settings: LogSettings, now: float) -> bytes | None:
    """The line the runtime's log writes for ``report`` at ``now`` (None: filtered)."""
    written: list[str] = []
    log = configure(settings.format, settings.level, written.append, clock=lambda: now)
    emit_report(log, report, settings.format)
    assert len(written) <= 1
    return written[0].encode() if written else None


def _json(report: InvocationReport, level: int | None = None) -> dict[str, object] | None:
    line = format_report(report, LogSettings(level=level), T)
    if line is None:
        return None
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    value = json.loads(line)
    assert isinstance(value, dict)
    return value


def test_success_record_fields_and_order() -> None:
    """A success is an INFO record with the outcome, duration, peak memory and worker."""
    record = _json(_report("success", tenant_id="t-1"))
    assert record == {
        "timestamp": "2026-11-21T05:16:09Z", "level": "INFO", "message": "invocation report",
        "logger": "lambda_bulkhead.supervisor", "requestId": "req-1", "tenantId": "t-1",
        "type": "bulkhead.report", "outcome": "success", "durationMs": 12.346,
        "maxMemoryUsedMB": 41.3, "workerPid": 321, "workerReplaced": False,
    }
    assert list(record)[:4] == ["timestamp", "level", "message", "logger"]


def test_crash_record_has_the_signal_and_the_stack() -> None:
    """A crash is an ERROR record with errorType/errorMessage, signal and faulthandler's stack."""
    record = _json(_report(
        "crash", error_type="Runtime.ExitError", signal="SIGSEGV", stack=STACK,
        error_message="RequestId: req-1 Error: Runtime exited with error: signal: "
        "segmentation fault",
    ))
    assert record is not None
    assert list(record) == [
        "timestamp", "level", "message", "logger", "stackTrace", "errorType", "errorMessage",
        "requestId", "type", "outcome", "durationMs", "maxMemoryUsedMB", "workerPid",
        "workerReplaced", "signal",
    ]
    assert record["level"] == "ERROR"
    assert record["stackTrace"] == list(STACK)
    assert record["signal"] == "SIGSEGV"


@pytest.mark.parametrize(
    ("outcome", "kept"),
    [("success", False), ("error", True), ("crash", True), ("timeout", True), ("oom", True)],
)
def test_level_error_keeps_only_failures(outcome: str, kept: bool) -> None:
    """With AWS_LAMBDA_LOG_LEVEL=ERROR a success is not reported; every failure is."""
    record = _json(_report(outcome, error_type=None if outcome == "success" else "X"),
                   level=logging.ERROR)
    assert (record is not None) is kept


def test_text_report_line() -> None:
    """Text: REPORT fields tab-separated, then the stack on the same line (\\r-separated)."""
    report = _report(
        "error", error_type="ValueError", error_message="boom",
        stack=('  File "/var/task/app.py", line 3, in handler\n    raise ValueError("boom")\n',),
    )
    line = format_report(report, LogSettings(format=LogFormat.TEXT), T)
    assert line == (
        b"[ERROR]\t2026-11-21T05:16:09.123Z\treq-1\tREPORT RequestId: req-1\tOutcome: error\t"
        b"Duration: 12.35 ms\tMax Memory Used: 41 MB\tWorker: 321 (replaced)\t"
        b"Error: ValueError: boom\r"
        b'  File "/var/task/app.py", line 3, in handler\r    raise ValueError("boom")\n'
    )


@pytest.mark.parametrize("tenant_id", [None, "tenant-\u00e9\"1"])
@pytest.mark.parametrize("replaced", [False, True])
def test_success_record_is_byte_identical_to_the_previous_direct_rendering(
    tenant_id: str | None, replaced: bool
) -> None:
    """Through the structlog chain, a success record has the bytes the direct
    f-string renderer of the first version wrote, escapes included."""
    report = InvocationReport(
        request_id='id-"quoted"\\\u2028', tenant_id=tenant_id, outcome=Outcome.SUCCESS,
        duration_ms=1.23456, max_memory_mb=41.27, worker_pid=4321, worker_replaced=replaced,
    )
    now = 1_795_000_000.5
    tenant = f'"tenantId": {json.dumps(tenant_id, ensure_ascii=False)}, ' if tenant_id else ""
    previous = (
        f'{{"timestamp": "2026-11-18T11:06:40Z", "level": "INFO", '
        f'"message": "invocation report", "logger": "lambda_bulkhead.supervisor", '
        f'"requestId": {json.dumps(report.request_id, ensure_ascii=False)}, {tenant}'
        f'"type": "bulkhead.report", "outcome": "success", "durationMs": 1.235, '
        f'"maxMemoryUsedMB": 41.3, "workerPid": 4321, '
        f'"workerReplaced": {"true" if replaced else "false"}}}\n'
    ).encode()
    assert format_report(report, LogSettings(), now) == previous


def test_a_handlers_structlog_contextvars_stay_out_of_the_runtimes_records() -> None:
    """What a handler binds with structlog.contextvars (in-process, it shares the
    runtime's process) tags neither the summary record nor the runtime's other
    records: the summary carries its own ids as fields."""
    structlog.contextvars.bind_contextvars(requestId="handler's", user="u-1")
    try:
        written: list[str] = []
        log = configure(LogFormat.JSON, None, written.append, clock=lambda: T)
        log.info("worker forked")
        emit_report(log, _report("success", tenant_id="t-1"), LogFormat.JSON)
    finally:
        structlog.contextvars.clear_contextvars()
    forked, summary = (json.loads(line) for line in written)
    assert "requestId" not in forked
    assert "user" not in forked
    assert (summary["requestId"], summary["tenantId"]) == ("req-1", "t-1")
    assert "user" not in summary


def test_a_message_with_a_lone_surrogate_is_written_escaped() -> None:
    """An error message holding undecodable bytes (surrogateescape) reaches the
    log escaped, through the runtime's default log and its writer."""
    read_fd, write_fd = os.pipe()
    try:
        writer = LogWriter(write_fd)
        name = b"caf\xe9".decode("utf-8", "surrogateescape")
        report = _report("error", error_type="ValueError", error_message=f"bad file {name}")
        emit_report(default_log(LogSettings(), writer), report, LogFormat.JSON)
        writer.close()
        line = os.read(read_fd, 65536)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert b"caf\\udce9" in line
    assert json.loads(line)["errorMessage"] == f"bad file {name}"


def test_a_held_report_keeps_the_time_the_invocation_ended() -> None:
    """A report emitted later (held until the runtime log exists) is stamped with
    the time given, not the time it was written."""
    written: list[str] = []
    log = configure(LogFormat.TEXT, None, written.append, clock=lambda: T + 60)
    emit_report(log, _report("success"), LogFormat.TEXT, T)
    emit_report(log, _report("success"), LogFormat.TEXT)
    assert [line.split("\t")[1] for line in written] == [
        "2026-11-21T05:16:09.123Z", "2026-11-21T05:17:09.123Z",
    ]
