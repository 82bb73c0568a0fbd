"""The one exception hierarchy of lambda-bulkhead.

::

    BulkheadError
    ├── RuntimeApiError            fatal: the loop cannot go on (the seed's RuntimeError)
    │   ├── NotRunningInLambda     AWS_LAMBDA_RUNTIME_API is not set
    │   ├── InvalidEndpoint        AWS_LAMBDA_RUNTIME_API is not host:port
    │   ├── TransportError         the connection to the Runtime API failed
    │   ├── MissingRequestId       /next answered without Lambda-Runtime-Aws-Request-Id
    │   └── UnexpectedStatus       a call answered a status we cannot go on from (names the call)
    ├── ConfigError                bad environment or flags (the CLI exits 2)
    │   └── PackageError           `lambda-bulkhead package` cannot build the zip
    ├── RestartStorm               fatal: workers keep dying without completing an invocation
    └── InvocationError            one invocation failed: posted to /error, the loop goes on
        ├── HandlerCrash           the handler raised; built from the exception
        ├── InitError              the handler could not be loaded: posted to /init/error
        ├── BrokenEvent            /next's event could not be read (Runtime.UnmarshalError)
        └── InvalidEvent           a typed decoder rejected the payload (Runtime.InvalidEvent)

Every :class:`InvocationError` carries the Lambda ``errorType`` it is posted
with; the header value sent beside it is :func:`error_type_header`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

__all__ = [
    "MAX_RESPONSE_BYTES",
    "BrokenEvent",
    "BulkheadError",
    "ConfigError",
    "HandlerCrash",
    "InitError",
    "InvalidEndpoint",
    "InvalidEvent",
    "InvocationError",
    "MissingRequestId",
    "NotRunningInLambda",
    "PackageError",
    "RestartStorm",
    "RuntimeApiError",
    "TransportError",
    "UnexpectedStatus",
    "error_type_header",
    "handler_stack",
    "runtime_exited",
    "too_large_error",
]

#: The Runtime API's limit on a buffered ``/response`` body (6 MB plus framing
#: slack): a larger answer is posted as :func:`too_large_error` instead.
MAX_RESPONSE_BYTES = 6_291_556



class BulkheadError(Exception):
    """Base of every exception lambda-bulkhead raises."""


class RuntimeApiError(BulkheadError):
    """A fatal error of the runtime loop: the process should exit non-zero."""


class NotRunningInLambda(RuntimeApiError):
    """``AWS_LAMBDA_RUNTIME_API`` is not set."""

    def __init__(self) -> None:
        super().__init__(
            "AWS_LAMBDA_RUNTIME_API is not set: not running in a Lambda execution "
            "environment (use `lambda-bulkhead local` to run against the emulator)"
        )


class InvalidEndpoint(RuntimeApiError):
    """``AWS_LAMBDA_RUNTIME_API`` is not a ``host:port``."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"AWS_LAMBDA_RUNTIME_API={endpoint!r} is not host:port")


class TransportError(RuntimeApiError):
    """The connection to the Runtime API failed during ``call``.

    ``headers``: the answer's headers (lower-case names) when they arrived
    complete before the failure, so that ``/next`` can still name the
    invocation whose event was lost.
    """

    def __init__(self, call: str, reason: str, headers: Mapping[str, str] | None = None) -> None:
        self.call = call
        self.reason = reason
        self.headers = headers
        super().__init__(f"Runtime API {call}: transport failed: {reason}")


class MissingRequestId(RuntimeApiError):
    """``/next`` answered without a ``Lambda-Runtime-Aws-Request-Id``."""

    def __init__(self) -> None:
        super().__init__("Runtime API next: answer has no Lambda-Runtime-Aws-Request-Id")


class UnexpectedStatus(RuntimeApiError):
    """The Runtime API answered ``call`` with a status the runtime cannot go on from."""

    def __init__(self, call: str, status: int, body: bytes = b"") -> None:
        self.call = call
        self.status = status
        self.body = body
        detail = body[:200].decode("utf-8", "replace")
        super().__init__(f"Runtime API {call}: unexpected status {status}: {detail}")


class ConfigError(BulkheadError):
    """Bad environment or command-line configuration."""


class PackageError(ConfigError):
    """``lambda-bulkhead package`` cannot build the zip: a requirement with no
    wheel for the target, pip failing, a clash between files, a zip over
    Lambda's limit."""


class RestartStorm(BulkheadError):
    """Workers keep dying without completing an invocation: the runtime gives up
    so that Lambda re-initialises the environment."""


class InvocationError(BulkheadError):
    """A failure reported to Lambda for one invocation (or for init).

    Handlers may raise it to choose the ``errorType`` the caller sees.
    """

    def __init__(
        self,
        error_type: str,
        error_message: str,
        stack_trace: Sequence[str] = (),
        causes: Sequence[InvocationError] = (),
    ) -> None:
        super().__init__(error_message)
        self.error_type = error_type
        self.error_message = error_message
        self.stack_trace = tuple(stack_trace)
        self.causes = tuple(causes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_type!r}, {self.error_message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InvocationError):
            return NotImplemented
        return (
            self.error_type == other.error_type
            and self.error_message == other.error_message
            and self.stack_trace == other.stack_trace
            and self.causes == other.causes
        )

    __hash__ = BulkheadError.__hash__


