"""Faults the emulator can inject into its answers, to test how a runtime copes.

Queue one with ``Emulator.inject(fault, times=N)``: it replaces the next ``N``
answers of the call it names, faults of a call applying in the order they
were injected.

=================================  ==========  =========================================
fault                              uses event  what the runtime sees
=================================  ==========  =========================================
``NextStatus(status=500)``         no          ``/next`` answers ``status`` with ``body``
``NextReset(during="headers")``    no          the status line and part of the headers,
                                               then a TCP reset
``NextReset(during="body")``       yes         every header and half the body, then a
                                               TCP reset
``NextShortBody()``                yes         half the body, less than its
                                               ``Content-Length``, then a clean close
``NextHeaders(headers={...})``     yes         the event with headers replaced or removed
``NextPastDeadline(by_ms=1000)``   yes         the event with a ``Deadline-Ms`` passed
``NextRequestId(request_id="a?b")``  yes       the event under this request id (posts
                                               find it by its percent-decoded path)
``NextBody(body=b"")``             yes         the event with another body
``PostStatus(status=410)``         n/a         ``/response`` or ``/error`` answers
                                               ``status`` and does not take the answer
``PostReset()``                    n/a         a TCP reset instead of an answer
``PostHang(seconds=2.0)``          n/a         no answer for ``seconds``, then the usual
=================================  ==========  =========================================

A ``/next`` fault that uses no event is answered as soon as a runtime polls
(at once, if one is already waiting): the queued invocations stay queued.  One
that uses an event waits for the next invocation and delivers it, so that
invocation is started (its timeout runs) and ends like any other: by the
runtime's answer if the runtime could read its request id, else by timeout.

A faulted ``/response`` or ``/error`` leaves the invocation as it was (still
waiting for an answer), except ``PostReset(after_accept=True)``, which accepts
the answer and then resets the connection instead of saying so.  ``PostHang``
handles the post as usual once the seconds are over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "NextBody",
    "NextFault",
    "NextHeaders",
    "NextPastDeadline",
    "NextRequestId",
    "NextReset",
    "NextShortBody",
    "NextStatus",
    "PostCall",
    "PostFault",
    "PostHang",
    "PostReset",
    "PostStatus",
    "default_error_body",
]

PostCall = Literal["response", "error", "any"]
"""Which posts a :class:`PostFault` applies to."""

_ERROR_TYPES = {
    400: "InvalidRequestID",
    403: "InvalidStateTransition",
    404: "NotFound",
    410: "InvokeTimeout",
    413: "RequestEntityTooLarge",
    500: "ServiceException",
}


def default_error_body(status: int) -> bytes:
    """The body a status fault answers when none is given: Runtime API error JSON."""
    error_type = _ERROR_TYPES.get(status, "InjectedFault")
    message = f"injected fault: status {status}"
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _check_status(status: int) -> None:
    if not 100 <= status <= 599:
        raise ValueError(f"status must be an HTTP status (100-599), got {status}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NextFault:
    """Base of the faults for ``GET /runtime/invocation/next``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NextStatus(NextFault):
    """Answer ``status`` with ``body`` (default: error JSON) instead of an event."""

    status: int = 500
    body: bytes | None = None

    def __post_init__(self) -> None:
        _check_status(self.status)


@dataclass(frozen=True, slots=True, kw_only=True)
class NextReset(NextFault):
    """Reset the connection partway through the answer.

    ``"headers"``: after the status line and part of the headers, before the
    request id (no event used).  ``"body"``: after every header and half the
    event body (the event is used).
    """

    during: Literal["headers", "body"] = "headers"

    def __post_init__(self) -> None:
        if self.during not in ("headers", "body"):
            raise ValueError(f"during must be 'headers' or 'body', got {self.during!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NextShortBody(NextFault):
    """Deliver the event's headers, then half its body (declaring all of it), then close.

    An empty event is declared as one byte and none is sent.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class NextHeaders(NextFault):
    """Deliver the event with ``headers`` set; a ``None`` value removes the header.

    Names match case-insensitively; a name the answer lacks is added.  For
    example ``{"Lambda-Runtime-Aws-Request-Id": None}`` (missing id), ``""``
    (empty id), ``{"Lambda-Runtime-Deadline-Ms": "soon"}``,
    ``{"Lambda-Runtime-Client-Context": "{not json"}``,
    ``{"Content-Type": "application/x-custom"}``.
    """

    headers: Mapping[str, str | None]

    def __post_init__(self) -> None:
        for name, value in self.headers.items():
            if any(("\r" in text or "\n" in text) for text in (name, value or "")):
                raise ValueError(f"header {name!r} must not contain CR or LF")
        # A read-only copy, so the fault cannot change after it is queued.
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))


@dataclass(frozen=True, slots=True, kw_only=True)
class NextPastDeadline(NextFault):
    """Deliver the event with ``Lambda-Runtime-Deadline-Ms`` ``by_ms`` in the past.

    The emulator's own timeout still runs from the delivery.
    """

    by_ms: int = 1000

    def __post_init__(self) -> None:
        if self.by_ms < 1:
            raise ValueError(f"by_ms must be at least 1, got {self.by_ms}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NextRequestId(NextFault):
    """Deliver the event under ``request_id`` instead of a UUID, e.g. ``"a?b#c"``,
    ``"x y"``, ``"../../runtime/init/error"``: its ``/response`` and ``/error``
    are found by the percent-decoded path segment, as a server routes them."""

    request_id: str

    def __post_init__(self) -> None:
        text = self.request_id
        if not text or not text.isascii() or "\r" in text or "\n" in text:
            raise ValueError("request_id must be non-empty ASCII, without CR or LF")


@dataclass(frozen=True, slots=True, kw_only=True)
class NextBody(NextFault):
    """Deliver the event with ``body`` in place of its payload (e.g. ``b""``, 6 MB)."""

    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PostFault:
    """Base of the faults for ``POST .../response`` and ``POST .../error``.

    ``call`` picks which of the two posts the fault applies to.
    """

    call: PostCall = "any"

    def __post_init__(self) -> None:
        if self.call not in ("response", "error", "any"):
            raise ValueError(f"call must be 'response', 'error' or 'any', got {self.call!r}")

    def applies_to(self, call: str) -> bool:
        """Whether this fault answers a post to ``call`` (``"response"``/``"error"``)."""
        return self.call in ("any", call)


@dataclass(frozen=True, slots=True, kw_only=True)
class PostStatus(PostFault):
    """Answer ``status`` with ``body`` (default: error JSON); the post is not accepted."""

    status: int
    body: bytes | None = None

    def __post_init__(self) -> None:
        PostFault.__post_init__(self)
        _check_status(self.status)


@dataclass(frozen=True, slots=True, kw_only=True)
class PostReset(PostFault):
    """Reset the connection instead of answering.

    With ``after_accept`` the post is accepted first (the invocation ends),
    so a runtime that retries meets ``403 InvalidStateTransition``.
    """

    after_accept: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PostHang(PostFault):
    """Hold the post unanswered for ``seconds``, then handle it as usual."""

    seconds: float

    def __post_init__(self) -> None:
        PostFault.__post_init__(self)
        if not self.seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {self.seconds}")
