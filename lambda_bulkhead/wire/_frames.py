"""The framing and the closed set of messages between supervisor, template and workers.

Every message crosses a pipe (or, for the template, a Unix socket) as one frame::

     0               4       5       6               8
    +---------------+-------+-------+---------------+--------------------+
    | length (u32)  |  ver  | kind  |   reserved    |  body (length B)   |
    +---------------+-------+-------+---------------+--------------------+

* ``length``: big-endian byte count of the body, at most :data:`MAX_FRAME`
  (above Lambda's 6 MB payload limit, so any event or result fits in one frame).
* ``ver``: :data:`VERSION`; ``kind``: which message the body holds (:data:`KINDS`).
* Bodies: the hot messages, :class:`Invoke` (supervisor to worker) and
  :class:`Result`, start with one fixed ``struct``: Invoke's turn (``u64``),
  its invocation's deadline (``i64``) and the byte length of each of its eight
  text fields (``u32``, ``0xFFFFFFFF`` for None), Result's turn (``u64``),
  peak RSS (``u64``), its two text lengths and its retire code (``u8``,
  :data:`RETIRE_REASONS`);
  then the texts (UTF-8), then the raw payload.  A streamed answer's
  :class:`StreamStart` is the turn (``u64``) and its two text lengths
  (``u32``), then the texts.  The messages of whole numbers only are one
  ``struct`` of ``i64`` each (``Spawn``'s absent limit is -1; :class:`Chunk`,
  :class:`StreamEnd` and :class:`Declined` have their own, narrower); the two
  failures and :class:`TemplateNotes` are one UTF-8 JSON object each.

A streamed answer (a generator handler) is, in turn, one :class:`StreamStart`
(sent with the first chunk), :class:`Chunk` frames, then :class:`StreamEnd` or
a :class:`Failure`.  A chunk's bytes are not in its frame: the worker writes
them whole on one of its two *stream pipes*, raw, then the :class:`Chunk`
frame that says which pipe and how many bytes, so that the supervisor can move
them pipe to socket with ``os.splice`` without ever holding them, and never
sees a chunk its worker did not finish writing (a worker that dies in the
middle of one leaves bytes no frame announced).  The worker alternates
between the two pipes, filling one while the supervisor empties the other;
the supervisor forwards each chunk before it reads on, so a worker whose
chunks are not taken blocks in its write (back-pressure).  A piece is at most
what its pipe holds, so that it can always be written whole before it is
announced.

The turn: every Invoke carries a number the worker has no other way to know
(each slot counts them from a random 64-bit start), and the one
:class:`Result` or :class:`Failure` that answers it carries the same number.
Any other frame on a worker's result pipe (a second answer, one written by a
thread the handler left running, one the handler forged) is out of turn: it
answers nothing and is blamed on the worker that wrote it, never on the
invocation in flight (see :mod:`lambda_bulkhead.supervisor._slot`).

:func:`encode` turns a message into the byte strings to write (header and body
parts separately, so a multi-megabyte payload is never copied to frame it) and
:class:`FrameDecoder` turns any split of a byte stream back into messages,
rejecting a bad version, an unknown kind, a length over the maximum or a
malformed body with :class:`WireError`.  A peer's bytes are never trusted: no
frame decodes into anything but a valid message.  The fd reads and writes live
in :mod:`lambda_bulkhead.wire._pipes`.
"""

from __future__ import annotations

import struct

from lambda_bulkhead._context import Invocation
from lambda_bulkhead._record import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

__all__ = [
    "HEADER",
    "KINDS",
    "MAX_FRAME",
    "RETIRE_OUTPUT_LOST",
    "RETIRE_REASONS",
    "STREAM_PIPES",
    "TURN_MASK",
    "VERSION",
    "BecomeWorker",
    "Chunk",
    "Declined",
    "Failure",
    "FrameDecoder",
    "Invocation",
    "Invoke",
    "Ready",
    "Result",
    "Spawn",
    "Spawned",
    "StreamEnd",
    "StreamStart",
    "TemplateFailed",
    "TemplateNotes",
    "TemplateReady",
    "WaitOn",
    "WireError",
    "WorkerExited",
    "encode",
    "encode_invoke",
]

