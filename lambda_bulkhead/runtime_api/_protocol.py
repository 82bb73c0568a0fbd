"""The Lambda Runtime API as pure functions: no sockets here.

One :class:`Request` value per endpoint (``next_request``, ``response_request``,
``error_request``, ``init_error_request``), :func:`parse_next` from the answer of
``/next`` to an :class:`~lambda_bulkhead._context.Invocation`, and
:func:`post_outcome` deciding what an answer to a post means.  The transports
(:mod:`lambda_bulkhead.runtime_api._http`, :mod:`lambda_bulkhead.runtime_api._httpx`) only
send these requests and hand back :class:`Response` values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from lambda_bulkhead._config import parse_endpoint
from lambda_bulkhead._context import Invocation
from lambda_bulkhead._errors import (
    MAX_RESPONSE_BYTES,
    InvocationError,
    MissingRequestId,
    UnexpectedStatus,
    error_dict,
    error_type_header,
    too_large_error,
)
from lambda_bulkhead._record import NamedTuple

__all__ = [
    "MAX_DEADLINE_MS",
    "MAX_RESPONSE_BYTES",
    "NEXT_REQUEST",
    "PostOutcome",
    "Request",
    "Response",
    "error_body",
    "error_request",
    "init_error_request",
    "next_request",
    "parse_deadline",
    "parse_endpoint",
    "parse_next",
    "path_segment",
    "post_outcome",
    "response_request",
    "stream_request",
    "stream_trailers",
    "too_large_error",
]

API_PREFIX = "/2018-06-01/runtime"
NEXT_PATH = f"{API_PREFIX}/invocation/next"
INIT_ERROR_PATH = f"{API_PREFIX}/init/error"

ERROR_CONTENT_TYPE = "application/vnd.aws.lambda.error+json"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
INVOCATION_ID_HEADER = "Lambda-Runtime-Invocation-Id"


class Request(NamedTuple):
    """One call to the Runtime API; ``call`` names it in errors and logs."""

    call: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


class Response(NamedTuple):
    """A Runtime API answer; header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class PostOutcome(enum.Enum):
    """What the answer to a ``/response`` or ``/error`` post means for the loop."""

    ACCEPTED = "accepted"
    #: 410: the invocation already timed out on the platform's side; nothing to do.
    LATE = "late"
    #: 413: the response was too large; report it to ``/error`` instead.
    TOO_LARGE = "too_large"
    #: Another 4xx: the platform refused this answer (already answered, an id it
    #: cannot use). Not fatal.
    REFUSED = "refused"


NEXT_REQUEST = Request("next", "GET", NEXT_PATH)


def next_request() -> Request:
    return NEXT_REQUEST


def _invocation_headers(invocation_id: str | None) -> tuple[tuple[str, str], ...]:
    return ((INVOCATION_ID_HEADER, invocation_id),) if invocation_id else ()


#: The bytes a request id keeps in its URL path segment as they are (RFC 3986's
#: unreserved characters but ``.``: an id of ``..`` must not be a dot segment).
_SEGMENT_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")


def path_segment(request_id: str) -> str:
    """``request_id`` as one URL path segment: every byte of its UTF-8 form but
    letters, digits, ``-``, ``_`` and ``~`` percent-encoded, so ``a?b#c``,
    ``x y`` or ``../../runtime/init/error`` name that invocation and no other path."""
    if request_id.isascii() and request_id.replace("-", "").isalnum():
        return request_id  # a UUID, as Lambda's are: nothing to encode
    return "".join(
        chr(byte) if byte in _SEGMENT_SAFE else f"%{byte:02X}"
        for byte in request_id.encode("utf-8", "surrogatepass")
    )


def response_request(
    request_id: str, body: bytes, *, invocation_id: str | None = None, content_type: str = ""
) -> Request:
    headers = _invocation_headers(invocation_id)
    if content_type:
        headers += (("Content-Type", content_type),)
    path = f"{API_PREFIX}/invocation/{path_segment(request_id)}/response"
    return Request("response", "POST", path, headers, body)


def stream_request(
    request_id: str, content_type: str, *, invocation_id: str | None = None
) -> Request:
    """The head of a streamed ``/response``: its body follows in HTTP/1.1 chunks,
    and the two error trailers are declared, to end it after a failure."""
    headers = (
        *_invocation_headers(invocation_id),
        ("Content-Type", content_type),
        (RESPONSE_MODE_HEADER, "streaming"),
        ("Transfer-Encoding", "chunked"),
        ("Trailer", f"{ERROR_TYPE_HEADER}, {ERROR_BODY_TRAILER}"),
    )
    path = f"{API_PREFIX}/invocation/{path_segment(request_id)}/response"
    return Request("response", "POST", path, headers)


