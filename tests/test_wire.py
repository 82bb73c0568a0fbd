"""The supervisor/worker wire format: frames in, messages out, untrusted bytes refused."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_bulkhead.wire._frames import (
    HEADER,
    KINDS,
    MAX_FRAME,
    VERSION,
    BecomeWorker,
    Chunk,
    Declined,
    Failure,
    FrameDecoder,
    Invocation,
    Invoke,
    Ready,
    Result,
    Spawn,
    Spawned,
    StreamEnd,
    StreamStart,
    TemplateFailed,
    TemplateNotes,
    TemplateReady,
    WaitOn,
    WireError,
    WorkerExited,
    encode,
)
from lambda_bulkhead.wire._pipes import read_message, send_message, write_parts

if TYPE_CHECKING:
    from lambda_bulkhead.wire._frames import Message

WAIT_S = 10.0

# -- strategies -----------------------------------------------------------------

# Any code point, lone surrogates included: a surrogateescape'd file name can
# reach an exception message, and the frame must carry it unchanged.
texts = st.text(st.characters(exclude_categories=()), max_size=40)
optional_texts = st.none() | texts
u32 = st.integers(min_value=0, max_value=2**32 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts
causes = st.lists(
    st.dictionaries(texts, json_scalars | st.lists(texts, max_size=3), max_size=4), max_size=3
).map(tuple)

u64 = st.integers(min_value=0, max_value=2**64 - 1)
invocations = st.builds(
    Invocation,
    request_id=texts,
    deadline_ms=i64,
    invoked_function_arn=texts,
    trace_id=optional_texts,
    client_context=optional_texts,
    cognito_identity=optional_texts,
    tenant_id=optional_texts,
    invocation_id=optional_texts,
    content_type=optional_texts,
    payload=st.binary(max_size=300),
)
invokes = st.builds(Invoke, turn=u64, invocation=invocations)
# An empty content type is read as application/json (workers always send one).
results = st.builds(
    Result, request_id=texts, content_type=texts.filter(bool), body=st.binary(max_size=300),
    peak_rss=u64, retire=st.sampled_from([0, 1]), turn=u64,
)
failures = st.builds(
    Failure,
    request_id=texts,
    error_type=texts,
    error_message=texts,
    stack_trace=st.lists(texts, max_size=4).map(tuple),
    causes=causes,
    fatal=st.booleans(),
    peak_rss=st.integers(0, 2**63 - 1),
    retire=st.sampled_from([0, 1]),
    turn=u64,
)
readies = st.builds(Ready, pid=u32, baseline_rss=i64)
spawns = st.builds(Spawn, memory_limit_bytes=st.none() | st.integers(0, 2**63 - 1))
spawneds = st.builds(Spawned, pid=u32)
template_readies = st.builds(TemplateReady, rss=i64, threads=u32, threads_surviving_fork=u32)
template_notes = st.builds(TemplateNotes, connections=st.lists(texts, max_size=4).map(tuple))
become_workers = st.builds(BecomeWorker, memory_limit_bytes=st.none() | st.integers(0, 2**63 - 1))
template_faileds = st.builds(
    TemplateFailed,
    error_type=texts,
    error_message=texts,
    stack_trace=st.lists(texts, max_size=4).map(tuple),
)
worker_exiteds = st.builds(WorkerExited, pid=u32, status=st.integers(0, 0xFFFF))
wait_ons = st.builds(WaitOn, cpu=st.integers(0, 4095))
declineds = st.builds(Declined, turn=u64)
stream_starts = st.builds(StreamStart, turn=u64, request_id=texts, content_type=texts)
chunks = st.builds(Chunk, turn=u64, size=st.integers(1, 2**32 - 1), pipe=st.integers(0, 1))
stream_ends = st.builds(
    StreamEnd, turn=u64, peak_rss=st.integers(0, 2**64 - 1), retire=st.sampled_from([0, 1])
)
messages = st.one_of(
    invokes, results, failures, readies, spawns, spawneds,
    template_readies, template_faileds, worker_exiteds, wait_ons, template_notes, become_workers,
    declineds, stream_starts, chunks, stream_ends,
)

ALL_KINDS = (
    Invoke, Result, Failure, Ready, Spawn, Spawned, TemplateReady, TemplateFailed,
    WorkerExited, WaitOn, BecomeWorker, TemplateNotes, Declined, StreamStart, Chunk, StreamEnd,
)


def frame(message: Message) -> bytes:
    return b"".join(encode(message))


def raw_frame(kind: int, body: bytes, *, version: int = VERSION) -> bytes:
    return HEADER.pack(len(body), version, kind, 0) + body


def json_frame(kind: int, fields: Any) -> bytes:
    return raw_frame(kind, json.dumps(fields).encode())


# -- round trips ------------------------------------------------------------------


@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    """Any message of any kind decodes to an equal message."""
    assert FrameDecoder().feed(frame(message)) == [message]


def test_every_kind_is_covered_and_kinds_are_distinct() -> None:
    """The message kinds are all distinct and each round-trips with sample values."""
    samples: list[Message] = [
        Invoke(turn=7, invocation=Invocation(
            request_id="r", deadline_ms=1, invoked_function_arn="arn", trace_id=None,
            client_context="{}", cognito_identity=None, tenant_id="t",
            invocation_id="i", content_type="application/json", payload=b'{"a": 1}')),
        Result(request_id="r", content_type="text/plain", body=b"ok", turn=7),
        Failure(request_id="r", error_type="ValueError", error_message="boom",
                stack_trace=("  File x\n",), causes=({"errorType": "KeyError"},), fatal=True),
        Ready(pid=12, baseline_rss=4096),
        Spawn(memory_limit_bytes=None),
        Spawned(pid=13),
        TemplateReady(rss=1 << 20),
        TemplateFailed(error_type="Runtime.ImportModuleError", error_message="no", stack_trace=()),
        WorkerExited(pid=14, status=11),
        WaitOn(cpu=1),
        BecomeWorker(memory_limit_bytes=1 << 30),
        TemplateNotes(connections=("tcp 127.0.0.1:443",)),
        Declined(turn=2**64 - 1),
        StreamStart(turn=7, request_id="r", content_type="text/event-stream"),
        Chunk(turn=7, size=1 << 20, pipe=1),
        StreamEnd(turn=7, peak_rss=1 << 20, retire=1),
    ]
    assert sorted(type(sample).__name__ for sample in samples) == sorted(
        cls.__name__ for cls in ALL_KINDS
    )
    assert set(KINDS) == set(ALL_KINDS)
    assert len(set(KINDS.values())) == len(ALL_KINDS)
    stream = b"".join(frame(sample) for sample in samples)
    assert FrameDecoder().feed(stream) == samples


def test_encode_keeps_the_payload_a_separate_part() -> None:
    """A large payload is handed to the writer as is, not copied into the header part."""
    payload = b"x" * 100_000
    parts = encode(Result(request_id="r", content_type="application/json", body=payload))
    assert parts[-1] is payload
    length, version, kind, reserved = HEADER.unpack_from(parts[0])
    assert (version, kind, reserved) == (VERSION, KINDS[Result], 0)
    assert length == sum(map(len, parts)) - HEADER.size


def test_result_without_content_type_decodes_as_json() -> None:
    """A Result whose content type field is None decodes with application/json."""
    body = struct.pack(">QQIIB", 0, 42 << 20, 1, 0xFFFFFFFF, 0) + b"r" + b"payload"
    (message,) = FrameDecoder().feed(raw_frame(KINDS[Result], body))
    assert message == Result(
        request_id="r", content_type="application/json", body=b"payload", peak_rss=42 << 20
    )


def test_a_retire_code_no_reason_has_is_refused() -> None:
    """The retire code is one byte, 0 or a known reason: anything else is a WireError,
    in a Result as in a Failure."""
    body = struct.pack(">QQIIB", 0, 0, 1, 0, 3) + b"r"
    with pytest.raises(WireError, match="retire code is 3"):
        FrameDecoder().feed(raw_frame(KINDS[Result], body))
    failure = Failure(request_id="r", error_type="E", error_message="m", stack_trace=())
    fields = {**failure._asdict(), "retire": 9, "stack_trace": []}
    with pytest.raises(WireError, match="retire code is 9"):
        FrameDecoder().feed(json_frame(KINDS[Failure], fields))


def test_result_ending_inside_its_fixed_part_is_rejected() -> None:
    """A Result body cut inside its peak RSS and lengths is a WireError, not a short read."""
    body = struct.pack(">QQIIB", 0, 0, 1, 0xFFFFFFFF, 0)[:-3]
    with pytest.raises(WireError, match="fixed part"):
        FrameDecoder().feed(raw_frame(KINDS[Result], body))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=6), st.data())
def test_any_split_of_the_stream_decodes_the_same(
    sent: list[Message], data: st.DataObject
) -> None:
    """However the byte stream is cut into reads, the same messages come out, in order."""
    stream = b"".join(frame(message) for message in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = FrameDecoder()
    received: list[Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        received += decoder.feed(stream[start:cut])
        start = cut
    assert received == sent
    assert decoder.pending == 0


def test_one_byte_at_a_time_decodes_the_same() -> None:
    """Feeding a frame a byte at a time yields it only once its last byte arrives."""
    message = Failure(request_id="r", error_type="E", error_message="m", stack_trace=())
    data = frame(message)
    decoder = FrameDecoder()
    for index in range(len(data) - 1):
        assert decoder.feed(data[index : index + 1]) == []
        assert decoder.pending == index + 1
    assert decoder.feed(data[-1:]) == [message]
    assert decoder.pending == 0


def test_a_lone_surrogate_in_an_error_message_crosses_the_wire() -> None:
    """An exception message holding a surrogateescape'd byte is encodable and decodes back."""
    name = b"/tmp/caf\xe9".decode("utf-8", "surrogateescape")
    message = Failure(request_id="r", error_type="FileNotFoundError",
                      error_message=f"No such file: {name!s}", stack_trace=(name,))
    assert FrameDecoder().feed(frame(message)) == [message]


