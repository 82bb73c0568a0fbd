"""Response streaming through a real runtime, in-process and supervised, against
the emulator: chunks leave as they are yielded, failures before the first byte
are an /error and after it the trailers, back-pressure end to end."""

from __future__ import annotations

import base64
import itertools
import json
import threading
from typing import Any

import psutil
import pytest
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator, InvokeResult

WAIT_S = 30.0
TRAILER_TYPE = "lambda-runtime-function-error-type"

APP = r'''
import asyncio
import ctypes
import os
import sys
import time

from lambda_bulkhead.responses import HttpPrelude


def handler(event, context):
    action = event.get("action", "count")
    if action == "raise-first":
        raise ValueError("before the first byte")
    yield from ACTIONS[action](event, context)


def count(event, context):
    for index in range(event.get("n", 3)):
        yield f"chunk {index}\n"
        time.sleep(event.get("pause", 0))


def then(failure):
    def run(event, context):
        yield b"first"
        time.sleep(event.get("pause", 0))
        failure(event)
        yield b"never"
    return run


def raise_(event):
    raise KeyError("mid-stream")


def segfault(event):
    ctypes.string_at(0)


def exit_(event):
    os._exit(3)


def hog(event):
    hoard = []
    while True:
        hoard.append(bytearray(16 * 1024 * 1024))
        time.sleep(0.01)


def hang(event):
    time.sleep(600)


def endless(event, context):
    chunk = b"x" * event.get("size", 65536)
    while True:
        yield chunk


def timed(event, context):
    # Each chunk says when it was yielded (CLOCK_MONOTONIC is the machine's).
    pad = b"x" * (event["size"] - 32)
    for _ in range(event["count"]):
        yield b"%031.6f|" % time.monotonic() + pad


def big(event, context):
    chunk = os.urandom(1 << 20)
    for _ in range(event["mib"]):
        yield chunk


def http(event, context):
    yield HttpPrelude(202, {"content-type": "text/plain"}, ["a=1"])
    yield "hello "
    yield "world"


def pid(event, context):
    yield str(os.getpid())


def then_exit(event, context):
    # The first chunk waits for the slow Runtime API; the next two and the
    # worker's last answer are in its pipe when it exits.
    yield b"a" * event["first"]
    yield b"b" * 1000
    yield b"c" * 1000
    raise SystemExit(3)


def worker_local(name):
    # A local of the worker loop, found by walking the stack: what a handler
    # that scribbles on the wrong fd, or forges a frame, would do.
    frame = sys._getframe()
    while frame.f_code.co_name != "run_worker":
        frame = frame.f_back
    return frame.f_locals[name]


def half_written(event, context):
    # What a worker that dies in the middle of a chunk leaves: bytes on its
    # next stream pipe that no Chunk frame announced.
    yield b"first"
    os.write(worker_local("fds").streams[1], b"half")
    os._exit(3)


def stray(event, context):
    yield b"first"
    os.write(worker_local("fds").streams[1], b"stray")


def overstated(event, context):
    from lambda_bulkhead.wire._frames import Chunk, encode

    yield b"first"
    frame = encode(Chunk(worker_local("turn"), 1000, 1))
    os.write(worker_local("fds").result, b"".join(frame))
    time.sleep(600)


ACTIONS = {
    "count": count,
    "half_written": half_written,
    "stray": stray,
    "overstated": overstated,
    "raise": then(raise_),
    "segfault": then(segfault),
    "exit": then(exit_),
    "hog": then(hog),
    "hang": then(hang),
    "big": big,
    "http": http,
    "pid": pid,
    "endless": endless,
    "timed": timed,
    "then_exit": then_exit,
}


async def agen(event, context):
    for index in range(event.get("n", 3)):
        await asyncio.sleep(event.get("pause", 0))
        yield f"async {index}\n"
'''

ISOLATIONS = ["none", "process"]


def start(runtime: StartRuntime, isolation: str, emulator: Emulator | None = None,
          handler: str = "app.handler", env: dict[str, str | None] | None = None,
          ) -> RuntimeProcess:
    return runtime(handler, modules={"app.py": APP}, isolation=isolation,
                   emulator=emulator, env=env)


