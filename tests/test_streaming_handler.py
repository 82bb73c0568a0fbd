"""Streaming handlers, in this process: which handlers stream, what each yielded
item becomes, the HTTP prelude, and failures (no I/O)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from lambda_bulkhead import Context, HandlerCrash, Invocation, InvocationError
from lambda_bulkhead._context import FunctionMeta
from lambda_bulkhead._streaming import (
    DEFAULT_STREAM_CONTENT_TYPE,
    HTTP_INTEGRATION_CONTENT_TYPE,
    MAX_STREAM_BYTES,
    PRELUDE_DELIMITER,
)
from lambda_bulkhead.handler._handler import (
    CoroutineHandler,
    Streamed,
    execute,
    is_streaming_handler,
    official_handler,
)
from lambda_bulkhead.responses import HttpPrelude

META = FunctionMeta(function_name="f")
#: The core handlers made by a test, whose event loops it closes at teardown.
MADE: list[object] = []


@pytest.fixture(autouse=True)
def close_event_loops() -> Iterator[None]:
    """An async generator's handler makes an event loop: closed after each test."""
    yield
    asyncio.set_event_loop(None)
    while MADE:
        handler = MADE.pop()
        if isinstance(handler, CoroutineHandler) and handler.loops.loop is not None:
            handler.loops.loop.close()


def stream_of(function: Any, payload: bytes = b'{"n": 3}') -> Streamed:
    handler = official_handler(function)
    MADE.append(handler)
    answer = execute(handler, Invocation("req-1", payload), META)
    assert answer.stream is not None
    assert answer.body == b""
    return answer.stream


def test_generator_functions_stream_and_plain_ones_do_not() -> None:
    """A generator or async generator function streams (also behind functools.wraps);
    a plain or async def function does not."""

    def gen(event: Any, context: Context) -> Iterator[bytes]:
        yield b"x"

    async def agen(event: Any, context: Context) -> AsyncIterator[bytes]:
        yield b"x"

    @functools.wraps(gen)
    def decorated(event: Any, context: Context) -> Iterator[bytes]:
        return gen(event, context)

    async def coro(event: Any, context: Context) -> int:
        return 1

    assert is_streaming_handler(gen)
    assert is_streaming_handler(agen)
    assert is_streaming_handler(decorated)
    assert not is_streaming_handler(lambda event, context: 1)
    assert not is_streaming_handler(coro)
    plain = execute(official_handler(lambda event, context: 1), Invocation("r", b"{}"), META)
    assert plain.stream is None


def test_each_yielded_item_is_pulled_as_its_bytes() -> None:
    """bytes as they are, str as UTF-8, empty items skipped; the handler runs only
    while an item is pulled; the event arrives decoded."""
    ran: list[str] = []

    def handler(event: Any, context: Context) -> Iterator[Any]:
        ran.append("start")
        for index in range(event["n"]):
            yield f"é{index}"
            yield b""
        yield bytearray(b"end")
        ran.append("end")

    stream = stream_of(handler)
    assert ran == []
    assert next(stream) == "é0".encode()
    assert ran == ["start"]
    assert stream.content_type == DEFAULT_STREAM_CONTENT_TYPE
    assert list(stream) == [b"\xc3\xa91", b"\xc3\xa92", b"end"]
    assert ran == ["start", "end"]


def test_an_async_generator_streams_on_the_event_loop() -> None:
    """An async generator's items are awaited one at a time on the thread's loop."""
    async def handler(event: Any, context: Context) -> AsyncIterator[str]:
        for index in range(event["n"]):
            await asyncio.sleep(0)
            yield str(index)

    assert list(stream_of(handler)) == [b"0", b"1", b"2"]


def test_an_http_prelude_first_makes_an_http_integration_response() -> None:
    """A prelude yielded first is the body's first bytes (JSON, then 8 NUL bytes)
    and sets the content type, as Node's HttpResponseStream.from does."""

    def handler(event: Any, context: Context) -> Iterator[Any]:
        yield HttpPrelude(201, {"content-type": "text/plain"}, ["a=1"])
        yield "body"

    stream = stream_of(handler)
    first = next(stream)
    assert stream.content_type == HTTP_INTEGRATION_CONTENT_TYPE
    prelude, delimiter, rest = first.partition(PRELUDE_DELIMITER)
    assert (delimiter, rest) == (PRELUDE_DELIMITER, b"")
    assert json.loads(prelude) == {
        "statusCode": 201, "headers": {"content-type": "text/plain"}, "cookies": ["a=1"]
    }
    assert list(stream) == [b"body"]


def test_a_prelude_with_a_bad_status_is_refused() -> None:
    """An HTTP status outside 100-599 is the handler's error (ValueError)."""
    with pytest.raises(ValueError, match="HTTP status"):
        HttpPrelude(42).encode()


def test_a_handler_exception_is_its_own_error_type() -> None:
    """A failure while an item is pulled is an InvocationError named after the
    handler's exception class, as for a plain handler."""

    def handler(event: Any, context: Context) -> Iterator[bytes]:
        yield b"one"
        raise KeyError("missing")

    stream = stream_of(handler)
    assert next(stream) == b"one"
    with pytest.raises(HandlerCrash) as caught:
        next(stream)
    assert caught.value.error_type == "KeyError"


def test_an_item_that_is_not_bytes_or_str_is_a_marshal_error() -> None:
    """A yielded int (or a lone surrogate) cannot be streamed: Runtime.MarshalError."""

    def handler(event: Any, context: Context) -> Iterator[Any]:
        yield 42

    with pytest.raises(InvocationError) as caught:
        next(stream_of(handler))
    assert caught.value.error_type == "Runtime.MarshalError"

    def surrogate(event: Any, context: Context) -> Iterator[Any]:
        yield "\udc80"

    with pytest.raises(InvocationError, match="marshal"):
        next(stream_of(surrogate))


def test_a_stream_past_the_limit_is_too_large_and_closes_the_handler() -> None:
    """Past 200 MiB the stream raises Function.ResponseSizeTooLarge and the
    handler's generator is closed (its finally runs)."""
    closed: list[bool] = []
    half = b"x" * (MAX_STREAM_BYTES // 2 + 1)

    def handler(event: Any, context: Context) -> Iterator[bytes]:
        try:
            while True:
                yield half
        finally:
            closed.append(True)

    stream = stream_of(handler)
    assert next(stream) is half
    with pytest.raises(InvocationError) as caught:
        next(stream)
    assert caught.value.error_type == "Function.ResponseSizeTooLarge"
    assert closed == [True]


def test_the_official_runtime_cannot_marshal_what_streams_here() -> None:
    """Side by side: awslambdaric 4.2.2 answers a generator or async generator
    handler's result with Runtime.MarshalError (docs/api.md says so); here
    both stream."""
    from awslambdaric.lambda_runtime_exception import FaultException  # noqa: PLC0415
    from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller  # noqa: PLC0415

    def gen(event: Any, context: Context) -> Iterator[bytes]:
        yield b"x"

    async def agen(event: Any, context: Context) -> AsyncIterator[bytes]:
        yield b"x"

    for handler, name in ((gen, "generator"), (agen, "async_generator")):
        with pytest.raises(FaultException) as caught:
            LambdaMarshaller().marshal_response(handler({}, None))  # type: ignore[arg-type]
        assert caught.value.exception_type == "Runtime.MarshalError"
        assert f"Object of type {name} is not JSON serializable" in caught.value.msg
        assert list(stream_of(handler)) == [b"x"]
