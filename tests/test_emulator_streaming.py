"""The emulator's side of response streaming: real HTTP against a real emulator.

The runtime's side is a raw socket writing the chunked ``/response`` (with
trailers) byte for byte, so each test controls exactly what reaches h11.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from lambda_bulkhead.emulator import Emulator, StreamChunk
from lambda_bulkhead.emulator._streaming import PreludeError, StreamCollector

NEXT = "/2018-06-01/runtime/invocation/next"
INVOKE = "/2015-03-31/functions/function/invocations"
WAIT_S = 5.0
TRAILER = "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(timeout_s=5.0) as emulator:
        yield emulator


def next_request_id(emu: Emulator) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=WAIT_S)
    conn.request("GET", NEXT)
    response = conn.getresponse()
    response.read()
    conn.close()
    return str(response.getheader("Lambda-Runtime-Aws-Request-Id"))


class StreamingRuntime:
    """A raw socket posting one streamed /response."""

    def __init__(self, emu: Emulator, request_id: str,
                 content_type: str = "application/octet-stream") -> None:
        self.sock = socket.create_connection(("127.0.0.1", emu.port), timeout=WAIT_S)
        head = (
            f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
            f"Host: emu\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n"
            f"Transfer-Encoding: chunked\r\nTrailer: {TRAILER}\r\n"
            f"Content-Type: {content_type}\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def chunk(self, data: bytes) -> None:
        self.sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end(self, trailers: dict[str, str] | None = None) -> bytes:
        fields = "".join(f"{name}: {value}\r\n" for name, value in (trailers or {}).items())
        self.sock.sendall(f"0\r\n{fields}\r\n".encode())
        return self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


def error_trailers(error_type: str, message: str) -> dict[str, str]:
    body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return {"Lambda-Runtime-Function-Error-Type": error_type,
            "Lambda-Runtime-Function-Error-Body": base64.b64encode(body).decode()}


def test_chunks_reach_the_caller_as_they_arrive(emu: Emulator) -> None:
    """The first chunk is visible to the caller before the runtime ends its stream."""
    stream = emu.stream(b"{}")
    runtime = StreamingRuntime(emu, next_request_id(emu))
    runtime.chunk(b"first")
    first = stream.next_chunk(WAIT_S)
    assert first is not None
    assert first.data == b"first"
    runtime.chunk(b"second")
    reply = runtime.end()
    assert reply.startswith(b"HTTP/1.1 202 ")
    result = stream.result(WAIT_S)
    assert result.kind == "response"
    assert result.streamed
    assert [chunk.data for chunk in result.chunks] == [b"first", b"second"]
    assert result.chunks[0].at <= result.chunks[1].at
    assert result.body == b"firstsecond"
    assert result.stream_sha256 == hashlib.sha256(b"firstsecond").hexdigest()
    assert emu.answers[-1].streamed
    assert emu.answers[-1].status == 202
    runtime.close()


def test_error_trailers_end_the_stream_with_the_decoded_error(emu: Emulator) -> None:
    future = emu.submit(b"{}")
    runtime = StreamingRuntime(emu, next_request_id(emu))
    runtime.chunk(b"partial")
    assert runtime.end(error_trailers("ValueError", "boom")).startswith(b"HTTP/1.1 202 ")
    result = future.result(WAIT_S)
    assert result.kind == "error"
    assert result.stream_error_type == "ValueError"
    assert json.loads(result.stream_error_body or b"") == {"errorType": "ValueError",
                                                           "errorMessage": "boom"}
    assert result.trailers["Lambda-Runtime-Function-Error-Type"] == "ValueError"
    assert emu.answers[-1].error_type == "ValueError"
    runtime.close()


def test_error_and_second_response_after_the_stream_began_are_refused(emu: Emulator) -> None:
    """Exactly one answer: /error or another /response while the stream runs is 403."""
    future = emu.submit(b"{}")
    request_id = next_request_id(emu)
    runtime = StreamingRuntime(emu, request_id)
    runtime.chunk(b"x")
    other = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=WAIT_S)
    other.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/error", body=b"{}")
    assert other.getresponse().status == 403
    second = StreamingRuntime(emu, request_id)
    assert second.sock.recv(65536).startswith(b"HTTP/1.1 403 ")
    assert runtime.end().startswith(b"HTTP/1.1 202 ")
    assert future.result(WAIT_S).kind == "response"
    for connection in (other, second, runtime):
        connection.close()


def test_counting_mode_keeps_no_chunks(emu: Emulator) -> None:
    future = emu.submit(b"{}", keep_chunks=False)
    runtime = StreamingRuntime(emu, next_request_id(emu))
    payload = b"z" * 100_000
    for _ in range(10):
        runtime.chunk(payload)
    runtime.end()
    result = future.result(WAIT_S)
    assert result.chunks == ()
    assert result.body == b""
    assert result.chunk_count == 10
    assert result.stream_bytes == 1_000_000
    assert result.stream_sha256 == hashlib.sha256(payload * 10).hexdigest()
    runtime.close()


def read_chunked_answer(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n\r\n") or b"\r\n0\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data


def test_invoke_endpoint_streams_an_http_integration_response(emu: Emulator) -> None:
    """Status, headers and cookies from the prelude; the body chunk by chunk; then trailers."""
    caller = socket.create_connection(("127.0.0.1", emu.port), timeout=WAIT_S)
    caller.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: emu\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    runtime = StreamingRuntime(emu, next_request_id(emu),
                               "application/vnd.awslambda.http-integration-response")
    prelude = json.dumps({"statusCode": 201, "headers": {"X-Custom": "yes"},
                          "cookies": ["a=1"]}).encode()
    runtime.chunk(prelude + b"\0" * 8 + b"hello ")
    head = caller.recv(65536)
    assert head.startswith(b"HTTP/1.1 201 ")
    assert b"x-custom: yes" in head.lower()
    assert b"set-cookie: a=1" in head.lower()
    assert b"transfer-encoding: chunked" in head.lower()
    runtime.chunk(b"world")
    runtime.end(error_trailers("Runtime.ExitError", "worker died"))
    rest = read_chunked_answer(caller)
    body = head + rest
    assert b"hello " in body
    assert b"world" in body
    assert b"lambda-runtime-function-error-type: runtime.exiterror" in body.lower()
    caller.close()
    runtime.close()


def test_a_caller_that_disconnects_mid_stream_does_not_break_the_runtime(emu: Emulator) -> None:
    stream = emu.stream(b"{}")
    runtime = StreamingRuntime(emu, next_request_id(emu))
    runtime.chunk(b"one")
    assert stream.next_chunk(WAIT_S) is not None
    stream.disconnect()
    runtime.chunk(b"two")
    assert runtime.end().startswith(b"HTTP/1.1 202 ")
    result = stream.result(WAIT_S)
    assert result.caller_disconnected
    runtime.close()


def test_slow_reader_holds_back_the_runtime(emu: Emulator) -> None:
    """With slow reading, 32 MiB cannot be written in half a second (kernel buffers hold
    a few MiB; the rest would take minutes at 32 KiB/s)."""
    emu.read_streams_slowly(32 * 1024, read_size=4096)
    emu.submit(b"{}", keep_chunks=False)
    runtime = StreamingRuntime(emu, next_request_id(emu))
    done = threading.Event()

    def write() -> None:
        try:
            runtime.chunk(b"s" * (32 * 1024 * 1024))
        except OSError:
            return
        done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(0.5)
    assert not done.is_set()
    runtime.sock.shutdown(socket.SHUT_RDWR)
    runtime.close()
    writer.join(WAIT_S)


def test_runtime_connection_lost_mid_stream_ends_it_with_an_error(emu: Emulator) -> None:
    future = emu.submit(b"{}")
    runtime = StreamingRuntime(emu, next_request_id(emu))
    runtime.chunk(b"half")
    runtime.close()
    result = future.result(WAIT_S)
    assert result.kind == "error"
    assert result.stream_error_type == "Runtime.TruncatedResponse"


def test_on_chunk_sees_each_chunk(emu: Emulator) -> None:
    seen: list[StreamChunk] = []
    future = emu.submit(b"{}", on_chunk=seen.append)
    runtime = StreamingRuntime(emu, next_request_id(emu))
    runtime.chunk(b"a")
    runtime.chunk(b"b")
    runtime.end()
    future.result(WAIT_S)
    assert [chunk.data for chunk in seen] == [b"a", b"b"]
    runtime.close()


def test_collector_limit_and_bad_prelude() -> None:
    """The sans-IO core: a stream over the limit is flagged; a prelude must be JSON."""
    collector = StreamCollector(content_type="text/plain", keep_chunks=False, on_chunk=None,
                                limit=10)
    collector.feed(b"x" * 11, True, 0.0)
    assert collector.over_limit
    http = StreamCollector(content_type="application/vnd.awslambda.http-integration-response",
                           keep_chunks=True, on_chunk=None)
    with pytest.raises(PreludeError):
        http.feed(b"{not json" + b"\0" * 8, True, 0.0)


def test_a_stream_over_the_limit_is_cut_with_an_error(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the limit (200 MiB; 1000 bytes here): 413 to the runtime, error trailers to
    the caller."""
    monkeypatch.setattr("lambda_bulkhead.emulator._runtime_api.MAX_STREAM_BYTES", 1000)
    future = emu.submit(b"{}")
    runtime = StreamingRuntime(emu, next_request_id(emu))
    runtime.chunk(b"a" * 600)
    runtime.chunk(b"b" * 600)
    assert runtime.sock.recv(65536).startswith(b"HTTP/1.1 413 ")
    result = future.result(WAIT_S)
    assert result.kind == "error"
    assert result.stream_error_type == "Function.ResponseSizeTooLarge"
    runtime.close()


