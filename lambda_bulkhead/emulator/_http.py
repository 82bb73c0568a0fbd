"""A small sans-IO HTTP/1.1 request parser and response writer.

Only what a Runtime API stand-in needs, kept small so that a ``/next`` plus
``/response`` pair costs the server a few tens of microseconds:

- a request line and header fields, then a body of exactly ``Content-Length``
  bytes (none when the header is absent);
- keep-alive by default on HTTP/1.1 (``Connection: close`` ends it), opt-in on
  HTTP/1.0;
- ``Expect: 100-continue`` is honoured (curl sends it for bodies over 1 KiB).

Anything else is a :class:`BadRequest` naming the HTTP status to answer; after
one the byte stream can no longer be trusted, so the connection is closed.
Chunked request bodies are refused with 411 Length Required: response
streaming (``Transfer-Encoding: chunked`` with trailers) is not emulated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "CONTINUE",
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "BadRequest",
    "Request",
    "RequestParser",
    "json_error",
    "render_response",
    "wire_text",
]

MAX_HEAD_BYTES = 64 * 1024
"""Request line plus header fields; a longer head is answered 431."""

MAX_BODY_BYTES = 32 * 1024 * 1024
"""Any request body; five times Lambda's 6 MB payload limit, so that the
Runtime API's own 413 can be answered after reading a body that is just over."""

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim answer to ``Expect: 100-continue``."""

_REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    505: "HTTP Version Not Supported",
}


# NamedTuples rather than frozen dataclasses: built twice per /next + /response
# pair, and a frozen dataclass's __init__ costs several times more.
class Request(NamedTuple):
    """One complete request: ``headers`` has lower-cased names."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class BadRequest(Exception):
    """The bytes received are not a request this server accepts."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


class _Head(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    content_length: int
    keep_alive: bool
    expects_continue: bool


class RequestParser:
    """Turns the bytes of one connection into :class:`Request` values.

    ``feed`` appends bytes; ``next_request`` returns the next complete request,
    ``None`` while more bytes are needed, or raises :class:`BadRequest`.
    """

    __slots__ = ("_buffer", "_continue_owed", "_head")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._head: _Head | None = None
        self._continue_owed = False

    def feed(self, data: bytes | memoryview) -> None:
        """Append bytes received from the peer."""
        self._buffer += data

    @property
    def has_data(self) -> bool:
        """Whether bytes of a further request are waiting."""
        return bool(self._buffer)

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet part of a returned request."""
        return len(self._buffer)

    def take_continue(self) -> bool:
        """Whether a ``100 Continue`` is owed now (true once per request)."""
        owed = self._continue_owed
        self._continue_owed = False
        return owed

    def next_request(self) -> Request | None:
        """The next complete request, or ``None`` if more bytes are needed."""
        head = self._head
        if head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise BadRequest(431, "HeadersTooLarge", "request head over 64 KiB")
                return None
            if end > MAX_HEAD_BYTES:
                raise BadRequest(431, "HeadersTooLarge", "request head over 64 KiB")
            head = _parse_head(bytes(self._buffer[:end]))
            del self._buffer[: end + 4]
            self._head = head
            if head.expects_continue and len(self._buffer) < head.content_length:
                self._continue_owed = True
        length = head.content_length
        if len(self._buffer) < length:
            return None
        if length:
            body = bytes(self._buffer[:length])
            del self._buffer[:length]
        else:
            body = b""
        self._head = None
        self._continue_owed = False
        return Request(head.method, head.path, head.headers, body, head.keep_alive)


def _parse_head(raw: bytes) -> _Head:
    # latin-1 maps every byte to one code point, so header values keep their
    # exact wire bytes when they are written out again.
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest(400, "MalformedRequest", f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, "UnsupportedVersion", f"HTTP version {version[:20]!r} not supported")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(400, "MalformedRequest", f"malformed header line {line[:100]!r}")
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key == "content-length" and headers[key] != value:
                raise BadRequest(400, "InvalidContentLength", "conflicting Content-Length headers")
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    if "transfer-encoding" in headers:
        raise BadRequest(
            411,
            "LengthRequired",
            "Transfer-Encoding request bodies are not supported: send Content-Length",
        )
    length_text = headers.get("content-length")
    if length_text is None:
        content_length = 0
    elif length_text.isdigit() and length_text.isascii():
        content_length = int(length_text)
    else:
        raise BadRequest(400, "InvalidContentLength", f"bad Content-Length {length_text[:40]!r}")
    if content_length > MAX_BODY_BYTES:
        raise BadRequest(413, "RequestEntityTooLarge", f"body over {MAX_BODY_BYTES} bytes")
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    expects_continue = headers.get("expect", "").lower() == "100-continue"
    path = target.partition("?")[0]
    return _Head(method, path, headers, content_length, keep_alive, expects_continue)


def wire_text(text: str) -> str:
    """``text`` as a header value on the wire: its UTF-8 bytes, one code point per byte.

    Header values are kept as latin-1 strings (see ``_parse_head``), so this is
    what lets a caller's non-ASCII text reach the peer as UTF-8.
    """
    return text.encode("utf-8").decode("latin-1")


def json_error(error_type: str, message: str) -> bytes:
    """The Runtime API's error body: ``{"errorType": ..., "errorMessage": ...}``."""
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def render_response(
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    close: bool = False,
    declared_length: int | None = None,
) -> bytes:
    """One HTTP/1.1 response; ``declared_length`` lets a fault lie about the body size."""
    length = len(body) if declared_length is None else declared_length
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    head.extend(f"{name}: {value}" for name, value in headers)
    head.append(f"Content-Length: {length}")
    if close:
        head.append("Connection: close")
    head.append("\r\n")
    return "\r\n".join(head).encode("latin-1") + body
