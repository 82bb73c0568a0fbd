"""What the emulator hands back: invoke results and the history of the Runtime API calls.

The history is written on the event-loop thread and read from any thread, so
it sits behind one lock and is read as snapshot copies.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from lambda_bulkhead.emulator._faults import NextFault, PostFault

__all__ = [
    "History",
    "InitErrorReport",
    "InvokeKind",
    "InvokeResult",
    "NextDelivery",
    "RuntimeAnswer",
]

InvokeKind = Literal["response", "error", "timeout", "exit", "init_error"]
"""How an invocation ended."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeResult:
    """What the caller of an invoke gets, as the RIE's invoke endpoint answers it.

    ``headers`` are the HTTP answer's headers (``Content-Type``,
    ``X-Amzn-RequestId``, and ``X-Amz-Function-Error: Unhandled`` for a
    function error or timeout).
    """

    kind: InvokeKind
    status: int
    headers: Mapping[str, str]
    body: bytes
    request_id: str
    invocation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeAnswer:
    """One ``POST .../{id}/response`` or ``.../{id}/error`` and how the emulator answered it.

    ``headers`` are the request's headers with lower-cased names.
    ``invocation_id`` is the ``Lambda-Runtime-Invocation-Id`` the runtime
    echoed (``None`` if absent); ``expected_invocation_id`` the one ``/next``
    sent for that request id (``None`` if the id is unknown).  ``status`` is
    ``None`` when the connection was reset instead of answered.
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


class History:
    """The records of one emulator, each list bounded to the newest ``max_items``."""

    def __init__(self, max_items: int | None) -> None:
        self._lock = threading.Lock()
        self._answers: deque[RuntimeAnswer] = deque(maxlen=max_items)
        self._deliveries: deque[NextDelivery] = deque(maxlen=max_items)
        self._init_errors: deque[InitErrorReport] = deque(maxlen=max_items)

    def add_answer(self, answer: RuntimeAnswer) -> None:
        with self._lock:
            self._answers.append(answer)

    def add_delivery(self, delivery: NextDelivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    def add_init_error(self, report: InitErrorReport) -> None:
        with self._lock:
            self._init_errors.append(report)

    def answers(self) -> list[RuntimeAnswer]:
        with self._lock:
            return list(self._answers)

    def deliveries(self) -> list[NextDelivery]:
        with self._lock:
            return list(self._deliveries)

    def init_errors(self) -> list[InitErrorReport]:
        with self._lock:
            return list(self._init_errors)
