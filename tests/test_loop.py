"""The invocation loop: ``process_invocation`` and ``serve`` in this process
against the emulator, and ``start``/``start_json`` (which never return) in
subprocess scripts against it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import RuntimeProcess

from lambda_bulkhead import (
    Answer,
    InvalidEndpoint,
    Invocation,
    NotRunningInLambda,
    RuntimeApi,
    UnexpectedStatus,
    process_invocation,
    serve,
    start,
    start_json,
)
from lambda_bulkhead._context import FunctionMeta
from lambda_bulkhead.emulator import Emulator, NextReset, NextStatus
from lambda_bulkhead.handler._handler import official_handler
from lambda_bulkhead.runtime_api._loop import Executor, in_process
from lambda_bulkhead.runtime_api._stream import ResponseStream

WAIT_S = 10.0


class QuietLog:
    """A RuntimeLog that keeps records instead of printing them."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def debug(self, event: str, **fields: Any) -> None:
        self.records.append((event, fields))

    info = warning = error = debug


@pytest.fixture
def api(emulator: Emulator) -> Iterator[RuntimeApi]:
    """A RuntimeApi against the emulator (socket transport)."""
    with RuntimeApi.from_env(emulator.function_env(), log=QuietLog()) as client:
        yield client


def executor(function: Callable[[Any, Any], Any]) -> Executor:
    return in_process(official_handler(function), FunctionMeta(function_name="loop-test"))


def test_process_invocation_answers_one_event(api: RuntimeApi, emulator: Emulator) -> None:
    """One turn: poll, run the handler with event and context, post the response."""
    future = emulator.submit(b'{"n": 20}')
    process_invocation(api, executor(lambda event, context: {
        "n": event["n"] + 1, "fn": context.function_name, "id": context.aws_request_id,
    }))
    result = future.result(WAIT_S)
    assert result.kind == "response"
    assert json.loads(result.body) == {"n": 21, "fn": "loop-test", "id": result.request_id}
    (answer,) = emulator.answers
    assert answer.invocation_id == answer.expected_invocation_id is not None


def test_a_turn_given_ready_sends_the_answer_with_the_next_poll(
    api: RuntimeApi, emulator: Emulator
) -> None:
    """The turn serve runs: with ``ready``, the response and the next poll go out
    together and the next invocation is handed back; given that invocation, the
    next turn runs it without polling again."""
    first, second = emulator.submit(b'{"n": 1}'), emulator.submit(b'{"n": 2}')
    echo = executor(lambda event, context: event["n"])
    nxt = process_invocation(api, echo, ready=lambda: True)
    assert first.result(WAIT_S).body == b"1"
    assert nxt is not None
    assert nxt.payload == b'{"n": 2}'
    third = emulator.submit(b'{"n": 3}')
    assert process_invocation(api, echo, invocation=nxt) is None
    assert second.result(WAIT_S).body == b"2"
    assert len(emulator.deliveries) == 2
    assert not third.done()


def handler_that_fails(event: Any, context: Any) -> None:
    try:
        int("x")
    except ValueError as exc:
        raise RuntimeError("could not parse") from exc


def test_process_invocation_posts_handler_failures(api: RuntimeApi, emulator: Emulator) -> None:
    """A raising handler: /error with the header, official key order, causes, clean stack."""
    future = emulator.submit(b"{}")
    process_invocation(api, executor(handler_that_fails))
    result = future.result(WAIT_S)
    assert result.kind == "error"
    (answer,) = emulator.answers
    assert answer.error_type == "Function.RuntimeError"
    assert answer.invocation_id == answer.expected_invocation_id
    body = json.loads(answer.body)
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace", "causes"]
    assert (body["errorType"], body["errorMessage"], body["requestId"]) == (
        "RuntimeError", "could not parse", result.request_id
    )
    assert body["stackTrace"][0].startswith(f'  File "{__file__}"')
    assert not any("lambda_bulkhead" in line for line in body["stackTrace"])
    assert [c["errorType"] for c in body["causes"]] == ["ValueError"]