VERSION = 3
MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">IBBH")
_LEN = struct.Struct(">I")
_NONE = 0xFFFFFFFF
#: An Invoke frame's header and fixed part: the turn, the deadline, then the
#: byte length of each of the invocation's eight text fields, in its field
#: order (``_NONE`` for None).
_INVOKE_HEAD = struct.Struct(">IBBHQq8I")
#: A Result frame's header and fixed part: turn, peak RSS, request id and
#: content type lengths, retire code.
_RESULT_HEAD = struct.Struct(">IBBHQQIIB")
#: A StreamStart frame's header, turn and two text lengths.
_START_HEAD = struct.Struct(">IBBHQII")
#: Turns are ``u64``: a slot's count wraps at this.
TURN_MASK = 2**64 - 1
_INVOKE_KIND = 1
_RESULT_KIND = 2
_START_KIND = 14
#: How many stream pipes a worker has (a :class:`Chunk`'s ``pipe`` is below it).
STREAM_PIPES = 2


#: Why a worker asks to be replaced after its answer (an answer's ``retire``
#: code; 0: it serves on), in the words of the ``worker replaced`` record.
RETIRE_REASONS = {
    1: "closed its stdout/stderr",
}
#: The handler closed (or replaced) the worker's fd 1 or 2: every later line would be lost.
RETIRE_OUTPUT_LOST = 1


class WireError(Exception):
    """Bytes from a peer that are not a valid frame: the peer is not to be trusted."""


class Invoke(NamedTuple):
    """Supervisor → worker: run ``invocation``; answer it with ``turn``."""

    turn: int
    invocation: Invocation


class Result(NamedTuple):
    """Worker → supervisor: the handler returned; post ``body`` to ``/response``."""

    request_id: str
    content_type: str
    body: bytes
    #: The worker's peak RSS in bytes during the invocation (0: unknown).
    peak_rss: int = 0
    #: Non-zero: replace the worker after this answer (:data:`RETIRE_REASONS`).
    retire: int = 0
    #: The turn of the Invoke this answers.
    turn: int = 0


class Failure(NamedTuple):
    """Worker → supervisor: post this error to ``/error``.

    ``fatal``: the worker exits after sending it (``sys.exit`` in the handler,
    a ``MemoryError``), so the supervisor replaces it.
    """

    request_id: str
    error_type: str
    error_message: str
    stack_trace: tuple[str, ...]
    causes: tuple[dict[str, Any], ...] = ()
    fatal: bool = False
    peak_rss: int = 0
    retire: int = 0
    turn: int = 0


class StreamStart(NamedTuple):
    """Worker → supervisor: the handler of ``turn`` streams its answer; the chunks
    follow.  Sent with the first chunk (a failure before it is a plain Failure)."""

    turn: int
    request_id: str
    content_type: str


class Chunk(NamedTuple):
    """Worker → supervisor: the next ``size`` bytes of the streamed answer of
    ``turn`` (at least one) are on stream pipe ``pipe``, written whole."""

    turn: int
    size: int
    pipe: int


class StreamEnd(NamedTuple):
    """Worker → supervisor: the streamed answer of ``turn`` ended well (a failure
    ends it with a :class:`Failure` instead)."""

    turn: int
    peak_rss: int = 0
    retire: int = 0


class Ready(NamedTuple):
    """Worker → supervisor, once after fork: set up, waiting for work."""

    pid: int
    baseline_rss: int


class Declined(NamedTuple):
    """Worker → supervisor, instead of an answer: the Invoke of ``turn`` was not
    run, and the worker exits.  Its last invocation changed the process in a
    way it could not put back (a hard resource limit lowered), which the next
    one must not inherit: the supervisor gives the event to another worker."""

    turn: int


class WaitOn(NamedTuple):
    """Supervisor → worker: wait for events on this CPU, the slot's
    (``BULKHEAD_COLOCATE``; see :mod:`lambda_bulkhead.process._affinity`)."""

    cpu: int


class Spawn(NamedTuple):
    """Supervisor → template: fork a worker on the pipes sent along (SCM_RIGHTS)."""

    memory_limit_bytes: int | None


class BecomeWorker(NamedTuple):
    """Supervisor → template: stop being a template and serve as a worker on the
    pipes sent along (SCM_RIGHTS), in this process, which already imported the
    handler (``BULKHEAD_WORKER_START=import``; answered with :class:`Spawned`)."""

    memory_limit_bytes: int | None


class Spawned(NamedTuple):
    """Template → supervisor: the worker asked for is ``pid``."""

    pid: int


