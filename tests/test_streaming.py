"""Response streaming through a real runtime, in-process and supervised, against
the emulator: chunks leave as they are yielded, failures before the first byte
are an /error and after it the trailers, back-pressure end to end."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from conftest import RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator, InvokeResult

WAIT_S = 30.0
TRAILER_TYPE = "lambda-runtime-function-error-type"

APP = r'''
import asyncio
import ctypes
import os
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


ACTIONS = {
    "count": count,
    "raise": then(raise_),
    "segfault": then(segfault),
    "exit": then(exit_),
    "hog": then(hog),
    "hang": then(hang),
    "big": big,
    "http": http,
    "pid": pid,
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
