"""The framing and the closed set of messages between supervisor, template and workers.

Every message crosses a pipe (or, for the template, a Unix socket) as one frame::

     0               4       5       6               8
    +---------------+-------+-------+---------------+--------------------+
    | length (u32)  |  ver  | kind  |   reserved    |  body (length B)   |
    +---------------+-------+-------+---------------+--------------------+

* ``length``: big-endian byte count of the body, at most :data:`MAX_FRAME`
  (above Lambda's 6 MB payload limit, so any event or result fits in one frame).
* ``ver``: :data:`VERSION`; ``kind``: which :class:`Message` the body holds.
* Bodies: the hot messages (:class:`Invoke`, :class:`Result`) pack their text
  fields as ``u32 length + UTF-8`` (length ``0xFFFFFFFF`` for None), then their
  integers (``Invoke``'s deadline as ``i64``, ``Result``'s peak RSS as ``u64``),
  then the raw payload bytes; the rare ones are one UTF-8 JSON object.

:func:`encode` turns a message into the byte strings to write (header and body
parts separately, so a multi-megabyte payload is never copied to frame it) and
:class:`FrameDecoder` turns any split of a byte stream back into messages,
rejecting a bad version, an unknown kind, a length over the maximum or a
malformed body with :class:`WireError`.  A peer's bytes are never trusted: no
frame decodes into anything but a valid message.  The fd reads and writes live
in :mod:`lambda_bulkhead._pipes`.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "HEADER",
    "MAX_FRAME",
    "VERSION",
    "Failure",
    "FrameDecoder",
    "Invoke",
    "Message",
    "Ready",
    "Result",
    "Spawn",
    "Spawned",
    "TemplateFailed",
    "TemplateReady",
    "WireError",
    "WorkerExited",
    "encode",
]

VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">IBBH")
_LEN = struct.Struct(">I")
_PEAK = struct.Struct(">Q")
_NONE = 0xFFFFFFFF


class WireError(Exception):
    """Bytes from a peer that are not a valid frame: the peer is not to be trusted."""


class Message:
    """Base of every message; ``KIND`` is its frame kind."""

    __slots__ = ()
    KIND: ClassVar[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoke(Message):
    """Supervisor → worker: run this invocation."""

    KIND: ClassVar[int] = 1
    request_id: str
    deadline_ms: int
    invoked_function_arn: str
    trace_id: str | None
    client_context: str | None
    cognito_identity: str | None
    tenant_id: str | None
    invocation_id: str | None
    content_type: str | None
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Result(Message):
    """Worker → supervisor: the handler returned; post ``body`` to ``/response``."""

    KIND: ClassVar[int] = 2
    request_id: str
    content_type: str
    body: bytes
    #: The worker's peak RSS in bytes during the invocation (0: unknown).
    peak_rss: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure(Message):
    """Worker → supervisor: post this error to ``/error``.

    ``fatal``: the worker exits after sending it (``sys.exit`` in the handler,
    a ``MemoryError``), so the supervisor replaces it.
    """

    KIND: ClassVar[int] = 3
    request_id: str
    error_type: str
    error_message: str
    stack_trace: tuple[str, ...]
    causes: tuple[dict[str, Any], ...] = ()
    fatal: bool = False
    peak_rss: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready(Message):
    """Worker → supervisor, once after fork: set up, waiting for work."""

    KIND: ClassVar[int] = 4
    pid: int
    baseline_rss: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Spawn(Message):
    """Supervisor → template: fork a worker on the pipes sent along (SCM_RIGHTS)."""

    KIND: ClassVar[int] = 5
    memory_limit_bytes: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Spawned(Message):
    """Template → supervisor: the worker asked for is ``pid``."""

    KIND: ClassVar[int] = 6
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateReady(Message):
    """Template → supervisor: the handler is loaded."""

    KIND: ClassVar[int] = 7
    rss: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateFailed(Message):
    """Template → supervisor: loading the handler failed; post to ``/init/error``."""

    KIND: ClassVar[int] = 8
    error_type: str
    error_message: str
    stack_trace: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerExited(Message):
    """Template → supervisor: a worker was reaped with ``waitpid`` status ``status``."""

    KIND: ClassVar[int] = 9
    pid: int
    status: int


_INVOKE_TEXT = (
    "request_id",
    "invoked_function_arn",
    "trace_id",
    "client_context",
    "cognito_identity",
    "tenant_id",
    "invocation_id",
    "content_type",
)


def _pack_texts(values: Sequence[str | None]) -> bytes:
    parts = []
    for value in values:
        if value is None:
            parts.append(_LEN.pack(_NONE))
        else:
            data = value.encode("utf-8", "surrogatepass")
            parts.append(_LEN.pack(len(data)) + data)
    return b"".join(parts)


def _unpack_texts(body: memoryview, count: int) -> tuple[list[str | None], int]:
    values: list[str | None] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise WireError("body ends inside a text field's length")
        (length,) = _LEN.unpack_from(body, offset)
        offset += 4
        if length == _NONE:
            values.append(None)
            continue
        if offset + length > len(body):
            raise WireError("text field runs past the end of the body")
        try:
            values.append(str(body[offset : offset + length], "utf-8", "surrogatepass"))
        except UnicodeDecodeError as exc:
            raise WireError(f"text field is not UTF-8: {exc}") from None
        offset += length
    return values, offset


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise WireError(f"{name} missing")
    return value


_JSON_KINDS: dict[int, type[Message]] = {
    cls.KIND: cls
    for cls in (Failure, Ready, Spawn, Spawned, TemplateReady, TemplateFailed, WorkerExited)
}


def encode(message: Message) -> list[bytes]:
    """The byte strings of ``message``'s frame, to be written in order."""
    if isinstance(message, Invoke):
        texts = _pack_texts([getattr(message, name) for name in _INVOKE_TEXT])
        head = texts + struct.pack(">q", message.deadline_ms)
        body: list[bytes] = [head, message.payload]
    elif isinstance(message, Result):
        texts = _pack_texts([message.request_id, message.content_type])
        body = [texts + _PEAK.pack(message.peak_rss), message.body]
    else:
        values = {field.name: getattr(message, field.name) for field in _fields(type(message))}
        # surrogatepass: a lone surrogate (a surrogateescape'd file name in an
        # exception message) must cross; json.loads(bytes) decodes it back.
        body = [json.dumps(values, ensure_ascii=False).encode("utf-8", "surrogatepass")]
    length = sum(map(len, body))
    if length > MAX_FRAME:
        raise WireError(f"frame of {length} bytes is over the {MAX_FRAME} byte maximum")
    return [HEADER.pack(length, VERSION, message.KIND, 0), *body]