# -- over real pipes ----------------------------------------------------------------


def test_a_frame_larger_than_the_pipe_buffer_crosses_a_pipe() -> None:
    """A 7 MB frame written from a thread arrives whole through a real pipe."""
    read_fd, write_fd = os.pipe()
    message = Result(request_id="r", content_type="application/json", body=os.urandom(7 << 20))
    writer = threading.Thread(target=send_message, args=(write_fd, message))
    try:
        writer.start()
        received = read_message(read_fd, FrameDecoder(), [])
        writer.join()
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert received == message


def test_write_parts_gives_up_on_a_full_pipe_at_its_deadline() -> None:
    """A non-blocking pipe nobody reads makes write_parts raise TimeoutError, not block."""
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK)
    try:
        with pytest.raises(TimeoutError):
            write_parts(write_fd, [b"x" * (4 << 20)], time.monotonic() + 0.05)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_small_frames_wait_for_room_in_a_full_non_blocking_pipe() -> None:
    """Small frames (joined into one write) sent into a full non-blocking pipe
    wait for the reader, then arrive whole and in order."""
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK)
    sent = [Result(request_id=f"r{i}", content_type="application/json", body=b"x" * i)
            for i in (0, 100, 3000)]
    filler = 0
    try:
        for size in (65536, 1):
            with contextlib.suppress(BlockingIOError):
                while True:
                    filler += os.write(write_fd, b"-" * size)
        def send_all() -> None:
            for message in sent:
                send_message(write_fd, message, time.monotonic() + WAIT_S)

        writer = threading.Thread(target=send_all)
        writer.start()
        os.set_blocking(read_fd, True)
        drained = 0
        while drained < filler:
            drained += len(os.read(read_fd, min(65536, filler - drained)))
        decoder = FrameDecoder()
        received: list[object] = []
        while len(received) < len(sent):
            received += decoder.feed(os.read(read_fd, 65536))
        writer.join(WAIT_S)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert filler > 0
    assert received == sent


