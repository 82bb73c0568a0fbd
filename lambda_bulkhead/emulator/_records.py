"""What the emulator hands back: invoke results and the history of the Runtime API calls.

The history is written on the event-loop thread and read from any thread, so
it sits behind one lock and is read as snapshot copies.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from lambda_bulkhead.emulator._faults import NextFault, PostFault

__all__ = [
    "ApiCall",
    "ExtensionInfo",
    "History",
    "InitErrorReport",
    "InvokeKind",
    "InvokeResult",
    "NextDelivery",
    "RestoreErrorReport",
    "RuntimeAnswer",
    "ShutdownReport",
    "StreamChunk",
]

InvokeKind = Literal["response", "error", "timeout", "exit", "init_error", "restore_error"]
"""How an invocation ended."""


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One HTTP chunk of a streamed ``/response``, as the runtime sent it.

    ``at`` is ``time.monotonic()`` when its last byte was read.
    """

    data: bytes
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeResult:
    """What the caller of an invoke gets, as the RIE's invoke endpoint answers it.

    ``headers`` are the HTTP answer's headers (``Content-Type``,
    ``X-Amzn-RequestId``, and ``X-Amz-Function-Error: Unhandled`` for a
    function error or timeout).

    For a streamed answer (``streamed``): ``body`` is what the caller got (after
    the prelude of an HTTP integration response; empty when the chunks were
    only counted), ``chunks`` the runtime's chunks as sent (prelude included;
    empty when only counted), ``chunk_count``, ``stream_bytes`` and
    ``stream_sha256`` describe the same bytes either way, ``trailers`` are the
    trailers the caller got, ``stream_error_type`` and ``stream_error_body``
    (decoded from base64) the error that ended the stream, if any, and
    ``caller_disconnected`` says the caller went away before the end.
    """

    kind: InvokeKind
    status: int
    headers: Mapping[str, str]
    body: bytes
    request_id: str
    invocation_id: str
    streamed: bool = False
    chunks: tuple[StreamChunk, ...] = ()
    chunk_count: int = 0
    stream_bytes: int = 0
    stream_sha256: str | None = None
    trailers: Mapping[str, str] = field(default_factory=dict)
    stream_error_type: str | None = None
    stream_error_body: bytes | None = None
    caller_disconnected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeAnswer:
    """One ``POST .../{id}/response`` or ``.../{id}/error`` and how the emulator answered it.

    ``headers`` are the request's headers with lower-cased names.
    ``invocation_id`` is the ``Lambda-Runtime-Invocation-Id`` the runtime
    echoed (``None`` if absent); ``expected_invocation_id`` the one ``/next``
    sent for that request id (``None`` if the id is unknown).  ``status`` is
    ``None`` when the connection was reset instead of answered.  A streamed
    ``/response`` (``streamed``) is recorded once its stream ended, with an empty
    ``body`` (the stream is in the :class:`InvokeResult`) and its ``trailers``.
    """

    call: Literal["response", "error"]
    request_id: str
    headers: Mapping[str, str]
    body: bytes
    error_type: str | None
    invocation_id: str | None
    expected_invocation_id: str | None
    status: int | None
    fault: PostFault | None
    streamed: bool = False
    trailers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class NextDelivery:
    """One answer to ``GET .../invocation/next``, as sent.

    ``request_id`` is the invocation it delivered (``None`` when it delivered
    none, e.g. a status fault).  ``headers`` are as sent, after any fault;
    ``body_size`` is the ``Content-Length`` declared.
    """

    request_id: str | None
    status: int
    headers: tuple[tuple[str, str], ...]
    body_size: int
    fault: NextFault | None


@dataclass(frozen=True, slots=True, kw_only=True)
class InitErrorReport:
    """One ``POST /runtime/init/error`` (``headers`` with lower-cased names)."""

    error_type: str | None
    headers: Mapping[str, str]
    body: bytes
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreErrorReport:
    """One ``POST /runtime/restore/error`` (``headers`` with lower-cased names)."""

    error_type: str | None
    headers: Mapping[str, str]
    body: bytes
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiCall:
    """One lifecycle call, in the order the emulator saw it.

    ``name`` is the call (``"extension/register"``, ``"extension/event/next"``,
    ``"invocation/next"``, ``"init/error"``, ``"restore/next"``,
    ``"restore/error"``) or an event of the emulator's own (``"restored"``: it
    answered ``restore/next``; ``"shutdown"``: SHUTDOWN was sent).  ``detail``
    names the extension, or the status answered.  ``at`` is ``time.monotonic()``.
    """

    name: str
    detail: str | None
    status: int | None
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionInfo:
    """A registered extension: its name, identifier and the events it subscribed to."""

    name: str
    identifier: str
    events: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownReport:
    """What :meth:`Emulator.shutdown` did to a runtime process.

    ``sigterm`` is whether SIGTERM was sent (only with a registered extension,
    as Lambda does), ``sigkill`` whether SIGKILL followed (always without an
    extension; with one, only if the process outlived ``grace_s``),
    ``exited_in_grace`` whether it ended by itself within the grace period,
    ``returncode`` its exit status as ``Popen`` reports it (``None`` for a pid
    that is not a child), ``elapsed_s`` from the start to its end.
    """

    sigterm: bool
    sigkill: bool
    exited_in_grace: bool
    returncode: int | None
    grace_s: float
    elapsed_s: float


class History:
    """The records of one emulator, each list bounded to the newest ``max_items``."""

    def __init__(self, max_items: int | None) -> None:
        self._lock = threading.Lock()
        self._answers: deque[RuntimeAnswer] = deque(maxlen=max_items)
        self._deliveries: deque[NextDelivery] = deque(maxlen=max_items)
        self._init_errors: deque[InitErrorReport] = deque(maxlen=max_items)
        self._restore_errors: deque[RestoreErrorReport] = deque(maxlen=max_items)
        self._calls: deque[ApiCall] = deque(maxlen=max_items)

    def add_answer(self, answer: RuntimeAnswer) -> None:
        with self._lock:
            self._answers.append(answer)

    def add_delivery(self, delivery: NextDelivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    def add_init_error(self, report: InitErrorReport) -> None:
        with self._lock:
            self._init_errors.append(report)

    def add_restore_error(self, report: RestoreErrorReport) -> None:
        with self._lock:
            self._restore_errors.append(report)

    def add_call(self, call: ApiCall) -> None:
        with self._lock:
            self._calls.append(call)

    def restore_errors(self) -> list[RestoreErrorReport]:
        with self._lock:
            return list(self._restore_errors)

    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    def answers(self) -> list[RuntimeAnswer]:
        with self._lock:
            return list(self._answers)

    def deliveries(self) -> list[NextDelivery]:
        with self._lock:
            return list(self._deliveries)

    def init_errors(self) -> list[InitErrorReport]:
        with self._lock:
            return list(self._init_errors)
