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
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from lambda_bulkhead.logs._format import (
    ERROR,
    INFO,
    LogFormat,
    LogSettings,
    format_json_record,
    format_text_record,
    level_name,
    utc_seconds,
)
from lambda_bulkhead.supervisor._decisions import InvocationReport, Outcome

__all__ = ["format_report"]

_LOGGER = "lambda_bulkhead.supervisor"


def format_report(report: InvocationReport, settings: LogSettings, now: float) -> bytes | None:
    """The summary line for ``report`` (with its newline), None when filtered out."""
    success = report.outcome == Outcome.SUCCESS
    level = INFO if success else ERROR
    if level < settings.threshold:
        return None
    if success and settings.format == LogFormat.JSON:
        return _success_json(report, now)
    if settings.format == LogFormat.TEXT:
        parts = [
            f"REPORT RequestId: {report.request_id}",
            f"Outcome: {report.outcome}",
            f"Duration: {report.duration_ms:.2f} ms",
            f"Max Memory Used: {report.max_memory_mb:.0f} MB",
            f"Worker: {report.worker_pid}{' (replaced)' if report.worker_replaced else ''}",
        ]
        if report.error_type:
            message = f": {report.error_message}" if report.error_message else ""
            parts.append(f"Error: {report.error_type}{message}")
        if report.signal:
            parts.append(f"Signal: {report.signal}")
        # The stack follows on the same record (format_text_record turns its
        # newlines into \r, as the official runtime does for errors).
        text = "\t".join(parts) + "".join(f"\n{line.rstrip()}" for line in report.stack)
        line = format_text_record(
            timestamp=now, level=level_name(level), message=text,
            request_id=report.request_id,
        )
    else:
        line = format_json_record(
            timestamp=now,
            level=level_name(level),
            message="invocation report",
            logger=_LOGGER,
            stack_trace=list(report.stack) if report.stack else None,
            error_type=report.error_type,
            error_message=report.error_message,
            request_id=report.request_id,
            tenant_id=report.tenant_id,
            extra={
                "type": "bulkhead.report",
                "outcome": report.outcome,
                "durationMs": round(report.duration_ms, 3),
                "maxMemoryUsedMB": round(report.max_memory_mb, 1),
                "workerPid": report.worker_pid,
                "workerReplaced": report.worker_replaced,
                "signal": report.signal,
            },
        )
    return line.encode("utf-8", "backslashreplace") + b"\n"


@functools.cache
def _string_encoder() -> Callable[[object], str]:
    """``json.dumps(text, ensure_ascii=False)``, made once.  json (and re, which it
    imports) is imported by the first report, written after that invocation's
    answer, so the supervisor's way to its first ``/next`` does not pay for it."""
    import json  # noqa: PLC0415

    return json.JSONEncoder(ensure_ascii=False).encode


def _quote(text: str) -> str:
    """``text`` as a JSON string literal."""
    return _string_encoder()(text)


def _success_json(report: InvocationReport, now: float) -> bytes:
    """The JSON record of a success, the same keys and order as the general path
    (``format_json_record``), built directly: it is written once per invocation."""
    tenant = f'"tenantId": {_quote(report.tenant_id)}, ' if report.tenant_id else ""
    replaced = "true" if report.worker_replaced else "false"
    return (
        f'{{"timestamp": "{utc_seconds(now)}", "level": "INFO", '
        f'"message": "invocation report", "logger": "{_LOGGER}", '
        f'"requestId": {_quote(report.request_id)}, {tenant}"type": "bulkhead.report", '
        f'"outcome": "success", "durationMs": {round(report.duration_ms, 3)!r}, '
        f'"maxMemoryUsedMB": {round(report.max_memory_mb, 1)!r}, '
        f'"workerPid": {report.worker_pid}, "workerReplaced": {replaced}}}\n'
    ).encode("utf-8", "backslashreplace")