def test_read_message_returns_none_at_end_of_stream() -> None:
    """A closed pipe reads as None (no message), after the messages it held."""
    read_fd, write_fd = os.pipe()
    try:
        send_message(write_fd, Spawned(pid=1))
        os.close(write_fd)
        decoder, backlog = FrameDecoder(), []  # type: ignore[var-annotated]
        assert read_message(read_fd, decoder, backlog) == Spawned(pid=1)
        assert read_message(read_fd, decoder, backlog) is None
    finally:
        os.close(read_fd)


# -- refused frames ----------------------------------------------------------------


def test_encode_refuses_a_frame_over_the_maximum() -> None:
    """A message bigger than MAX_FRAME is refused before a byte is written."""
    with pytest.raises(WireError, match="maximum"):
        encode(Result(request_id="r", content_type="x", body=bytes(MAX_FRAME)))


def test_max_frame_is_above_lambdas_payload_limit() -> None:
    """Any event or response Lambda accepts (6 MB) fits in one frame, with room for headers."""
    assert MAX_FRAME > 6 * 1024 * 1024 + 64 * 1024


def test_an_oversized_length_prefix_is_refused_from_the_header_alone() -> None:
    """A header announcing more than the maximum is refused without waiting for the body."""
    decoder = FrameDecoder()
    with pytest.raises(WireError, match="maximum"):
        decoder.feed(HEADER.pack(MAX_FRAME + 1, VERSION, KINDS[Result], 0))
    with pytest.raises(WireError, match="maximum"):
        FrameDecoder().feed(HEADER.pack(0xFFFFFFFF, VERSION, KINDS[Result], 0))