class HandlerCrash(InvocationError):
    """What the runtime reports when a handler raises instead of returning."""

    @classmethod
    def from_exception(cls, exc: BaseException) -> HandlerCrash:
        """Describe ``exc``: its class name, message, stack and chained causes.

        The runtime's own frames at the top of the stack are left out, so the
        stack starts in the handler, as the official runtime reports it.
        """
        return cls(
            type(exc).__name__,
            str(exc),
            handler_stack(exc),
            tuple(cls.from_exception(cause) for cause in _chain(exc)),
        )


_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
# The machinery between the runtime and the handler's first frame: the import
# system's for a module failing at import time, asyncio's for a coroutine handler.
_MACHINERY_FRAMES = (
    _STDLIB_DIR + "importlib" + os.sep,
    "<frozen importlib.",
    _STDLIB_DIR + "asyncio" + os.sep,
)


def handler_stack(exc: BaseException) -> list[str]:
    """``exc``'s stack as ``traceback.format_list`` lines, less the runtime's leading
    frames (and the import machinery's for an import-time failure, asyncio's for a
    coroutine handler)."""
    import traceback  # noqa: PLC0415 - only failures pay for it, not the cold start

    frames = traceback.extract_tb(exc.__traceback__)
    first = 0
    while first < len(frames) and frames[first].filename.startswith(
        (_RUNTIME_DIR, *_MACHINERY_FRAMES)
    ):
        first += 1
    # Plain (file, line, function, source) tuples, as the official runtime formats
    # them: no column carets (``~~~^^^``), which FrameSummary objects would add.
    return traceback.format_list(
        [(frame.filename, frame.lineno or 0, frame.name, frame.line) for frame in frames[first:]]
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """The exceptions ``exc`` was raised from or during, nearest first, cycles cut."""
    seen = {id(exc)}
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None:
        nxt = current.__cause__
        if nxt is None and not current.__suppress_context__:
            nxt = current.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        chain.append(nxt)
        current = nxt
    return chain


class InitError(InvocationError):
    """The handler could not be loaded; posted to ``/init/error``."""


class BrokenEvent(InvocationError):
    """``/next`` named an invocation but its event could not be read (the
    connection failed mid-body): posted to ``/error`` for that request id, so
    the invocation is answered rather than lost."""

    def __init__(self, request_id: str, invocation_id: str | None, reason: str) -> None:
        super().__init__("Runtime.UnmarshalError", f"Unable to read the event: {reason}")
        self.request_id = request_id
        self.invocation_id = invocation_id


class InvalidEvent(InvocationError):
    """A typed decoder rejected the payload: ``Runtime.InvalidEvent``, naming the field."""

    def __init__(self, message: str) -> None:
        super().__init__("Runtime.InvalidEvent", message)


def error_type_header(error_type: str) -> str:
    """The ``Lambda-Runtime-Function-Error-Type`` value sent for ``error_type``.

    The platform accepts ``(Runtime|Function).[A-Z][a-zA-Z]+`` and records anything
    else as ``Runtime.Unknown``.  ``Runtime.*``/``Function.*`` types that fit are
    sent as they are; a handler's exception class ``ValueError`` becomes
    ``Function.ValueError``; ``Sandbox.Timedout`` becomes ``Runtime.Timedout``;
    a name that fits no form becomes ``Function.Unhandled``.
    """
    prefix, _, name = error_type.rpartition(".")
    if not _is_bare_name(name):
        return "Function.Unhandled"
    if prefix in ("Runtime", "Function"):
        return error_type
    if prefix == "Sandbox":
        return f"Runtime.{name}"
    return f"Function.{name}"


def _is_bare_name(name: str) -> bool:
    """``[A-Z][a-zA-Z]+`` (without ``re``, which costs the cold start ~4 ms)."""
    return len(name) > 1 and name.isascii() and name.isalpha() and name[0].isupper()


def runtime_exited(reason: str, request_id: str | None = None) -> str:
    """The ``errorMessage`` of a runtime (or worker) that ended: Lambda's own words,
    ``RequestId: <id> Error: Runtime exited with error: <reason>``, without the
    ``RequestId`` part where no invocation is named.  The one place this text is
    built: callers choose the error type (``Runtime.ExitError``,
    ``Runtime.OutOfMemory``) and the reason."""
    if request_id is None:
        return f"Runtime exited with error: {reason}"
    return f"RequestId: {request_id} Error: Runtime exited with error: {reason}"


def too_large_error(size: int) -> InvocationError:
    """The error posted instead of a response the platform refused as too large."""
    return InvocationError(
        "Function.ResponseSizeTooLarge",
        f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({MAX_RESPONSE_BYTES} bytes).",
    )
