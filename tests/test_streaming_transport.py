"""A streamed answer on the wire: the request head, the chunk framing and the
trailers (pure), and both transports against the emulator."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from lambda_bulkhead import InvocationError, RuntimeApi
from lambda_bulkhead._context import FunctionMeta
from lambda_bulkhead.emulator import Emulator
from lambda_bulkhead.handler._handler import official_handler
from lambda_bulkhead.runtime_api._http import chunk_head, encode_head, last_chunk
from lambda_bulkhead.runtime_api._loop import in_process, process_invocation
from lambda_bulkhead.runtime_api._protocol import stream_request, stream_trailers

WAIT_S = 10.0


def test_the_stream_head_declares_streaming_chunks_and_the_trailers() -> None:
    """POST /response with the response mode, chunked encoding (and no
    Content-Length), the two trailers declared, and the invocation id echoed."""
    request = stream_request("r-1", "text/plain", invocation_id="inv")
    head = encode_head(request, "127.0.0.1:9001").decode()
    lines = head.split("\r\n")
    assert lines[0] == "POST /2018-06-01/runtime/invocation/r-1/response HTTP/1.1"
    assert "Lambda-Runtime-Function-Response-Mode: streaming" in lines
    assert "Transfer-Encoding: chunked" in lines
    assert (
        "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
        in lines
    )
    assert "Lambda-Runtime-Invocation-Id: inv" in lines
    assert "Content-Type: text/plain" in lines
    assert not any(line.startswith("Content-Length") for line in lines)
    assert head.endswith("\r\n\r\n")


def test_chunks_and_the_last_chunk_are_framed_as_http_1_1_says() -> None:
    """A chunk's size in hex; the last chunk is 0, the trailers, an empty line."""
    assert chunk_head(1) == b"1\r\n"
    assert chunk_head(1 << 20) == b"100000\r\n"
    assert last_chunk() == b"0\r\n\r\n"
    assert last_chunk((("A", "1"), ("B", "2"))) == b"0\r\nA: 1\r\nB: 2\r\n\r\n"


def test_the_trailers_are_the_error_header_and_base64_of_the_error_body() -> None:
    """Type as /error's header says it; body: base64 of /error's JSON body."""
    error = InvocationError("ValueError", "boom", ["  File x\n"])
    (type_name, type_value), (body_name, body_value) = stream_trailers(error, "r-1")
    assert (type_name, type_value) == ("Lambda-Runtime-Function-Error-Type", "Function.ValueError")
    assert body_name == "Lambda-Runtime-Function-Error-Body"
    assert json.loads(base64.b64decode(body_value)) == {
        "errorMessage": "boom", "errorType": "ValueError", "requestId": "r-1",
        "stackTrace": ["  File x\n"],
    }


class QuietLog:
    def debug(self, event: str, **fields: Any) -> None:
        pass

    info = warning = error = debug


@pytest.fixture(params=["socket", "httpx"])
def api(request: pytest.FixtureRequest, emulator: Emulator) -> Iterator[RuntimeApi]:
    """A RuntimeApi against the emulator with each transport."""
    environ = emulator.function_env()
    with RuntimeApi.from_env(environ, transport=request.param, log=QuietLog()) as client:
        yield client


def test_both_transports_stream_and_send_the_trailers(
    api: RuntimeApi, emulator: Emulator
) -> None:
    """The socket transport streams on its own connection; httpx, which cannot
    send trailers, streams over a socket connection of its own: both deliver the
    chunks and, after a failure, the trailers; /next goes on as before."""

    def handler(event: Any, context: Any) -> Iterator[bytes]:
        yield b"one"
        yield b"two"
        if event.get("fail"):
            raise KeyError("k")

    execute = in_process(official_handler(handler), FunctionMeta(function_name="t"))
    for fail in (False, True, False):
        future = emulator.submit(json.dumps({"fail": fail}).encode())
        process_invocation(api, execute)
        result = future.result(WAIT_S)
        assert [chunk.data for chunk in result.chunks] == [b"one", b"two"]
        assert result.stream_error_type == ("Function.KeyError" if fail else None)