def stream_trailers(error: InvocationError, request_id: str) -> tuple[tuple[str, str], ...]:
    """The trailers that end a stream with ``error``: its type (as the ``/error``
    header would be) and base64 of the ``/error`` body."""
    import base64  # noqa: PLC0415 - mid-stream failures only

    return (
        (ERROR_TYPE_HEADER, error_type_header(error.error_type)),
        (ERROR_BODY_TRAILER, base64.b64encode(error_body(error, request_id)).decode("ascii")),
    )


def error_request(
    request_id: str, error: InvocationError, *, invocation_id: str | None = None
) -> Request:
    headers = (
        ("Content-Type", ERROR_CONTENT_TYPE),
        (ERROR_TYPE_HEADER, error_type_header(error.error_type)),
        *_invocation_headers(invocation_id),
    )
    return Request(
        "error",
        "POST",
        f"{API_PREFIX}/invocation/{path_segment(request_id)}/error",
        headers,
        error_body(error, request_id),
    )


def init_error_request(error: InvocationError) -> Request:
    headers = (
        ("Content-Type", ERROR_CONTENT_TYPE),
        (ERROR_TYPE_HEADER, error_type_header(error.error_type)),
    )
    # requestId "": the official runtime's init error body has the key, empty.
    return Request("init/error", "POST", INIT_ERROR_PATH, headers, error_body(error, ""))


def error_body(error: InvocationError, request_id: str | None) -> bytes:
    """The JSON body posted to ``/error`` or ``/init/error``."""
    import json  # noqa: PLC0415 - errors only: json costs the supervisor's cold start ~5 ms

    text = json.dumps(error_dict(error, request_id), ensure_ascii=False)
    # A lone surrogate (from a surrogateescape'd name in a message) becomes a JSON
    # \uXXXX escape: the body stays valid UTF-8 and valid JSON.
    return text.encode("utf-8", "backslashreplace")


#: The latest deadline an invocation can have (the Invoke frame's ``i64``): a
#: later one, 292 million years away, is read as this.
MAX_DEADLINE_MS = 2**63 - 1


def parse_deadline(text: str | None) -> int:
    """``Lambda-Runtime-Deadline-Ms`` in epoch ms.

    A plain decimal number is the deadline, clamped to :data:`MAX_DEADLINE_MS`;
    a missing or empty header, or anything else (a sign, blanks inside, a
    fraction, ``_``, letters), is 0: no deadline known, so none is enforced.
    """
    if not text or not (text.isascii() and text.isdigit()):
        return 0
    if len(text) < 19:  # below 10**18: an i64 (every deadline Lambda sends)
        return int(text)
    digits = text.lstrip("0")
    if len(digits) > 19:  # more digits than MAX_DEADLINE_MS (and than int() will read)
        return MAX_DEADLINE_MS
    return min(int(text), MAX_DEADLINE_MS)


def parse_next(response: Response) -> Invocation:
    """The :class:`Invocation` an answer of ``/next`` carries.

    Raises :class:`UnexpectedStatus` for a status other than 200 and
    :class:`MissingRequestId` when the request id header is absent or empty.
    """
    if response.status != 200:
        raise UnexpectedStatus("next", response.status, response.body)
    headers = response.headers
    request_id = headers.get("lambda-runtime-aws-request-id")
    if not request_id:
        raise MissingRequestId
    return Invocation(
        request_id=request_id,
        payload=response.body,
        deadline_ms=parse_deadline(headers.get("lambda-runtime-deadline-ms")),
        invoked_function_arn=headers.get("lambda-runtime-invoked-function-arn", ""),
        trace_id=headers.get("lambda-runtime-trace-id") or None,
        client_context=headers.get("lambda-runtime-client-context") or None,
        cognito_identity=headers.get("lambda-runtime-cognito-identity") or None,
        tenant_id=headers.get("lambda-runtime-aws-tenant-id") or None,
        invocation_id=headers.get("lambda-runtime-invocation-id") or None,
        content_type=headers.get("content-type") or None,
    )


def post_outcome(call: str, response: Response) -> PostOutcome:
    """What the answer to a post means; raises :class:`UnexpectedStatus` when fatal.

    2xx is accepted; 410 is a late answer (logged, survived); 413 on ``/response``
    is a too-large body; any other 4xx refuses this one answer (a 400 or 403, a
    404 for a request id the platform cannot route: logged, survived); 5xx and
    anything else are fatal, as the Runtime API asks.
    """
    status = response.status
    if 200 <= status < 300:
        return PostOutcome.ACCEPTED
    if status == 410:
        return PostOutcome.LATE
    if status == 413 and call == "response":
        return PostOutcome.TOO_LARGE
    if 400 <= status < 500:
        return PostOutcome.REFUSED
    raise UnexpectedStatus(call, status, response.body)
