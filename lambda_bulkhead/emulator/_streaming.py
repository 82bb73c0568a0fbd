"""A streamed ``/response`` as data, without I/O: chunks in, caller-facing pieces out.

Lambda's contract for response streaming (custom runtimes): the runtime posts
``/response`` with ``Lambda-Runtime-Function-Response-Mode: streaming`` and
``Transfer-Encoding: chunked``, and may end the body with the trailers
``Lambda-Runtime-Function-Error-Type`` and ``Lambda-Runtime-Function-Error-Body``
(base64 of the error JSON).  With the content type
``application/vnd.awslambda.http-integration-response`` the body starts with a
JSON prelude (``statusCode``, ``headers``, ``cookies``) and 8 NUL bytes, as a
function URL reads it.

:class:`StreamCollector` keeps the runtime's chunks (or only counts and hashes
them), finds the prelude, enforces :data:`MAX_STREAM_BYTES`, and returns the
bytes the caller should get as they come.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from typing import NamedTuple

from lambda_bulkhead.emulator._records import StreamChunk

__all__ = [
    "ERROR_BODY_TRAILER",
    "ERROR_TYPE_TRAILER",
    "HTTP_INTEGRATION",
    "MAX_STREAM_BYTES",
    "CallerHead",
    "StreamCollector",
    "decode_error_body",
    "is_streaming",
]

MAX_STREAM_BYTES = 200 * 1024 * 1024
"""Lambda's limit for one streamed response ("200 MB"; read as MiB, as its 6 MB is)."""

HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
ERROR_TYPE_TRAILER = "lambda-runtime-function-error-type"
ERROR_BODY_TRAILER = "lambda-runtime-function-error-body"
_PRELUDE_END = b"\0" * 8
_MAX_PRELUDE_BYTES = 64 * 1024


def is_streaming(headers: dict[str, str]) -> bool:
    """Whether a ``/response`` request's headers announce a streamed body."""
    return headers.get("lambda-runtime-function-response-mode", "").lower() == "streaming"


def decode_error_body(value: str | None) -> bytes | None:
    """The ``Error-Body`` trailer decoded from base64 (as sent, if it is not base64)."""
    if value is None:
        return None
    raw = value.encode("latin-1")
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        return raw


class CallerHead(NamedTuple):
    """The status and headers the caller gets before the streamed body."""

    status: int
    headers: list[tuple[str, str]]


class PreludeError(Exception):
    """An HTTP integration response whose prelude is not valid."""


class StreamCollector:
    """The record of one streamed answer, fed with the runtime's body as it arrives.

    ``keep_chunks`` keeps every chunk (and so the body); without it only counts
    and a SHA-256 are kept, so a test can stream 100 MB through in constant
    memory.  ``on_chunk`` is called with each complete chunk (assembling
    chunks, even when they are not kept).
    """

    def __init__(
        self,
        *,
        content_type: str,
        keep_chunks: bool,
        on_chunk: Callable[[StreamChunk], None] | None,
        limit: int = MAX_STREAM_BYTES,
    ) -> None:
        media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
        self.http_integration = media_type == HTTP_INTEGRATION
        self._content_type = content_type
        self._keep = keep_chunks
        self._on_chunk = on_chunk
        self.limit = limit
        self._assemble = keep_chunks or on_chunk is not None
        self._pending: list[bytes] = []
        self._prelude = bytearray()
        self.head: CallerHead | None = None
        self.chunks: list[StreamChunk] = []
        self.chunk_count = 0
        self.size = 0
        self._hash = hashlib.sha256()
        self._body_parts: list[bytes] = []

    @property
    def over_limit(self) -> bool:
        return self.size > self.limit

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def body(self) -> bytes:
        """The body as the caller got it (empty unless chunks are kept)."""
        return b"".join(self._body_parts)

    def feed(self, data: bytes, chunk_end: bool, now: float) -> bytes:
        """Take body bytes; returns the bytes for the caller (after any prelude).

        Raises :class:`PreludeError` for a bad HTTP integration prelude.
        """
        self.size += len(data)
        self._hash.update(data)
        if self._assemble:
            self._pending.append(data)
        if chunk_end:
            self.chunk_count += 1
            if self._assemble:
                chunk = StreamChunk(b"".join(self._pending), now)
                self._pending = []
                if self._keep:
                    self.chunks.append(chunk)
                if self._on_chunk is not None:
                    self._on_chunk(chunk)
        out = self._after_prelude(data)
        if out and self._keep:
            self._body_parts.append(out)
        return out

    def finish(self) -> None:
        """The body ended: a prelude never completed is an error, a plain stream gets its head."""
        if self.head is None:
            if self.http_integration:
                raise PreludeError("the stream ended before the 8 NUL bytes after the prelude")
            self.head = CallerHead(200, [("Content-Type", self._content_type)])

    def _after_prelude(self, data: bytes) -> bytes:
        if self.head is not None:
            return data
        if not self.http_integration:
            self.head = CallerHead(200, [("Content-Type", self._content_type)])
            return data
        self._prelude += data
        end = self._prelude.find(_PRELUDE_END)
        if end < 0:
            if len(self._prelude) > _MAX_PRELUDE_BYTES:
                raise PreludeError(f"no 8 NUL bytes in the first {_MAX_PRELUDE_BYTES} bytes")
            return b""
        self.head = _parse_prelude(bytes(self._prelude[:end]))
        rest = bytes(self._prelude[end + len(_PRELUDE_END) :])
        self._prelude = bytearray()
        return rest


def _parse_prelude(raw: bytes) -> CallerHead:
    try:
        prelude = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise PreludeError(f"the prelude is not JSON: {exc}") from None
    if not isinstance(prelude, dict):
        raise PreludeError("the prelude is not a JSON object")
    status = prelude.get("statusCode", 200)
    headers = prelude.get("headers") or {}
    cookies = prelude.get("cookies") or []
    if not (isinstance(status, int) and 100 <= status <= 599):
        raise PreludeError(f"statusCode {status!r} is not an HTTP status")
    if not isinstance(headers, dict) or not isinstance(cookies, list):
        raise PreludeError("headers must be an object and cookies a list")
    fields: list[tuple[str, str]] = []
    for name, value in headers.items():
        fields.append((_field(str(name)), _field(str(value))))
    fields.extend(("Set-Cookie", _field(str(cookie))) for cookie in cookies)
    return CallerHead(status, fields)


def _field(text: str) -> str:
    if "\r" in text or "\n" in text or "\0" in text:
        raise PreludeError(f"header text {text[:40]!r} contains CR, LF or NUL")
    return text.encode("utf-8").decode("latin-1")