class TemplateReady(NamedTuple):
    """Template → supervisor: the handler is loaded (by this process: ``threads``
    is how many its import left running; the connections it left open follow
    in :class:`TemplateNotes`)."""

    rss: int
    threads: int = 1
    #: Of those, the threads of pools known to survive fork (OpenBLAS's).
    threads_surviving_fork: int = 0


class TemplateNotes(NamedTuple):
    """Template → supervisor, with :class:`TemplateReady` when the handler's
    import left connections open: who they are connected to, for the log."""

    connections: tuple[str, ...]


class TemplateFailed(NamedTuple):
    """Template → supervisor: loading the handler failed; post to ``/init/error``."""

    error_type: str
    error_message: str
    stack_trace: tuple[str, ...]


class WorkerExited(NamedTuple):
    """Template → supervisor: a worker was reaped with ``waitpid`` status ``status``."""

    pid: int
    status: int


if TYPE_CHECKING:
    Message: TypeAlias = (
        Invoke | Result | Failure | Ready | Spawn | Spawned | TemplateReady
        | TemplateFailed | WorkerExited | WaitOn | BecomeWorker | TemplateNotes | Declined
        | StreamStart | Chunk | StreamEnd
    )

#: Every message class and its frame kind.
KINDS: dict[type[Message], int] = {
    Invoke: _INVOKE_KIND,
    Result: _RESULT_KIND,
    Failure: 3,
    Ready: 4,
    Spawn: 5,
    Spawned: 6,
    TemplateReady: 7,
    TemplateFailed: 8,
    WorkerExited: 9,
    WaitOn: 10,
    BecomeWorker: 11,
    TemplateNotes: 12,
    Declined: 13,
    StreamStart: _START_KIND,
    Chunk: 15,
    StreamEnd: 16,
}
#: The messages of whole numbers only: one i64 per field.
_INT_LAYOUTS: dict[type[Message], struct.Struct] = {
    cls: struct.Struct(">" + "q" * len(cls._fields))
    for cls in (Ready, Spawn, Spawned, TemplateReady, WorkerExited, WaitOn, BecomeWorker)
}
_INT_LAYOUTS[Declined] = struct.Struct(">Q")  # a turn is a u64
_INT_LAYOUTS[StreamEnd] = struct.Struct(">QQB")  # turn, peak RSS, retire code
_INT_LAYOUTS[Chunk] = struct.Struct(">QIB")  # turn, size, pipe
_INT_KINDS = {KINDS[cls]: cls for cls in _INT_LAYOUTS}
_JSON_KINDS: dict[int, type[Message]] = {
    KINDS[Failure]: Failure, KINDS[TemplateFailed]: TemplateFailed,
    KINDS[TemplateNotes]: TemplateNotes,
}
#: ``Spawn.memory_limit_bytes`` None on the wire (a limit is never negative).
_NO_LIMIT = -1
#: The messages whose first field is a memory limit that may be None.
_LIMITED = (Spawn, BecomeWorker)


def encode_invoke(turn: int, invocation: Invocation) -> list[bytes]:
    """``encode(Invoke(turn, invocation))``, without building the :class:`Invoke`
    (the supervisor's per-invocation path)."""
    texts = [
        None if text is None else text.encode("utf-8", "surrogatepass")
        for text in (
            invocation.request_id, invocation.invoked_function_arn, invocation.trace_id,
            invocation.client_context, invocation.cognito_identity, invocation.tenant_id,
            invocation.invocation_id, invocation.content_type,
        )
    ]
    lengths = [_NONE if text is None else len(text) for text in texts]
    joined = b"".join([text for text in texts if text])
    length = _INVOKE_HEAD.size - HEADER.size + len(joined) + len(invocation.payload)
    _check_length(length)
    try:
        head = _INVOKE_HEAD.pack(
            length, VERSION, _INVOKE_KIND, 0, turn, invocation.deadline_ms, *lengths
        )
    except struct.error as exc:  # a deadline or turn out of its range
        raise WireError(f"Invoke: {exc}") from None
    return [head + joined, invocation.payload]


def _encode_result(result: Result) -> list[bytes]:
    request_id = result.request_id.encode("utf-8", "surrogatepass")
    content_type = result.content_type.encode("utf-8", "surrogatepass")
    length = (
        _RESULT_HEAD.size - HEADER.size + len(request_id) + len(content_type) + len(result.body)
    )
    _check_length(length)
    head = _RESULT_HEAD.pack(
        length, VERSION, _RESULT_KIND, 0, result.turn, result.peak_rss, len(request_id),
        len(content_type), result.retire,
    )
    return [head + request_id + content_type, result.body]