def event(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def error_body(result: InvokeResult) -> dict[str, Any]:
    assert result.stream_error_body is not None, result
    decoded: dict[str, Any] = json.loads(result.stream_error_body)
    return decoded


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_chunks_leave_as_they_are_yielded(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """The first chunk reaches the Runtime API while the handler still runs: the
    chunks arrive spread over the handler's pauses, each as it was yielded."""
    proc = start(runtime, isolation)
    stream = emulator.stream(event(n=3, pause=0.4))
    first = stream.next_chunk(WAIT_S)
    assert first is not None, proc.describe()
    assert first.data == b"chunk 0\n"
    assert not stream.future.done()  # the handler is still sleeping
    result = stream.result(WAIT_S)
    assert result.kind == "response", result
    assert result.streamed
    assert [chunk.data for chunk in result.chunks] == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]
    times = [chunk.at for chunk in result.chunks]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap > 0.2 for gap in gaps), gaps
    assert result.stream_error_type is None
    # The runtime serves on.
    assert emulator.invoke(event(n=1), timeout=WAIT_S).chunks[0].data == b"chunk 0\n"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_async_generator_streams(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """An async generator handler streams each item as it is yielded."""
    start(runtime, isolation, handler="app.agen")
    result = emulator.invoke(event(n=2, pause=0.01), timeout=WAIT_S)
    assert [chunk.data for chunk in result.chunks] == [b"async 0\n", b"async 1\n"]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_http_prelude_reaches_the_caller_as_status_and_headers(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """HttpPrelude makes an HTTP integration response: the caller gets its status,
    headers and cookies, and the body after the 8 NUL bytes."""
    start(runtime, isolation)
    result = emulator.invoke(event(action="http"), timeout=WAIT_S)
    assert result.status == 202, result
    assert result.body == b"hello world"
    headers = {name.lower(): value for name, value in result.headers.items()}
    assert headers["content-type"] == "text/plain"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_failure_before_the_first_byte_is_an_ordinary_error(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """A handler that raises before its first yield is answered with /error."""
    start(runtime, isolation)
    result = emulator.invoke(event(action="raise-first"), timeout=WAIT_S)
    assert result.kind == "error", result
    assert not result.streamed
    assert json.loads(result.body)["errorType"] == "ValueError"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_exception_mid_stream_ends_it_with_the_trailers(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """After the first chunk, a handler exception leaves as the two trailers: the
    type as /error's header names it, and base64 of the usual error JSON; the
    runtime serves on."""
    start(runtime, isolation)
    result = emulator.invoke(event(action="raise"), timeout=WAIT_S)
    assert [chunk.data for chunk in result.chunks] == [b"first"], result
    assert result.stream_error_type == "Function.KeyError"
    body = error_body(result)
    assert body["errorType"] == "KeyError"
    assert body["errorMessage"] == "'mid-stream'"
    assert body["requestId"] == result.request_id
    assert any("raise_" in line for line in body["stackTrace"])
    trailers = {name.lower(): value for name, value in result.trailers.items()}
    assert json.loads(base64.b64decode(trailers["lambda-runtime-function-error-body"])) == body
    assert emulator.invoke(event(n=1), timeout=WAIT_S).stream_error_type is None


def worker_pid(emulator: Emulator) -> int:
    result = emulator.invoke(event(action="pid"), timeout=WAIT_S)
    return int(result.chunks[0].data)


@pytest.mark.parametrize(
    ("action", "trailer", "error_type", "words"),
    [
        ("segfault", "Runtime.ExitError", "Runtime.ExitError", "signal: segmentation fault"),
        ("exit", "Runtime.ExitError", "Runtime.ExitError", "exit status 3"),
        ("hog", "Runtime.OutOfMemory", "Runtime.OutOfMemory", "memory"),
        ("hang", "Runtime.Timedout", "Sandbox.Timedout", "Task timed out after 2.00 seconds"),
    ],
)
def test_a_worker_lost_mid_stream_ends_it_with_the_trailers_and_is_replaced(
    runtime: StartRuntime, make_emulator: MakeEmulator,
    action: str, trailer: str, error_type: str, words: str,
) -> None:
    """Supervised: after the first chunk, a segfault, os._exit, the memory cap or
    the deadline ends the stream with the trailers (the error body the
    non-streaming answer has), and the worker is replaced; the runtime serves on."""
    emu = make_emulator(timeout_s=2.0)
    proc = start(runtime, "process", emulator=emu, env={"BULKHEAD_MEMORY_LIMIT_MB": "128"})
    before = worker_pid(emu)
    result = emu.invoke(event(action=action, pause=0.2), timeout=WAIT_S)
    assert [chunk.data for chunk in result.chunks] == [b"first"], proc.describe()
    assert result.streamed
    assert result.stream_error_type == trailer
    body = error_body(result)
    assert body["errorType"] == error_type
    assert words in body["errorMessage"], body
    assert worker_pid(emu) != before


def test_the_watch_goes_on_while_the_runtime_api_holds_a_chunk_back(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """Supervised, with a Runtime API that reads slowly: the slot waits in a write
    of a chunk when the deadline comes, and still stops the worker then (the
    stream ends with the timeout in its trailers)."""
    emu = make_emulator(timeout_s=8.0)
    emu.read_streams_slowly(2 * 1024 * 1024, read_size=64 * 1024)
    # The worker is stopped 6.5 s before the deadline: the slow reader then has
    # time to take what was already written (socket buffers) before the trailers.
    proc = start(runtime, "process", emulator=emu,
                 env={"BULKHEAD_TIMEOUT_MARGIN_MS": "6500"})
    # 4 MiB chunks: each takes the slow reader about 2 s, so the kill time comes
    # while one is being written.
    result = emu.invoke(event(action="endless", size=4 * 1024 * 1024), timeout=WAIT_S)
    assert result.stream_error_type == "Runtime.Timedout", (result, proc.describe())
    assert error_body(result)["errorType"] == "Sandbox.Timedout"
    assert proc.wait_for(lambda record: record.get("type") == "bulkhead.report", WAIT_S)
    (report,) = [record for record in proc.records() if record.get("type") == "bulkhead.report"]
    # Stopped at its kill time (1.5 s), in the middle of a chunk's write.
    assert report["outcome"] == "timeout"
    assert 1400 < report["durationMs"] < 2000, report


def test_what_a_dying_worker_left_in_its_pipe_is_all_forwarded(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """Supervised: chunks the worker wrote while the slot waited for the Runtime
    API, and the answer it wrote before it exited, are all read after its death
    (the slot sees both at once): every byte arrives, and the trailers carry
    the handler's own exit."""
    emu = make_emulator(timeout_s=30.0)
    emu.read_streams_slowly(2 * 1024 * 1024, read_size=64 * 1024)
    proc = start(runtime, "process", emulator=emu)
    first = 6 * 1024 * 1024  # more than the socket buffers: the slot waits in its write
    result = emu.invoke(event(action="then_exit", first=first), timeout=WAIT_S)
    assert result.stream_bytes == first + 2000, (result.stream_error_type, proc.describe())
    assert result.stream_error_type == "Runtime.ExitError", result
    assert "exit status 3" in error_body(result)["errorMessage"]


def test_a_chunk_its_worker_did_not_finish_writing_never_leaves(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """Supervised: a worker that dies with part of a chunk on its stream pipe
    (no Chunk frame announced it) ends the stream with well-formed trailers
    after the chunks it finished, none of the partial bytes before them."""
    proc = start(runtime, "process")
    result = emulator.invoke(event(action="half_written"), timeout=WAIT_S)
    assert [chunk.data for chunk in result.chunks] == [b"first"], proc.describe()
    assert result.stream_error_type == "Runtime.ExitError"
    assert "exit status 3" in error_body(result)["errorMessage"]


def test_bytes_left_on_a_stream_pipe_get_the_worker_replaced(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """Supervised: a stream that ends with bytes on a stream pipe no Chunk frame
    announced gets its worker replaced, so that the next stream does not start
    with them."""
    proc = start(runtime, "process")
    before = worker_pid(emulator)
    result = emulator.invoke(event(action="stray"), timeout=WAIT_S)
    assert [chunk.data for chunk in result.chunks] == [b"first"], proc.describe()
    assert result.stream_error_type is None
    after = emulator.invoke(event(n=2), timeout=WAIT_S)
    assert b"".join(chunk.data for chunk in after.chunks) == b"chunk 0\nchunk 1\n"
    assert worker_pid(emulator) != before


def test_a_chunk_announced_larger_than_its_pipe_holds_is_a_violation(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """Supervised: a Chunk frame announcing more bytes than its stream pipe holds
    sends none of them (the HTTP chunk would be cut short): the worker is
    killed for a protocol violation, the stream ends with the trailers."""
    proc = start(runtime, "process")
    result = emulator.invoke(event(action="overstated"), timeout=WAIT_S)
    assert [chunk.data for chunk in result.chunks] == [b"first"], proc.describe()
    assert result.stream_error_type == "Runtime.ExitError"
    assert "worker protocol violation" in error_body(result)["errorMessage"]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_slow_runtime_api_slows_the_handlers_yield(
    runtime: StartRuntime, make_emulator: MakeEmulator, isolation: str
) -> None:
    """Back-pressure end to end: with the Runtime API reading 2 MiB/s, a handler
    yielding 12 MiB in 64 KiB chunks is held back (its yields spread over
    seconds, not the milliseconds they take alone); every byte arrives."""
    emu = make_emulator(timeout_s=30.0)
    emu.read_streams_slowly(2 * 1024 * 1024, read_size=64 * 1024)
    start(runtime, isolation, emulator=emu)
    count = 12 * 16
    result = emu.invoke(event(action="timed", size=65536, count=count), timeout=WAIT_S)
    assert result.stream_bytes == count * 65536, result.stream_error_type
    body = b"".join(chunk.data for chunk in result.chunks)
    yielded = [float(body[offset : offset + 31]) for offset in range(0, len(body), 65536)]
    # Pipes and socket buffers hold a few MiB; the rest waited for the reader.
    assert yielded[-1] - yielded[0] > 2.0, yielded[-1] - yielded[0]


def test_100_mb_stream_through_a_supervisor_whose_memory_stays_flat(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """Supervised: 100 MiB in 1 MiB yields reach the Runtime API whole, and the
    supervisor's resident memory grows by far less than the stream (the chunks'
    bytes go pipe to socket without entering it)."""
    emu = make_emulator(timeout_s=60.0)
    proc = start(runtime, "process", emulator=emu)
    supervisor = psutil.Process(proc.pid)
    worker_pid(emu)  # warm: the first invocation's allocations are not the stream's
    baseline = supervisor.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, supervisor.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = emu.submit(event(action="big", mib=100), keep_chunks=False).result(WAIT_S * 2)
    finally:
        done.set()
        sampler.join()
    assert result.stream_bytes == 100 * 1024 * 1024, result
    assert result.stream_error_type is None
    assert peak - baseline < 24 * 1024 * 1024, (baseline, peak)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_caller_that_disconnects_mid_stream_costs_nothing_else(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """A caller that goes away mid-stream: the runtime streams on to the end (the
    Runtime API drops the rest) and serves the next invocation."""
    start(runtime, isolation)
    stream = emulator.stream(event(n=4, pause=0.2))
    assert stream.next_chunk(WAIT_S) is not None
    stream.disconnect()
    result = stream.result(WAIT_S)
    assert result.caller_disconnected
    assert result.stream_error_type is None
    assert emulator.invoke(event(n=1), timeout=WAIT_S).chunks[0].data == b"chunk 0\n"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_stream_the_runtime_api_stops_taking_is_abandoned_and_the_runtime_serves_on(
    runtime: StartRuntime, make_emulator: MakeEmulator, isolation: str
) -> None:
    """A Runtime API that takes no byte of a stream for the post timeout (10 s):
    the runtime gives that one stream up (its connection reset, so the caller
    sees it cut short), stops the handler, and serves the next event, where it
    used to exit and end every other invocation with it."""
    emu = make_emulator(timeout_s=120.0)
    # 4 KiB every ~14 s: once the socket buffers are full, no byte moves for
    # longer than the post timeout.
    emu.read_streams_slowly(300, read_size=4096)
    proc = start(runtime, isolation, emulator=emu)
    stalled = emu.submit(event(action="endless", size=1 << 20))
    assert proc.wait_for(
        lambda record: record.get("message") == "response stream abandoned; serving on", 60.0
    ), proc.describe()
    emu.read_streams_slowly(None)
    after = emu.invoke(event(action="count", n=3), timeout=WAIT_S)
    assert after.stream_error_type is None, (after, proc.describe())
    assert b"".join(chunk.data for chunk in after.chunks) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert proc.process.poll() is None, proc.describe()
    if isolation == "process":
        (report,) = [
            record for record in proc.records()
            if record.get("errorType") == "Runtime.TruncatedResponse"
        ]
        assert report["type"] == "bulkhead.report", report
        assert report["workerReplaced"] is True, report
    # The emulator, reading slowly, may not have seen the reset yet; once it
    # has, the caller's stream ended cut short.
    if stalled.done():
        assert stalled.result().stream_error_type == "Runtime.TruncatedResponse"


def test_a_stream_sent_whole_whose_answer_does_not_come_is_not_abandoned(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """All of a small stream fits in the socket buffers before the reader stops:
    it is complete on the wire, so only the Runtime API's answer is missing
    after the post timeout. The runtime says so, reports the success, keeps the
    worker and serves on; the caller gets every byte once the reader resumes."""
    emu = make_emulator(timeout_s=120.0)
    emu.read_streams_slowly(1, read_size=4096)  # a read, then none for over an hour
    proc = start(runtime, "process", emulator=emu)
    emu.submit(event(action="count", n=3))
    assert proc.wait_for(
        lambda record: record.get("message")
        == "streamed answer sent whole, but not acknowledged; serving on", 60.0
    ), proc.describe()
    emu.read_streams_slowly(None)
    after = emu.invoke(event(action="count", n=1), timeout=WAIT_S)
    assert after.stream_error_type is None, (after, proc.describe())
    assert proc.wait_for(
        lambda record: record.get("type") == "bulkhead.report"
        and record.get("requestId") == after.request_id, WAIT_S
    ), proc.describe()
    records = proc.records()
    assert not [r for r in records if r.get("message") == "response stream abandoned; serving on"]
    reports = [r for r in records if r.get("type") == "bulkhead.report"]
    assert [r["outcome"] for r in reports] == ["success", "success"], proc.describe()
    assert reports[0]["workerPid"] == reports[1]["workerPid"]
