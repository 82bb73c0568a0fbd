"""The :mod:`logging` side of the log layout: the handler a worker's root logger
gets, and the exception fields of a record.

Apart from :mod:`lambda_bulkhead.logs._format` because importing :mod:`logging`
costs ~11 ms here, and the supervisor, which formats lines but never has
:mod:`logging` records of its own before its first answer, must not pay it on
the cold start.  The template and the in-process runtime import this module.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from lambda_bulkhead.logs._format import (
    RECORD_MARKER,
    LogFormat,
    format_text_record,
    level_name,
    render_json,
    utc_millis,
    write_fully,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import TypeAlias

    from lambda_bulkhead._config import LogFormatName

    ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]

__all__ = [
    "LambdaLogFormatter",
    "LambdaLogHandler",
    "exception_fields",
    "install_worker_logging",
]


def exception_fields(
    exc_info: ExcInfo | tuple[None, None, None] | None,
) -> tuple[list[str], str, str] | None:
    """``(stackTrace, errorType, errorMessage)`` for ``exc_info``, or ``None``."""
    if exc_info is None or exc_info[0] is None or exc_info[1] is None:
        # logging turns exc_info=True outside an except block into (None, None, None).
        return None
    exc_type, exc, tb = exc_info
    return traceback.format_tb(tb), exc_type.__name__, str(exc)


# Attributes every LogRecord has, taken from a live record so that a newer
# Python's additions (taskName in 3.12, which the official runtime would leak
# as an extra field) are not mistaken for extras; plus those that formatters and
# the official runtime set.  Whatever else a record carries came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None)))
_RECORD_ATTRIBUTES |= {"message", "asctime", "aws_request_id", "tenant_id", "_frame_type"}


class LambdaLogFormatter(logging.Formatter):
    """Formats a record as the official runtime does, in JSON or Text.

    Reads ``record.aws_request_id`` and ``record.tenant_id`` (set by
    :class:`LambdaLogHandler`, as the official runtime's filter does).
    """

    def __init__(self, fmt: LogFormatName) -> None:
        super().__init__()
        self.log_format = fmt

    def format(self, record: logging.LogRecord) -> str:
        """One line, without ``\\n``."""
        request_id: str | None = getattr(record, "aws_request_id", None)
        if self.log_format == LogFormat.TEXT:
            return format_text_record(
                timestamp=record.created,
                level=record.levelname,
                message=self._text_message(record),
                request_id=request_id,
            )
        error = exception_fields(record.exc_info)
        stack_trace, error_type, error_message = error or (None, None, None)
        # A dict logged on its own stays an object, so Logs Insights can query
        # its fields, as the official runtime's JSON formatter keeps it.
        message = record.msg if isinstance(record.msg, dict) and not record.args else None
        # Extras first: the layout values after them take any key they share.
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
        fields["timestamp"] = record.created
        fields["level"] = level_name(record.levelno)
        fields["message"] = record.getMessage() if message is None else message
        fields["logger"] = record.name
        fields["stackTrace"] = stack_trace
        fields["errorType"] = error_type
        fields["errorMessage"] = error_message
        fields["requestId"] = request_id
        fields["location"] = (
            f"{record.pathname}:{record.funcName}:{record.lineno}" if error else None
        )
        fields["tenantId"] = getattr(record, "tenant_id", None)
        return render_json(fields)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """The Text layout's timestamp (for subclasses and ``%(asctime)s`` users)."""
        return utc_millis(record.created)

    def _text_message(self, record: logging.LogRecord) -> str:
        # What logging.Formatter appends after the message, as the official Text
        # formatter (a plain logging.Formatter) shows it.
        parts = [record.getMessage()]
        if record.exc_info and exception_fields(record.exc_info):
            parts.append(self.formatException(record.exc_info))
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)


class LambdaLogHandler(logging.Handler):
    """Writes each record to ``fd`` as ``marker + line + b"\\n"``.

    ``marker`` is :data:`RECORD_MARKER` in a supervised worker (the supervisor
    strips it) and empty in the in-process runtime, whose fd 1 is the log itself.

    One ``os.write`` per record, under the handler's lock, so lines from threads
    of one worker never interleave.
    """

    def __init__(
        self,
        fd: int,
        fmt: LogFormatName,
        *,
        request_id: Callable[[], str | None],
        tenant_id: Callable[[], str | None],
        marker: bytes = RECORD_MARKER,
    ) -> None:
        super().__init__()
        self.fd = fd
        self._marker = marker
        self._request_id = request_id
        self._tenant_id = tenant_id
        self.setFormatter(LambdaLogFormatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        """Stamp the invocation ids on ``record``, format it and write it."""
        try:
            # The official runtime sets these attributes on the record too, so
            # user handlers later in the chain can use %(aws_request_id)s.
            record.aws_request_id = self._request_id() or ""
            record.tenant_id = self._tenant_id()
            line = self.format(record).encode("utf-8", "backslashreplace")
            write_fully(self.fd, self._marker + line + b"\n")
        except RecursionError:
            raise
        except Exception:  # logging's contract: report through handleError, never raise
            self.handleError(record)


def install_worker_logging(
    fd: int,
    fmt: LogFormatName,
    level: int | None,
    request_id: Callable[[], str | None],
    tenant_id: Callable[[], str | None],
    marker: bytes = RECORD_MARKER,
) -> LambdaLogHandler:
    """Route the root logger through a :class:`LambdaLogHandler` on ``fd``.

    Replaces a handler installed by an earlier call (say, in the template process
    before a fork) instead of stacking a second one; other handlers stay.  Sets
    the root level when ``level`` is given, as the official runtime does.  Call
    it before user code is imported: ``logging.basicConfig`` then finds a handler
    and does nothing, as on Lambda.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LambdaLogHandler)]:
        root.removeHandler(old)
        old.close()  # only unregisters it: the fd is not the handler's to close
    handler = LambdaLogHandler(fd, fmt, request_id=request_id, tenant_id=tenant_id, marker=marker)
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level)
    return handler