def _encode_start(start: StreamStart) -> list[bytes]:
    request_id = start.request_id.encode("utf-8", "surrogatepass")
    content_type = start.content_type.encode("utf-8", "surrogatepass")
    length = _START_HEAD.size - HEADER.size + len(request_id) + len(content_type)
    _check_length(length)
    head = _START_HEAD.pack(
        length, VERSION, _START_KIND, 0, start.turn, len(request_id), len(content_type)
    )
    return [head, request_id + content_type]


def _check_length(length: int) -> None:
    if length > MAX_FRAME:
        raise WireError(f"frame of {length} bytes is over the {MAX_FRAME} byte maximum")


def encode(message: Message) -> list[bytes]:
    """The byte strings of ``message``'s frame, to be written in order (a large
    payload is its own part, never copied to frame it)."""
    cls = type(message)
    if cls is Invoke:
        return encode_invoke(*message)
    if cls is Result:
        return _encode_result(message)  # type: ignore[arg-type]
    if cls is Chunk:
        _check_chunk(message)  # type: ignore[arg-type]
    if cls is StreamStart:
        try:
            return _encode_start(message)  # type: ignore[arg-type]
        except struct.error as exc:
            raise WireError(f"StreamStart: {exc}") from None
    layout = _INT_LAYOUTS.get(cls)
    if layout is not None:
        values: list[int] = [_NO_LIMIT if value is None else value for value in message]  # type: ignore[misc]
        if cls in _LIMITED and values[0] < _NO_LIMIT:
            raise WireError(f"negative memory limit {values[0]}")
        try:
            body = layout.pack(*values)
        except struct.error as exc:
            raise WireError(f"{cls.__name__}: {exc}") from None
        return [HEADER.pack(len(body), VERSION, KINDS[cls], 0), body]
    import json  # noqa: PLC0415 - failures only: json costs the supervisor's cold start ~5 ms

    # surrogatepass: a lone surrogate (a surrogateescape'd file name in an
    # exception message) must cross; json.loads(bytes) decodes it back.
    body = json.dumps(message._asdict(), ensure_ascii=False).encode("utf-8", "surrogatepass")
    _check_length(len(body))
    return [HEADER.pack(len(body), VERSION, KINDS[cls], 0), body]


def _decode_text(frame: memoryview, start: int, length: int, end: int) -> tuple[str | None, int]:
    if length == _NONE:
        return None, start
    stop = start + length
    if stop > end:
        raise WireError("text field runs past the end of the body")
    try:
        return str(frame[start:stop], "utf-8", "surrogatepass"), stop
    except UnicodeDecodeError as exc:
        raise WireError(f"text field is not UTF-8: {exc}") from None


#: Builds a record from a tuple of all its fields in C (a record's own
#: constructor is Python code, run per invocation here).
_new_record = tuple.__new__


def _decode_invoke(frame: memoryview, end: int) -> Invoke:
    if end < _INVOKE_HEAD.size:
        raise WireError("Invoke body ends inside its fixed part")
    _, _, _, _, turn, deadline, *lengths = _INVOKE_HEAD.unpack_from(frame)
    offset = _INVOKE_HEAD.size
    texts = []
    for length in lengths:
        text, offset = _decode_text(frame, offset, length, end)
        texts.append(text)
    request_id, arn, trace_id, client_context, cognito, tenant_id, invocation_id, ctype = texts
    if request_id is None:
        raise WireError("request_id missing")
    return _new_record(Invoke, (turn, _new_record(Invocation, (
        request_id, bytes(frame[offset:end]), deadline, arn or "", trace_id, client_context,
        cognito, tenant_id, invocation_id, ctype,
    ))))


def _decode_result(frame: memoryview, end: int) -> Result:
    if end < _RESULT_HEAD.size:
        raise WireError("Result body ends inside its fixed part")
    _, _, _, _, turn, peak_rss, id_length, type_length, retire = _RESULT_HEAD.unpack_from(frame)
    if retire and retire not in RETIRE_REASONS:
        raise WireError(f"Result retire code is {retire}, not one of {sorted(RETIRE_REASONS)}")
    request_id, offset = _decode_text(frame, _RESULT_HEAD.size, id_length, end)
    content_type, offset = _decode_text(frame, offset, type_length, end)
    if request_id is None:
        raise WireError("request_id missing")
    return Result(request_id, content_type or "application/json", bytes(frame[offset:end]),
                  peak_rss, retire, turn)