@pytest.mark.parametrize(
    ("exc", "reason"),
    [(SystemExit(3), "exit status 3"), (SystemExit(None), "exit status 0"),
     (SystemExit("bye"), "exit status 1"), (KeyboardInterrupt(), "KeyboardInterrupt")],
)
def test_handler_asking_to_exit_is_answered_then_reraised(
    api: RuntimeApi, emulator: Emulator, exc: BaseException, reason: str
) -> None:
    """SystemExit/KeyboardInterrupt: the invocation gets Runtime.ExitError, then it propagates."""

    def handler(event: Any, context: Any) -> None:
        raise exc

    future = emulator.submit(b"{}")
    with pytest.raises(type(exc)):
        process_invocation(api, executor(handler))
    result = future.result(WAIT_S)
    body = json.loads(result.body)
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"] == (
        f"RequestId: {result.request_id} Error: Runtime exited with error: {reason}"
    )
    assert emulator.answers[0].error_type == "Runtime.ExitError"


def test_an_executor_failing_with_an_event_in_hand_answers_it_first(
    api: RuntimeApi, emulator: Emulator
) -> None:
    """An executor that fails for a reason of its own (the supervisor can no longer
    get a worker) posts Runtime.ExitError for the event in hand, then raises."""
    future = emulator.submit(b"{}")

    def no_worker(invocation: Invocation, stream: ResponseStream) -> Answer:
        raise RuntimeError("no worker to be had")

    with pytest.raises(RuntimeError, match="no worker"):
        process_invocation(api, no_worker)
    result = future.result(WAIT_S)
    assert result.kind == "error"
    assert json.loads(result.body)["errorType"] == "Runtime.ExitError"
    assert "RuntimeError" in json.loads(result.body)["errorMessage"]


def test_broken_event_is_answered_not_lost(api: RuntimeApi, emulator: Emulator) -> None:
    """An event cut off after its headers is answered Runtime.UnmarshalError; the loop goes on."""
    emulator.inject(NextReset(during="body"))
    future = emulator.submit(b'{"big": "' + b"x" * 1000 + b'"}')
    called: list[Any] = []
    process_invocation(api, executor(lambda event, context: called.append(event)))
    result = future.result(WAIT_S)
    assert result.kind == "error"
    assert json.loads(result.body)["errorType"] == "Runtime.UnmarshalError"
    assert emulator.answers[0].error_type == "Runtime.UnmarshalError"
    assert called == []


def test_serve_runs_until_the_runtime_api_fails(api: RuntimeApi, emulator: Emulator) -> None:
    """serve answers event after event, calling prepare before each poll, until a 500."""
    prepared: list[float] = []
    futures = [emulator.submit(json.dumps({"i": i}).encode()) for i in range(3)]

    def prepare() -> None:
        prepared.append(time.monotonic())
        if len(prepared) == 4:
            emulator.inject(NextStatus(status=500))

    with pytest.raises(UnexpectedStatus) as caught:
        serve(api, executor(lambda event, context: event["i"] * 10), prepare=prepare)
    assert caught.value.call == "next"
    assert [f.result(WAIT_S).body for f in futures] == [b"0", b"10", b"20"]
    assert len(prepared) == 4


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "one-by-one"])
def test_serve_calls_before_wait_when_no_event_is_in_hand(
    api: RuntimeApi, emulator: Emulator, pipelined: bool
) -> None:
    """before_wait runs once an answer (response or error) is on its way to the
    Runtime API, before the loop waits for an event: here each call submits
    the next event, so it runs once per invocation, after its handler."""
    futures = [emulator.submit(b'{"i": 0}')]
    seen_at_wait: list[int] = []
    handled: list[int] = []

    def before_wait() -> None:
        seen_at_wait.append(len(handled))
        if len(futures) == 3:
            emulator.inject(NextStatus(status=500))
        else:
            futures.append(emulator.submit(json.dumps({"i": len(futures)}).encode()))

    def handler(event: Any, context: Any) -> Any:
        handled.append(event["i"])
        if event["i"] == 1:
            raise ValueError("odd one")
        return event["i"]

    with pytest.raises(UnexpectedStatus):
        serve(api, executor(handler), ready=lambda: pipelined, before_wait=before_wait)
    assert [f.result(WAIT_S).kind for f in futures] == ["response", "error", "response"]
    assert seen_at_wait == [1, 2, 3]