def test_a_decoder_with_a_smaller_maximum_refuses_larger_frames() -> None:
    """The decoder's own maximum applies."""
    with pytest.raises(WireError):
        FrameDecoder(max_frame=5).feed(frame(Spawned(pid=1)))


@pytest.mark.parametrize("version", [0, VERSION + 1, 255])
def test_a_wrong_version_is_refused(version: int) -> None:
    """A frame of another protocol version is refused."""
    with pytest.raises(WireError, match="version"):
        FrameDecoder().feed(raw_frame(KINDS[Spawned], b'{"pid": 1}', version=version))


@pytest.mark.parametrize("kind", [0, 17, 99, 255])
def test_an_unknown_kind_is_refused(kind: int) -> None:
    """A frame of a kind no message has is refused."""
    with pytest.raises(WireError, match="kind"):
        FrameDecoder().feed(raw_frame(kind, b"{}"))


def test_garbage_is_refused() -> None:
    """Bytes that are not a frame (text written to the wrong fd) are refused."""
    with pytest.raises(WireError):
        FrameDecoder().feed(b"Traceback (most recent call last):\n")
    with pytest.raises(WireError):
        FrameDecoder().feed(b"\xff" * 64)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_to_messages_or_wire_error(data: bytes) -> None:
    """Whatever a peer writes, the decoder yields valid messages or raises WireError."""
    try:
        decoded = FrameDecoder(max_frame=1 << 16).feed(data)
    except WireError:
        return
    assert all(isinstance(message, ALL_KINDS) for message in decoded)


def test_a_truncated_frame_is_pending_not_decoded() -> None:
    """Half a frame yields nothing and is reported as pending (an error at end of stream)."""
    data = frame(Ready(pid=1, baseline_rss=2))
    decoder = FrameDecoder()
    assert decoder.feed(data[: len(data) // 2]) == []
    assert decoder.pending == len(data) // 2


def test_invoke_bodies_that_end_early_are_refused() -> None:
    """An Invoke body cut inside its fixed part or inside a text field is refused."""
    whole = b"".join(encode(Invoke(turn=1, invocation=Invocation(
        request_id="r", deadline_ms=5, payload=b"", invoked_function_arn="a"))))
    body = whole[HEADER.size :]
    for cut in (2, 6, 8 + 8 + 4 * 8 - 1, len(body) - 1):
        with pytest.raises(WireError):
            FrameDecoder().feed(raw_frame(KINDS[Invoke], body[:cut]))


@pytest.mark.parametrize("deadline_ms", [2**63, -(2**63) - 1, 10**20])
def test_an_invoke_whose_deadline_no_frame_holds_is_a_wire_error(deadline_ms: int) -> None:
    """A deadline outside the i64 is refused as a WireError (the slot answers that
    invocation), never a struct.error."""
    invocation = Invocation(request_id="r", payload=b"", deadline_ms=deadline_ms)
    with pytest.raises(WireError, match="Invoke"):
        encode(Invoke(turn=1, invocation=invocation))


def test_a_text_field_running_past_the_body_is_refused() -> None:
    """A text length larger than what follows is refused."""
    body = struct.pack(">QQIIB", 0, 0, 100, 0, 0) + b"short"
    with pytest.raises(WireError, match="past the end"):
        FrameDecoder().feed(raw_frame(KINDS[Result], body))


def test_a_missing_request_id_is_refused() -> None:
    """An Invoke or Result whose request id is None is refused."""
    none = 0xFFFFFFFF
    body = struct.pack(">QQIIB", 0, 0, none, none, 0) + b"body"
    with pytest.raises(WireError, match="request_id"):
        FrameDecoder().feed(raw_frame(KINDS[Result], body))
    with pytest.raises(WireError, match="request_id"):
        FrameDecoder().feed(raw_frame(KINDS[Invoke], struct.pack(">Qq8I", 0, 0, *[none] * 8)))


def test_invalid_utf8_in_a_text_field_is_refused() -> None:
    """A text field that is not UTF-8 is refused."""
    body = struct.pack(">QQIIB", 0, 0, 2, 0, 0) + b"\xc3\x28"
    with pytest.raises(WireError, match="UTF-8"):
        FrameDecoder().feed(raw_frame(KINDS[Result], body))


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (Failure, {"request_id": 1, "error_type": "E", "error_message": "m",
                   "stack_trace": []}),
        (Failure, {"request_id": "r", "error_type": "E", "error_message": "m",
                   "stack_trace": "  File x"}),
        (Failure, {"request_id": "r", "error_type": "E", "error_message": "m",
                   "stack_trace": [1, 2]}),
        (Failure, {"request_id": "r", "error_type": "E", "error_message": "m",
                   "stack_trace": [], "causes": ["ValueError"]}),
        (Failure, {"request_id": "r", "error_type": "E", "error_message": "m",
                   "stack_trace": [], "fatal": 1}),
        (Failure, {"request_id": "r", "error_type": None, "error_message": "m",
                   "stack_trace": []}),
        (TemplateFailed, {"error_type": "E", "error_message": ["m"], "stack_trace": []}),
    ],
)
def test_json_bodies_with_wrong_fields_are_refused(cls: type[Message], fields: Any) -> None:
    """A JSON body with a wrong type, a missing or an unknown field is refused."""
    with pytest.raises(WireError, match=cls.__name__):
        FrameDecoder().feed(json_frame(KINDS[cls], fields))