def decode_body(kind: int, body: memoryview) -> Message:
    """The message of ``kind`` held in ``body``; :class:`WireError` if malformed."""
    if kind == Invoke.KIND:
        texts, offset = _unpack_texts(body, len(_INVOKE_TEXT))
        if offset + 8 > len(body):
            raise WireError("Invoke body ends before its deadline")
        (deadline,) = struct.unpack_from(">q", body, offset)
        fields = dict(zip(_INVOKE_TEXT, texts, strict=True))
        return Invoke(
            request_id=_required(fields.pop("request_id"), "request_id"),
            invoked_function_arn=fields.pop("invoked_function_arn") or "",
            deadline_ms=deadline,
            payload=bytes(body[offset + 8 :]),
            **fields,
        )
    if kind == Result.KIND:
        (request_id, content_type), offset = _unpack_texts(body, 2)
        if offset + _PEAK.size > len(body):
            raise WireError("Result body ends before its peak RSS")
        (peak_rss,) = _PEAK.unpack_from(body, offset)
        return Result(
            request_id=_required(request_id, "request_id"),
            content_type=content_type or "application/json",
            body=bytes(body[offset + _PEAK.size :]),
            peak_rss=peak_rss,
        )
    cls = _JSON_KINDS.get(kind)
    if cls is None:
        raise WireError(f"unknown frame kind {kind}")
    try:
        fields = json.loads(bytes(body))
    except ValueError as exc:
        raise WireError(f"{cls.__name__} body is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise WireError(f"{cls.__name__} body is not a JSON object")
    return _checked(cls, fields)


def _checked(cls: type[Message], fields: dict[str, Any]) -> Message:
    """``cls(**fields)`` after checking every field's JSON type against its annotation."""
    expected = {field.name: field for field in _fields(cls)}
    if set(fields) - set(expected):
        raise WireError(f"{cls.__name__} has unknown fields {sorted(set(fields) - set(expected))}")
    for name, value in fields.items():
        annotation = str(expected[name].type)
        if not _fits(annotation, value):
            raise WireError(f"{cls.__name__}.{name} is not {annotation}: {value!r:.80}")
        if annotation.startswith("tuple"):
            fields[name] = tuple(value)
    try:
        return cls(**fields)
    except TypeError as exc:
        raise WireError(f"{cls.__name__}: {exc}") from None


def _fields(cls: type[Message]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)  # type: ignore[arg-type]


def _fits(annotation: str, value: object) -> bool:
    if value is None:
        return "None" in annotation
    if annotation.startswith("int"):
        return type(value) is int
    if annotation.startswith("bool"):
        return type(value) is bool
    if annotation.startswith("str"):
        return isinstance(value, str)
    if annotation == "tuple[str, ...]":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if annotation.startswith("tuple[dict"):
        return isinstance(value, list) and all(isinstance(item, dict) for item in value)
    return False


class FrameDecoder:
    """Turns a byte stream, split anyhow, back into messages."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a whole frame (half a frame at EOF: an error)."""
        return len(self._buffer)

    def remaining(self) -> int:
        """Bytes still missing from the frame being received (0 before its header),
        so that a reader can ask for the whole rest of a large frame at once."""
        if len(self._buffer) < HEADER.size:
            return 0
        length: int = _LEN.unpack_from(self._buffer, 0)[0]
        return max(0, HEADER.size + length - len(self._buffer))

    def feed(self, data: bytes) -> list[Message]:
        if self._buffer:
            self._buffer += data
            buffer: bytes | bytearray = self._buffer
        else:
            buffer = data  # the common case, whole frames in one read: no copy
        messages: list[Message] = []
        offset = 0
        with memoryview(buffer) as view:
            while len(buffer) - offset >= HEADER.size:
                length, version, kind, _ = HEADER.unpack_from(buffer, offset)
                if version != VERSION:
                    raise WireError(f"frame version {version}, expected {VERSION}")
                if length > self._max_frame:
                    raise WireError(
                        f"frame of {length} bytes is over the {self._max_frame} maximum"
                    )
                end = offset + HEADER.size + length
                if len(buffer) < end:
                    break
                messages.append(decode_body(kind, view[offset + HEADER.size : end]))
                offset = end
        if buffer is self._buffer:
            del self._buffer[:offset]
        elif offset < len(buffer):
            self._buffer = bytearray(buffer[offset:])
        return messages