def test_start_without_runtime_api_raises_at_once() -> None:
    """start outside Lambda raises NotRunningInLambda instead of blocking."""
    with pytest.raises(NotRunningInLambda):
        start(lambda payload, context: payload, environ={})


def test_start_json_with_a_bad_endpoint_raises_at_once() -> None:
    """start_json with a malformed AWS_LAMBDA_RUNTIME_API raises InvalidEndpoint."""
    with pytest.raises(InvalidEndpoint):
        start_json(dict, lambda e, c: e, dict, environ={"AWS_LAMBDA_RUNTIME_API": "nowhere"})


# -- start / start_json in a real process --------------------------------------------------


def test_start_serves_a_raw_handler(script: Callable[[str], RuntimeProcess]) -> None:
    """start(): bytes in, bytes out, posted as application/unknown; failures don't stop it."""
    proc = script("""
        from lambda_bulkhead import start

        def handler(payload, context):
            if payload == b"boom":
                raise ValueError("no boom please")
            return payload[::-1] + context.aws_request_id.encode()

        start(handler)
    """)
    first = proc.invoke(b"\x00abc", content_type="application/octet-stream")
    assert first.kind == "response", proc.describe()
    assert first.body == b"cba\x00" + first.request_id.encode()
    assert first.headers["Content-Type"] == "application/unknown"
    failed = proc.invoke(b"boom", content_type="application/octet-stream")
    assert failed.kind == "error"
    assert json.loads(failed.body)["errorType"] == "ValueError"
    again = proc.invoke(b"z", content_type="application/octet-stream")
    assert again.body.startswith(b"z")
    assert proc.poll() is None


def test_start_json_rejected_event_is_invalid_event(
    script: Callable[[str], RuntimeProcess], emulator: Emulator
) -> None:
    """start_json(): a payload the decoder rejects is Runtime.InvalidEvent; handler not called."""
    proc = script("""
        from lambda_bulkhead import start_json

        calls = []

        def decode(data):
            if not isinstance(data, dict) or not isinstance(data.get("name"), str):
                raise ValueError("field name: expected a string")
            return data["name"]

        def handler(name, context):
            calls.append(name)
            return {"greeting": "hello " + name, "calls": len(calls)}

        start_json(decode, handler, lambda result: result)
    """)
    rejected = proc.invoke(b'{"name": 42}')
    assert rejected.kind == "error", proc.describe()
    body = json.loads(rejected.body)
    assert body["errorType"] == "Runtime.InvalidEvent"
    assert "field name: expected a string" in body["errorMessage"]
    assert emulator.answers[-1].error_type == "Runtime.InvalidEvent"
    accepted = proc.invoke(b'{"name": "Ada"}')
    assert json.loads(accepted.body) == {"greeting": "hello Ada", "calls": 1}


def test_start_surfaces_a_fatal_error_by_raising(
    script: Callable[[str], RuntimeProcess], emulator: Emulator
) -> None:
    """A fatal Runtime API error leaves start() as an exception: uncaught, the process exits 1."""
    emulator.inject(NextStatus(status=500))
    proc = script("""
        from lambda_bulkhead import RuntimeApiError, start

        try:
            start(lambda payload, context: payload)
        except RuntimeApiError as exc:
            print(f"caught {type(exc).__name__}: {exc}")
            raise
    """)
    assert proc.wait(WAIT_S) == 1
    assert "caught UnexpectedStatus: Runtime API next: unexpected status 500" in proc.stdout
    assert "lambda_bulkhead._errors.UnexpectedStatus" in proc.stderr