@pytest.mark.parametrize("body", [b"", b"{", b"[1, 2]", b'"text"', b"null", b"\xff\xfe"])
def test_json_bodies_that_are_not_an_object_are_refused(body: bytes) -> None:
    """A JSON-kind body that is not a JSON object is refused."""
    with pytest.raises(WireError):
        FrameDecoder().feed(raw_frame(KINDS[Failure], body))


@pytest.mark.parametrize(
    ("cls", "body"),
    [
        (Ready, struct.pack(">q", 1)),
        (Ready, struct.pack(">qqq", 1, 2, 3)),
        (Spawned, b""),
        (TemplateReady, b"{}"),
        (WorkerExited, struct.pack(">qq", 1, 2)[:-1]),
        (Spawn, struct.pack(">q", -2)),
        (BecomeWorker, struct.pack(">q", -2)),
        (StreamEnd, struct.pack(">QQ", 1, 2)),
        (StreamEnd, struct.pack(">QQB", 1, 2, 9)),
        (Chunk, struct.pack(">Q", 1)),
        (StreamStart, struct.pack(">QII", 1, 1, 0) + b"r" + b"extra"),
    ],
)
def test_number_bodies_of_the_wrong_size_or_value_are_refused(
    cls: type[Message], body: bytes
) -> None:
    """A whole-numbers message with too few or too many bytes, or a negative limit,
    is refused."""
    with pytest.raises(WireError, match=cls.__name__):
        FrameDecoder().feed(raw_frame(KINDS[cls], body))


@pytest.mark.parametrize("chunk", [Chunk(turn=3, size=0, pipe=0), Chunk(turn=3, size=1, pipe=2)])
def test_a_chunk_is_never_empty_nor_on_a_pipe_the_worker_lacks(chunk: Chunk) -> None:
    """An empty chunk (which would end the HTTP body early) or one on a third stream
    pipe is neither sent nor taken."""
    with pytest.raises(WireError, match="Chunk"):
        encode(chunk)
    body = struct.pack(">QIB", chunk.turn, chunk.size, chunk.pipe)
    with pytest.raises(WireError, match="Chunk"):
        FrameDecoder().feed(raw_frame(KINDS[Chunk], body))


def test_a_negative_limit_is_not_sent() -> None:
    """Spawn's limit is absent (None) or a size: a negative one is refused at encode."""
    with pytest.raises(WireError):
        encode(Spawn(memory_limit_bytes=-5))


def test_decoding_stops_at_the_bad_frame() -> None:
    """A good frame followed by garbage raises; the supervisor then distrusts the peer."""
    decoder = FrameDecoder()
    with pytest.raises(WireError):
        decoder.feed(frame(Spawned(pid=1)) + raw_frame(77, b""))
