"""The runtime's own log: structlog's processor chain, one line per record, in
the official layout.

Every record the runtime writes about itself (the supervisor's and the
in-process runtime's: start-up, workers, Runtime API trouble, the invocation
report) goes through this chain::

    make_filtering_bound_logger   level filter: a method below the threshold is a no-op
    _add_timestamp                "timestamp": the clock's float (unless the call
                                  gave one), rendered last
    _add_level                    "level": the official name (WARNING, CRITICAL, ...)
    _add_exception                exc_info -> stackTrace, errorType, errorMessage
    _render_json | _render_text   the final processor: the line, laid out by
                                  lambda_bulkhead.logs._format (render_json,
                                  format_text_record), as every other record is

:func:`configure` builds a logger from explicit processors with
``structlog.wrap_logger``; structlog's global configuration is never touched, so
handler code that configures structlog for itself is unaffected, and what it
binds with ``structlog.contextvars`` (in-process, where the handler runs in this
process) never enters the runtime's records: there is no ``merge_contextvars``
in this chain.  Callers import this module lazily: structlog (about 80 ms to
import) stays off the path to the first invocation.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from lambda_bulkhead.logs._format import (
    RUNTIME_LOGGER,
    LogFormat,
    format_text_record,
    render_json,
)
from lambda_bulkhead.logs._stdlib import exception_fields

if TYPE_CHECKING:
    from lambda_bulkhead._config import LogFormatName
    from lambda_bulkhead.logs._stdlib import ExcInfo

__all__ = ["configure"]

# structlog calls the wrapped logger's method named after the level; these are
# the names its filtering loggers use (warn/fatal/exception/msg are aliases).
_LEVEL_NAMES = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "error": "ERROR",
    "critical": "CRITICAL",
}

class _LineWriter:
    """The wrapped logger: hands each rendered line, ``\\n`` included, to ``write``."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def _emit(self, line: str) -> None:
        self._write(line + "\n")

    debug = info = warning = error = critical = msg = _emit


def _add_level(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict["level"] = _LEVEL_NAMES.get(method_name, method_name.upper())
    return event_dict


def _make_add_timestamp(clock: Callable[[], float]) -> Processor:
    def _add_timestamp(
        _logger: WrappedLogger, _method_name: str, event_dict: EventDict
    ) -> EventDict:
        # A record made later than the moment it describes (held until the
        # logger exists) brings its own.
        event_dict.setdefault("timestamp", clock())
        return event_dict

    return _add_timestamp


def _exc_info_tuple(value: object) -> ExcInfo | None:
    """structlog's ``exc_info=`` forms: ``True``, an exception, or a sys.exc_info() tuple."""
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if value is True:
        exc_type, exc, tb = sys.exc_info()
        return None if exc_type is None or exc is None else (exc_type, exc, tb)
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return type(value[1]), value[1], value[2]
    return None


def _add_exception(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    if "exc_info" not in event_dict:
        return event_dict
    fields = exception_fields(_exc_info_tuple(event_dict.pop("exc_info")))
    if fields is not None:
        event_dict["stackTrace"], event_dict["errorType"], event_dict["errorMessage"] = fields
    return event_dict


def _render_json(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> str:
    event_dict["message"] = str(event_dict.pop("event", ""))
    return render_json(event_dict)


def _text_value(value: object) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() or c == "=" for c in text) else text


def _render_text(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> str:
    timestamp = event_dict.pop("timestamp")
    level = event_dict.pop("level")
    request_id = event_dict.pop("requestId", None)
    stack_trace = event_dict.pop("stackTrace", None)
    error_type = event_dict.pop("errorType", None)
    error_message = event_dict.pop("errorMessage", None)
    # The official Text layout has no logger or tenant column.
    event_dict.pop("logger", None)
    event_dict.pop("tenantId", None)
    message = str(event_dict.pop("event", ""))
    fields = " ".join(
        f"{key}={_text_value(value)}" for key, value in event_dict.items() if value is not None
    )
    lines = [f"{message} {fields}" if fields else message]
    if error_type is not None:
        lines.append("Traceback (most recent call last):")
        lines.extend(frame.rstrip("\n") for frame in stack_trace or ())
        lines.append(f"{error_type}: {error_message}")
    return format_text_record(
        timestamp=timestamp, level=level, message="\n".join(lines), request_id=request_id
    )


def _threshold(min_level: int | None) -> int:
    """structlog's filtering loggers exist for multiples of ten up to 50: round up."""
    if min_level is None or min_level <= logging.NOTSET:
        return logging.NOTSET
    return min(logging.CRITICAL, -(-min_level // 10) * 10)


def configure(
    fmt: LogFormatName,
    min_level: int | None,
    write: Callable[[str], None],
    *,
    clock: Callable[[], float] = time.time,
    **initial_values: Any,
) -> FilteringBoundLogger:
    """A logger writing one ``fmt`` line (with its ``\\n``) per record to ``write``.

    ``min_level`` is a :mod:`logging` level (``None`` keeps everything).  Records
    name ``logger`` :data:`~lambda_bulkhead.logs._format.RUNTIME_LOGGER` unless
    ``initial_values`` (fields bound to every record) say otherwise.
    """
    processors: list[Processor] = [
        _make_add_timestamp(clock),
        _add_level,
        _add_exception,
        _render_text if fmt == LogFormat.TEXT else _render_json,
    ]
    proxy = structlog.wrap_logger(
        _LineWriter(write),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_threshold(min_level)),
        context_class=dict,
    )
    # bind() resolves the lazy proxy once, so calls go straight to the filtering
    # logger instead of through the proxy.  The context goes here, not to
    # wrap_logger: its first parameter is itself named `logger`.
    context: dict[str, Any] = {"logger": RUNTIME_LOGGER, **initial_values}
    logger: FilteringBoundLogger = proxy.bind(**context)
    return logger
