"""Tests for lambda_bulkhead.supervisor._report: the per-invocation summary record."""

from __future__ import annotations

import json
import logging

import pytest

from lambda_bulkhead.logs._format import LogFormat, LogSettings, format_json_record
from lambda_bulkhead.supervisor._decisions import InvocationReport, Outcome
from lambda_bulkhead.supervisor._report import format_report

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
def test_the_success_fast_path_matches_the_general_record(
    tenant_id: str | None, replaced: bool
) -> None:
    """The specialised success record has the same keys, order and values as
    format_json_record builds for it, escapes included."""
    report = InvocationReport(
        request_id='id-"quoted"\\\u2028', tenant_id=tenant_id, outcome=Outcome.SUCCESS,
        duration_ms=1.23456, max_memory_mb=41.27, worker_pid=4321, worker_replaced=replaced,
    )
    now = 1_795_000_000.5
    fast = format_report(report, LogSettings(), now)
    assert fast is not None
    general = format_json_record(
        timestamp=now, level="INFO", message="invocation report",
        logger="lambda_bulkhead.supervisor", request_id=report.request_id, tenant_id=tenant_id,
        extra={
            "type": "bulkhead.report", "outcome": "success", "durationMs": 1.235,
            "maxMemoryUsedMB": 41.3, "workerPid": 4321, "workerReplaced": replaced,
        },
    )
    assert fast.endswith(b"\n")
    assert list(json.loads(fast).items()) == list(json.loads(general).items())