def _check_chunk(chunk: Chunk) -> None:
    if chunk.size <= 0:
        raise WireError(f"Chunk of {chunk.size} bytes")
    if not 0 <= chunk.pipe < STREAM_PIPES:
        raise WireError(f"Chunk on stream pipe {chunk.pipe}, not one of {STREAM_PIPES}")


def _decode_start(frame: memoryview, end: int) -> StreamStart:
    if end < _START_HEAD.size:
        raise WireError("StreamStart body ends inside its fixed part")
    _, _, _, _, turn, id_length, type_length = _START_HEAD.unpack_from(frame)
    request_id, offset = _decode_text(frame, _START_HEAD.size, id_length, end)
    content_type, offset = _decode_text(frame, offset, type_length, end)
    if request_id is None or content_type is None:
        raise WireError("StreamStart text missing")
    if offset != end:
        raise WireError("StreamStart has bytes after its texts")
    return StreamStart(turn, request_id, content_type)


def decode_frame(kind: int, frame: memoryview) -> Message:
    """The message of ``kind`` held in ``frame`` (header included); :class:`WireError`
    if malformed."""
    if kind == _INVOKE_KIND:
        return _decode_invoke(frame, len(frame))
    if kind == _RESULT_KIND:
        return _decode_result(frame, len(frame))
    if kind == _START_KIND:
        return _decode_start(frame, len(frame))
    int_cls = _INT_KINDS.get(kind)
    if int_cls is not None:
        message = _decode_ints(int_cls, frame)
        if type(message) is StreamEnd and message.retire and message.retire not in RETIRE_REASONS:
            raise WireError(f"StreamEnd retire code is {message.retire}")
        if type(message) is Chunk:
            _check_chunk(message)
        return message
    cls = _JSON_KINDS.get(kind)
    if cls is None:
        raise WireError(f"unknown frame kind {kind}")
    import json  # noqa: PLC0415 - failures only (see encode)

    try:
        fields = json.loads(bytes(frame[HEADER.size :]))
    except ValueError as exc:
        raise WireError(f"{cls.__name__} body is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise WireError(f"{cls.__name__} body is not a JSON object")
    message = _checked(cls, fields)
    if type(message) is Failure and message.retire and message.retire not in RETIRE_REASONS:
        raise WireError(f"Failure retire code is {message.retire}")
    return message


def _decode_ints(cls: type[Message], frame: memoryview) -> Message:
    layout = _INT_LAYOUTS[cls]
    if len(frame) - HEADER.size != layout.size:
        size = len(frame) - HEADER.size
        raise WireError(f"{cls.__name__} body is {size} bytes, not {layout.size}")
    values: list[int | None] = list(layout.unpack_from(frame, HEADER.size))
    if cls in _LIMITED:
        if values[0] == _NO_LIMIT:
            values[0] = None
        elif values[0] < 0:  # type: ignore[operator]
            raise WireError(f"{cls.__name__}.memory_limit_bytes is negative: {values[0]}")
    return cls(*values)  # type: ignore[arg-type]


def _checked(cls: type[Message], fields: dict[str, Any]) -> Message:
    """``cls(**fields)`` after checking every field's JSON type against its annotation."""
    expected: dict[str, str] = cls.__annotations__
    if set(fields) - set(expected):
        raise WireError(f"{cls.__name__} has unknown fields {sorted(set(fields) - set(expected))}")
    for name, value in fields.items():
        annotation = expected[name]
        if not _fits(annotation, value):
            raise WireError(f"{cls.__name__}.{name} is not {annotation}: {value!r:.80}")
        if annotation.startswith("tuple"):
            fields[name] = tuple(value)
    try:
        return cls(**fields)
    except TypeError as exc:
        raise WireError(f"{cls.__name__}: {exc}") from None


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
                messages.append(decode_frame(kind, view[offset:end]))
                offset = end
        if buffer is self._buffer:
            del self._buffer[:offset]
        elif offset < len(buffer):
            self._buffer = bytearray(buffer[offset:])
        return messages
