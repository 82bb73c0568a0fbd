"""The per-invocation summary record: the ``platform.report`` idea, from the
runtime's side, with what only the runtime knows (outcome, worker, signal).

JSON::

    {"timestamp": ..., "level": "INFO", "message": "invocation report",
     "logger": "lambda_bulkhead.supervisor", "requestId": ..., "type": "bulkhead.report",
     "outcome": "success", "durationMs": 1.23, "maxMemoryUsedMB": 41.2,
     "workerPid": 123, "workerReplaced": false}

plus ``stackTrace``, ``errorType`` and ``errorMessage`` (what ``/error`` was
posted with) for the failures, and ``signal`` for crashes: the handler's
traceback for ``error``, faulthandler's stack for ``crash`` and ``timeout``.
Text: ``REPORT RequestId: <id>\\tOutcome: crash\\tDuration: 1.23 ms\\t...``, then
the stack, one ``\\r``-separated line per line.

A ``success`` is an ``INFO`` record, every failure an ``ERROR`` one (the official
runtime logs a handler's exception at ``ERROR`` too): with
``AWS_LAMBDA_LOG_LEVEL=ERROR`` only failures are reported.

Only the record's content is made here: it is emitted through the runtime's
log (:mod:`lambda_bulkhead.logs._structlog`), which lays it out as every other
record.  The invocation's ids are fields of the call, as the record is about
that one invocation: bound as structlog context variables around each record
instead, they cost the supervisor about 10 µs per invocation, a tenth of its
CPU (docs/benchmarks.md, "The summary record").
"""

from __future__ import annotations

from lambda_bulkhead.logs._format import LogFormat
from lambda_bulkhead.supervisor._decisions import InvocationReport, Outcome

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from lambda_bulkhead._config import LogFormatName
    from lambda_bulkhead.logs._interface import RuntimeLog

__all__ = ["emit_report", "report_record"]


def report_record(report: InvocationReport, fmt: LogFormatName) -> tuple[str, str, dict[str, Any]]:
    """``(level method, message, fields)`` of the summary record for ``report``."""
    outcome = report.outcome.value
    method = "info" if report.outcome is Outcome.SUCCESS else "error"
    if fmt == LogFormat.TEXT:
        parts = [
            f"REPORT RequestId: {report.request_id}",
            f"Outcome: {outcome}",
            f"Duration: {report.duration_ms:.2f} ms",
            f"Max Memory Used: {report.max_memory_mb:.0f} MB",
            f"Worker: {report.worker_pid}{' (replaced)' if report.worker_replaced else ''}",
        ]
        if report.error_type:
            message = f": {report.error_message}" if report.error_message else ""
            parts.append(f"Error: {report.error_type}{message}")
        if report.signal:
            parts.append(f"Signal: {report.signal}")
        # The stack follows on the same record (the Text layout turns its
        # newlines into \r, as the official runtime does for errors).
        text = "\t".join(parts) + "".join(f"\n{line.rstrip()}" for line in report.stack)
        return method, text, {"requestId": report.request_id}
    return method, "invocation report", {
        "requestId": report.request_id,
        "tenantId": report.tenant_id,
        "stackTrace": list(report.stack) if report.stack else None,
        "errorType": report.error_type,
        "errorMessage": report.error_message,
        "type": "bulkhead.report",
        "outcome": outcome,
        "durationMs": round(report.duration_ms, 3),
        "maxMemoryUsedMB": round(report.max_memory_mb, 1),
        "workerPid": report.worker_pid,
        "workerReplaced": report.worker_replaced,
        "signal": report.signal,
    }


def emit_report(
    log: RuntimeLog, report: InvocationReport, fmt: LogFormatName, timestamp: float | None = None
) -> None:
    """Log the summary record of ``report`` through the runtime's log (structlog's
    chain).  ``timestamp``: when the invocation ended, for a record emitted
    later (default: now)."""
    method, message, fields = report_record(report, fmt)
    if timestamp is not None:
        fields["timestamp"] = timestamp
    getattr(log, method)(message, **fields)
