"""Response streaming, the pure part: what a streamed answer's bytes are.

Lambda's contract for custom runtimes (docs "Response streaming for custom
runtimes"): ``POST /response`` with ``Lambda-Runtime-Function-Response-Mode:
streaming`` and ``Transfer-Encoding: chunked``, the chunks as the handler makes
them, and, for a failure after the first byte, the trailers
``Lambda-Runtime-Function-Error-Type`` and ``Lambda-Runtime-Function-Error-Body``
(base64 of the usual error JSON).  For function URLs and API Gateway the body
of an HTTP integration response starts with a JSON prelude (status code,
headers, cookies) and 8 NUL bytes (:class:`HttpPrelude`).

Here: the limits, the content types, :func:`chunk_bytes` (what a handler may
yield) and :class:`HttpPrelude`, public as ``lambda_bulkhead.responses.HttpPrelude``.
No I/O, no heavy import: the handler layer uses it on the cold path.
"""

from __future__ import annotations

from lambda_bulkhead._errors import InvocationError
from lambda_bulkhead._record import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_STREAM_CONTENT_TYPE",
    "HTTP_INTEGRATION_CONTENT_TYPE",
    "MAX_STREAM_BYTES",
    "PRELUDE_DELIMITER",
    "HttpPrelude",
    "chunk_bytes",
    "stream_abandoned_error",
    "stream_too_large_error",
]

#: Lambda's limit for one streamed response ("200 MB", read as MiB as its 6 MB is).
MAX_STREAM_BYTES = 200 * 1024 * 1024
#: The content type of a plain streamed response (the Node.js runtime's default).
DEFAULT_STREAM_CONTENT_TYPE = "application/octet-stream"
#: The content type of a streamed HTTP integration response (function URLs, API Gateway).
HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
#: What ends the JSON prelude of an HTTP integration response.
PRELUDE_DELIMITER = b"\0" * 8


class HttpPrelude(NamedTuple):
    """The status, headers and cookies of a streamed HTTP response.

    A streaming handler yields one as its **first** item (as Node's
    ``awslambda.HttpResponseStream.from(stream, metadata)`` is called before
    the first write, and as Rust's ``StreamResponse`` carries its
    ``metadata_prelude``); the response is then an HTTP integration response::

        def handler(event, context):
            yield HttpPrelude(200, {"content-type": "text/plain"})
            yield "hello "
            yield "world"
    """

    status_code: int = 200
    headers: Mapping[str, str] | None = None
    #: ``Set-Cookie`` values, as a function URL's ``cookies``.
    cookies: tuple[str, ...] | list[str] = ()

    def encode(self) -> bytes:
        """The prelude as it starts the body: JSON, then :data:`PRELUDE_DELIMITER`."""
        import json  # noqa: PLC0415 - streamed HTTP responses only

        if not 100 <= self.status_code <= 599:
            raise ValueError(f"HTTP status must be 100-599, got {self.status_code!r}")
        prelude: dict[str, object] = {"statusCode": self.status_code}
        prelude["headers"] = dict(self.headers or {})
        prelude["cookies"] = list(self.cookies)
        # ensure_ascii: the JSON is then ASCII, so it can hold no NUL byte.
        return json.dumps(prelude, ensure_ascii=True).encode("ascii") + PRELUDE_DELIMITER


def chunk_bytes(item: object) -> bytes:
    """A yielded item as the bytes it streams: ``bytes``-like as they are, ``str``
    as UTF-8; anything else is ``Runtime.MarshalError``."""
    if type(item) is bytes:
        return item
    if isinstance(item, str):
        try:
            return item.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise _marshal_error(str(exc)) from exc
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    raise _marshal_error(
        f"a streaming handler yielded {type(item).__name__}, not bytes or str"
    )


def _marshal_error(reason: str) -> InvocationError:
    return InvocationError("Runtime.MarshalError", f"Unable to marshal response: {reason}")


def stream_too_large_error(size: int) -> InvocationError:
    """The error that ends a stream past :data:`MAX_STREAM_BYTES`."""
    return InvocationError(
        "Function.ResponseSizeTooLarge",
        f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({MAX_STREAM_BYTES} bytes).",
    )


def stream_abandoned_error(request_id: str, reason: str) -> InvocationError:
    """The error of a stream the runtime gave up: its connection to the Runtime
    API failed, or took no byte for the post timeout (``reason``).  Nothing more
    can be sent for it; the error is what its summary record says (the caller
    sees the stream end early, ``Runtime.TruncatedResponse`` in the emulator)."""
    return InvocationError(
        "Runtime.TruncatedResponse",
        f"RequestId: {request_id} Error: the response stream was abandoned ({reason})",
    )