def test_on_body_gets_the_callers_bytes_after_the_prelude(emu: Emulator) -> None:
    pieces: list[bytes] = []
    future = emu.submit(b"{}", on_body=pieces.append)
    runtime = StreamingRuntime(emu, next_request_id(emu),
                               "application/vnd.awslambda.http-integration-response")
    runtime.chunk(b'{"statusCode": 404}' + b"\0" * 8 + b"gone")
    runtime.end()
    result = future.result(WAIT_S)
    assert b"".join(pieces) == b"gone"
    assert result.status == 404
    assert result.body == b"gone"
    runtime.close()


@pytest.mark.parametrize("chunks", [0, 1])
def test_a_timeout_mid_stream_ends_it_with_sandbox_timedout(chunks: int) -> None:
    """Before or after the first chunk, the timeout ends the stream with its error."""
    with Emulator(timeout_s=0.3) as emu:
        future = emu.submit(b"{}")
        runtime = StreamingRuntime(emu, next_request_id(emu))
        for _ in range(chunks):
            runtime.chunk(b"early")
        result = future.result(WAIT_S)
        assert result.kind == "timeout"
        assert result.stream_error_type == "Sandbox.Timedout"
        assert runtime.end().startswith(b"HTTP/1.1 410 ")
        runtime.close()


def test_counting_mode_streams_100_mib_in_bounded_memory(emu: Emulator) -> None:
    """100 MiB through the counting mode: the emulator's peak allocation stays small."""
    chunk = b"m" * (1024 * 1024)
    future = emu.submit(b"{}", keep_chunks=False)
    runtime = StreamingRuntime(emu, next_request_id(emu))
    tracemalloc.start()
    try:
        for _ in range(100):
            runtime.chunk(chunk)
        assert runtime.end().startswith(b"HTTP/1.1 202 ")
        result = future.result(WAIT_S)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.stream_bytes == 100 * len(chunk)
    assert result.chunk_count == 100
    assert peak < 16 * 1024 * 1024, peak
    runtime.close()
