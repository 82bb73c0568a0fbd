"""``RuntimeApi`` in the test process against the emulator, over real loopback
sockets, with both transports: every call and header, the invocation id echo,
and the rules for 410/413/400/403/500 answers and transport failures."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import httpx
import pytest
from conftest import MakeEmulator

from lambda_bulkhead import (
    BrokenEvent,
    ConfigError,
    InitError,
    InvalidEndpoint,
    Invocation,
    InvocationError,
    MissingRequestId,
    NotRunningInLambda,
    RuntimeApi,
    TransportError,
    UnexpectedStatus,
)
from lambda_bulkhead.emulator import (
    Emulator,
    InvokeResult,
    NextDelivery,
    NextHeaders,
    NextReset,
    NextShortBody,
    NextStatus,
    PostHang,
    PostReset,
    PostStatus,
)
from lambda_bulkhead.runtime_api._http import SocketTransport
from lambda_bulkhead.runtime_api._httpx import HttpxTransport
from lambda_bulkhead.runtime_api._protocol import MAX_RESPONSE_BYTES, PostOutcome
from lambda_bulkhead.runtime_api._transport import Transport
from lambda_bulkhead.wire._pipes import enlarge_pipe, pipe_holds

WAIT_S = 10.0
ERROR_CONTENT_TYPE = "application/vnd.aws.lambda.error+json"


class RecordingLog:
    """A RuntimeLog that keeps what was logged (the runtime takes any RuntimeLog)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self.records.append((level, event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._record("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, fields)

    def warnings(self) -> list[tuple[str, dict[str, Any]]]:
        return [(event, fields) for level, event, fields in self.records if level == "warning"]


@pytest.fixture(params=["socket", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each test runs with both transports."""
    return str(request.param)


@pytest.fixture
def log() -> RecordingLog:
    """The log the client under test writes to."""
    return RecordingLog()


@pytest.fixture
def api(emulator: Emulator, transport: str, log: RecordingLog) -> Iterator[RuntimeApi]:
    """A RuntimeApi built from the emulator's environment."""
    with RuntimeApi.from_env(emulator.function_env(), transport=transport, log=log) as client:
        yield client


def by_hand(
    emulator: Emulator, transport: str, log: RecordingLog, *, post_timeout: float
) -> RuntimeApi:
    """A RuntimeApi built around a transport, with its own post timeout."""
    chosen: Transport = (
        SocketTransport("127.0.0.1", emulator.port)
        if transport == "socket"
        else HttpxTransport("127.0.0.1", emulator.port)
    )
    return RuntimeApi(chosen, post_timeout=post_timeout, log=log)


def take(api: RuntimeApi, emulator: Emulator, payload: bytes = b'{"n": 1}', **kwargs: Any
         ) -> tuple[Invocation, Future[InvokeResult]]:
    """Submit an invoke and take it with ``api.next()``."""
    future = emulator.submit(payload, **kwargs)
    return api.next(), future


def sent_header(delivery: NextDelivery, name: str) -> str | None:
    """A header of a /next answer as the emulator sent it."""
    return next((v for k, v in delivery.headers if k.lower() == name.lower()), None)


# -- /next ------------------------------------------------------------------------


def test_next_delivers_the_event_and_every_header(api: RuntimeApi, emulator: Emulator) -> None:
    """Every /next header the emulator sends reaches the Invocation."""
    before_ms = time.time() * 1000
    invocation, future = take(
        api, emulator, b'{"hello": "world"}',
        client_context={"custom": {"k": "v"}}, cognito_identity={"cognitoIdentityId": "c-1"},
        trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", tenant_id="t-42",
    )
    delivery = emulator.deliveries[-1]
    assert invocation.request_id == delivery.request_id
    assert invocation.payload == b'{"hello": "world"}'
    assert invocation.content_type == "application/json"
    assert before_ms + 2000 < invocation.deadline_ms < time.time() * 1000 + 3000 + 1
    assert invocation.invoked_function_arn == emulator.function_arn
    assert invocation.trace_id == "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    assert json.loads(invocation.client_context or "") == {"custom": {"k": "v"}}
    assert json.loads(invocation.cognito_identity or "") == {"cognitoIdentityId": "c-1"}
    assert invocation.tenant_id == "t-42"
    assert invocation.invocation_id == sent_header(delivery, "Lambda-Runtime-Invocation-Id")
    api.send_response(invocation.request_id, b"{}", invocation_id=invocation.invocation_id)
    assert future.result(WAIT_S).request_id == invocation.request_id


def test_next_long_polls_without_a_timeout(
    emulator: Emulator, transport: str, log: RecordingLog
) -> None:
    """/next waits for an event far longer than the post timeout, also on a
    connection that has just carried a post (pipelined with the poll or not)."""
    # posts would give up after 0.1 s; /next must not
    with by_hand(emulator, transport, log, post_timeout=0.1) as fast:
        emulator.submit(b"{}")
        first = fast.next()
        got: list[Invocation] = []
        poller = threading.Thread(target=lambda: got.append(
            fast.send_response_then_next(first.request_id, b"0",
                                         invocation_id=first.invocation_id)
        ))
        poller.start()
        assert emulator.wait_for_next_poll(timeout=WAIT_S)
        time.sleep(0.5)
        assert not got
        future = emulator.submit(b"{}")
        poller.join(WAIT_S)
        assert got
        fast.send_response(got[0].request_id, b"1", invocation_id=got[0].invocation_id)
        result = future.result(WAIT_S)
        assert (result.request_id, result.body) == (got[0].request_id, b"1")
    assert log.records == []  # the same poll waited: nothing failed, nothing was retried


def test_non_json_content_type_is_passed_through(api: RuntimeApi, emulator: Emulator) -> None:
    """The event's content type reaches the Invocation as sent."""
    invocation, _ = take(api, emulator, b"\x00\xffraw", content_type="application/octet-stream")
    assert invocation.content_type == "application/octet-stream"
    assert invocation.payload == b"\x00\xffraw"


@pytest.mark.parametrize("value", [None, ""], ids=["missing", "empty"])
def test_next_without_request_id_raises(
    api: RuntimeApi, emulator: Emulator, value: str | None
) -> None:
    """An event without a request id cannot be answered: MissingRequestId."""
    emulator.inject(NextHeaders(headers={"Lambda-Runtime-Aws-Request-Id": value}))
    emulator.submit(b"{}")
    with pytest.raises(MissingRequestId):
        api.next()


def test_next_non_numeric_deadline_is_zero(api: RuntimeApi, emulator: Emulator) -> None:
    """A deadline header that is not a number means no deadline (0)."""
    emulator.inject(NextHeaders(headers={"Lambda-Runtime-Deadline-Ms": "soon"}))
    invocation, _ = take(api, emulator)
    assert invocation.deadline_ms == 0


def test_next_500_is_fatal_at_once(api: RuntimeApi, emulator: Emulator) -> None:
    """A 500 from /next raises UnexpectedStatus naming the call, without a retry."""
    emulator.inject(NextStatus(status=500), times=2)
    with pytest.raises(UnexpectedStatus) as caught:
        api.next()
    assert (caught.value.call, caught.value.status) == ("next", 500)
    assert len(emulator.deliveries) == 1


@pytest.mark.parametrize("fault", [NextReset(during="body"), NextShortBody()],
                         ids=["reset-mid-body", "short-body"])
def test_next_event_cut_after_its_headers_is_a_broken_event(
    api: RuntimeApi, emulator: Emulator, fault: Any
) -> None:
    """A body lost after the headers named the invocation raises BrokenEvent for it."""
    emulator.inject(fault)
    emulator.submit(b'{"some": "event body long enough to be cut in half"}')
    with pytest.raises(BrokenEvent) as caught:
        api.next()
    delivery = emulator.deliveries[-1]
    assert caught.value.request_id == delivery.request_id
    assert caught.value.invocation_id == sent_header(delivery, "Lambda-Runtime-Invocation-Id")
    assert caught.value.error_type == "Runtime.UnmarshalError"


# -- /response -----------------------------------------------------------------------


def test_send_response_posts_body_content_type_and_echo(
    api: RuntimeApi, emulator: Emulator
) -> None:
    """/response carries the body, its content type and the invocation id echo."""
    invocation, future = take(api, emulator)
    outcome = api.send_response(
        invocation.request_id, b"\x01bytes", invocation_id=invocation.invocation_id,
        content_type="application/unknown",
    )
    assert outcome is PostOutcome.ACCEPTED
    (answer,) = emulator.answers
    assert (answer.call, answer.status, answer.body) == ("response", 202, b"\x01bytes")
    assert answer.request_id == invocation.request_id
    assert answer.headers["content-type"] == "application/unknown"
    assert answer.invocation_id == answer.expected_invocation_id == invocation.invocation_id
    result = future.result(WAIT_S)
    assert (result.kind, result.body) == ("response", b"\x01bytes")
    assert result.invocation_id == invocation.invocation_id


def test_send_response_without_invocation_id_sends_none(
    api: RuntimeApi, emulator: Emulator
) -> None:
    """Without an invocation id to echo, the header is absent (not empty)."""
    invocation, _ = take(api, emulator)
    api.send_response(invocation.request_id, b"{}")
    (answer,) = emulator.answers
    assert answer.invocation_id is None
    assert "lambda-runtime-invocation-id" not in answer.headers


def test_send_response_twice_is_refused_and_survived(
    api: RuntimeApi, emulator: Emulator, log: RecordingLog
) -> None:
    """A second answer meets 403: REFUSED, logged, the first answer stands."""
    invocation, future = take(api, emulator)
    assert api.send_response(invocation.request_id, b"1") is PostOutcome.ACCEPTED
    assert api.send_response(invocation.request_id, b"2") is PostOutcome.REFUSED
    assert api.send_error(invocation.request_id, InvocationError("E", "m")) is PostOutcome.REFUSED
    assert [a.status for a in emulator.answers] == [202, 403, 403]
    assert future.result(WAIT_S).body == b"1"
    assert [event for event, _ in log.warnings()] == ["answer refused by the Runtime API"] * 2
    # still usable
    again, future2 = take(api, emulator)
    api.send_response(again.request_id, b"3")
    assert future2.result(WAIT_S).body == b"3"


def test_unknown_request_id_is_refused_and_survived(
    api: RuntimeApi, emulator: Emulator, log: RecordingLog
) -> None:
    """A request id /next never gave out meets 400: REFUSED and logged."""
    assert api.send_response("not-a-request-id", b"{}") is PostOutcome.REFUSED
    assert emulator.answers[0].status == 400
    assert log.warnings()[0][1]["requestId"] == "not-a-request-id"


@pytest.mark.parametrize("status", [400, 403])
def test_injected_refusals_are_survived(
    api: RuntimeApi, emulator: Emulator, log: RecordingLog, status: int
) -> None:
    """400 and 403 answers to a post are REFUSED, logged, never raised."""
    emulator.inject(PostStatus(status=status))
    invocation, _ = take(api, emulator)
    assert api.send_response(invocation.request_id, b"{}") is PostOutcome.REFUSED
    assert log.warnings()[0][1]["call"] == "response"


def test_late_answer_410_is_logged_and_survived(
    make_emulator: MakeEmulator, transport: str, log: RecordingLog
) -> None:
    """An answer after the invocation timed out meets 410: LATE, logged, loop goes on."""
    emu = make_emulator(timeout_s=0.3)
    with RuntimeApi.from_env(emu.function_env(), transport=transport, log=log) as api:
        invocation, future = take(api, emu)
        assert future.result(WAIT_S).kind == "timeout"
        assert api.send_response(invocation.request_id, b"{}") is PostOutcome.LATE
        assert api.send_error(invocation.request_id, InvocationError("E", "m")) is PostOutcome.LATE
        assert [a.status for a in emu.answers] == [410, 410]
        assert log.warnings()[0] == (
            "answer refused: invocation already timed out",
            {"call": "response", "requestId": invocation.request_id, "status": 410},
        )
        again, future2 = take(api, emu)
        api.send_response(again.request_id, b"ok")
        assert future2.result(WAIT_S).body == b"ok"


def test_413_on_response_becomes_an_error_with_the_size(
    api: RuntimeApi, emulator: Emulator
) -> None:
    """A 413 to /response is reported to /error as Function.ResponseSizeTooLarge."""
    emulator.inject(PostStatus(status=413, body=None, call="response"))
    invocation, future = take(api, emulator)
    outcome = api.send_response(
        invocation.request_id, b"x" * 1234, invocation_id=invocation.invocation_id
    )
    assert outcome is PostOutcome.TOO_LARGE
    first, second = emulator.answers
    assert (first.call, first.status) == ("response", 413)
    assert (second.call, second.status) == ("error", 202)
    assert second.error_type == "Function.ResponseSizeTooLarge"
    assert second.invocation_id == invocation.invocation_id
    body = json.loads(second.body)
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert "(1234 bytes)" in body["errorMessage"]
    assert future.result(WAIT_S).kind == "error"


def test_oversized_response_is_checked_before_posting(
    api: RuntimeApi, emulator: Emulator
) -> None:
    """A body over 6 MB is never sent: /error names its size instead."""
    invocation, future = take(api, emulator)
    size = MAX_RESPONSE_BYTES + 1
    assert api.send_response(invocation.request_id, b"x" * size) is PostOutcome.TOO_LARGE
    (answer,) = emulator.answers
    assert (answer.call, answer.status) == ("error", 202)
    assert f"({size} bytes)" in json.loads(answer.body)["errorMessage"]
    assert future.result(WAIT_S).kind == "error"


def test_response_of_exactly_the_limit_is_posted(api: RuntimeApi, emulator: Emulator) -> None:
    """A body of exactly MAX_RESPONSE_BYTES is a normal /response."""
    invocation, future = take(api, emulator)
    body = b"y" * MAX_RESPONSE_BYTES
    assert api.send_response(invocation.request_id, body) is PostOutcome.ACCEPTED
    assert len(future.result(WAIT_S).body) == MAX_RESPONSE_BYTES


@pytest.mark.parametrize("call", ["response", "error"])
def test_500_on_a_post_is_fatal(api: RuntimeApi, emulator: Emulator, call: str) -> None:
    """A 500 to /response or /error raises UnexpectedStatus naming the call."""
    emulator.inject(PostStatus(status=500, call="any"))
    invocation, _ = take(api, emulator)
    def post() -> None:
        if call == "response":
            api.send_response(invocation.request_id, b"{}")
        else:
            api.send_error(invocation.request_id, InvocationError("E", "m"))

    with pytest.raises(UnexpectedStatus) as caught:
        post()
    assert (caught.value.call, caught.value.status) == (call, 500)
    assert f"Runtime API {call}: unexpected status 500" in str(caught.value)


# -- /error -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "header"),
    [
        ("ValueError", "Function.ValueError"),
        ("Runtime.MarshalError", "Runtime.MarshalError"),
        ("Runtime.ExitError", "Runtime.ExitError"),
        ("Sandbox.Timedout", "Runtime.Timedout"),
        ("not a class name", "Function.Unhandled"),
    ],
)
def test_send_error_posts_the_error_type_header(
    api: RuntimeApi, emulator: Emulator, error_type: str, header: str
) -> None:
    """/error carries Lambda-Runtime-Function-Error-Type, the echo and the JSON body."""
    invocation, future = take(api, emulator)
    error = InvocationError(error_type, "it failed", ['  File "app.py", line 3, in h\n'])
    outcome = api.send_error(invocation.request_id, error, invocation_id=invocation.invocation_id)
    assert outcome is PostOutcome.ACCEPTED
    (answer,) = emulator.answers
    assert (answer.call, answer.status, answer.error_type) == ("error", 202, header)
    assert answer.headers["content-type"] == ERROR_CONTENT_TYPE
    assert answer.invocation_id == invocation.invocation_id
    assert json.loads(answer.body) == {
        "errorMessage": "it failed", "errorType": error_type,
        "requestId": invocation.request_id, "stackTrace": ['  File "app.py", line 3, in h\n'],
    }
    result = future.result(WAIT_S)
    assert result.kind == "error"
    assert result.headers["X-Amz-Function-Error"] == "Unhandled"


def test_send_init_error_posts_the_header_and_body(api: RuntimeApi, emulator: Emulator) -> None:
    """/init/error carries the error-type header; every invoke then gets the init error."""
    api.send_init_error(InitError("Runtime.ImportModuleError", "Unable to import module 'x'"))
    (report,) = emulator.init_errors
    assert report.status == 202
    assert report.error_type == "Runtime.ImportModuleError"
    assert report.headers["content-type"] == ERROR_CONTENT_TYPE
    assert json.loads(report.body) == {
        "errorMessage": "Unable to import module 'x'", "errorType": "Runtime.ImportModuleError",
        "requestId": "", "stackTrace": [],
    }
    result = emulator.invoke(b"{}", timeout=WAIT_S)
    assert (result.kind, result.status) == ("init_error", 502)


# -- transport failures ---------------------------------------------------------------------


def test_connection_refused_is_a_transport_error(transport: str, log: RecordingLog) -> None:
    """Nothing listening: /next is polled again a few times, then TransportError."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    env = {"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"}
    with RuntimeApi.from_env(env, transport=transport, log=log) as api, \
            pytest.raises(TransportError):
        api.next()
    assert [event for event, _ in log.warnings()] == ["Runtime API next failed; polling again"] * 3


def test_next_reset_every_time_is_a_transport_error(
    api: RuntimeApi, emulator: Emulator, log: RecordingLog
) -> None:
    """/next reset before any invocation is named, on every retry: TransportError for next."""
    emulator.inject(NextReset(during="headers"), times=4)
    with pytest.raises(TransportError) as caught:
        api.next()
    assert caught.value.call == "next"
    assert len(emulator.deliveries) == 4
    assert len(log.warnings()) == 3


def test_reset_post_is_sent_once_more(api: RuntimeApi, emulator: Emulator) -> None:
    """A post whose connection is reset before an answer is sent again and accepted."""
    invocation, future = take(api, emulator)
    emulator.inject(PostReset(call="response"))
    assert api.send_response(invocation.request_id, b"1") is PostOutcome.ACCEPTED
    assert [a.status for a in emulator.answers] == [None, 202]
    assert future.result(WAIT_S).body == b"1"


def test_post_reset_after_accept_is_refused_not_doubled(
    api: RuntimeApi, emulator: Emulator
) -> None:
    """An answer taken before the reset is not doubled: the resend meets 403, survived."""
    invocation, future = take(api, emulator)
    emulator.inject(PostReset(after_accept=True, call="response"))
    assert api.send_response(invocation.request_id, b"1") is PostOutcome.REFUSED
    assert [a.status for a in emulator.answers] == [None, 403]
    assert future.result(WAIT_S).body == b"1"


def test_post_reset_every_time_is_a_transport_error(api: RuntimeApi, emulator: Emulator) -> None:
    """A post that keeps failing ends in TransportError naming the call."""
    invocation, _ = take(api, emulator)
    emulator.inject(PostReset(call="error"), times=10)
    with pytest.raises(TransportError) as caught:
        api.send_error(invocation.request_id, InvocationError("E", "m"))
    assert caught.value.call == "error"


def test_post_hanging_past_the_timeout_is_a_transport_error(
    emulator: Emulator, transport: str, log: RecordingLog
) -> None:
    """A post with no answer within the post timeout gives up (after one resend)."""
    with by_hand(emulator, transport, log, post_timeout=0.2) as api:
        invocation, _ = take(api, emulator)
        emulator.inject(PostHang(seconds=1.0), times=2)
        with pytest.raises(TransportError, match=r"no answer within 0\.2 s"):
            api.send_response(invocation.request_id, b"{}")


def test_stale_keep_alive_connection_is_replaced(
    make_emulator: MakeEmulator, transport: str, log: RecordingLog
) -> None:
    """After the server closed the idle connection, the next call still gets through."""
    first = make_emulator(timeout_s=3.0)
    port = first.port
    with RuntimeApi.from_env(first.function_env(), transport=transport, log=log) as api:
        invocation, _ = take(api, first)
        api.send_response(invocation.request_id, b"{}")
        first.stop()  # closes the keep-alive connection the client holds
        second = make_emulator(timeout_s=3.0, port=port)
        invocation, future = take(api, second)
        api.send_response(invocation.request_id, b"again")
        assert future.result(WAIT_S).body == b"again"
    assert not [w for w in log.warnings() if "failed" in w[0]]


# -- building a client -----------------------------------------------------------------------


def test_from_env_without_the_variable_is_not_running_in_lambda() -> None:
    """No AWS_LAMBDA_RUNTIME_API: NotRunningInLambda."""
    with pytest.raises(NotRunningInLambda, match="AWS_LAMBDA_RUNTIME_API is not set"):
        RuntimeApi.from_env({})


def test_from_env_with_a_bad_endpoint_is_invalid_endpoint() -> None:
    """A value that is not host:port: InvalidEndpoint naming it."""
    with pytest.raises(InvalidEndpoint, match="http://x:1"):
        RuntimeApi.from_env({"AWS_LAMBDA_RUNTIME_API": "http://x:1"})


def test_from_env_with_an_unknown_transport_is_a_config_error() -> None:
    """BULKHEAD_TRANSPORT must be socket or httpx."""
    env = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "BULKHEAD_TRANSPORT": "carrier-pigeon"}
    with pytest.raises(ConfigError, match="carrier-pigeon"):
        RuntimeApi.from_env(env)


def test_a_users_httpx_client_is_used_and_left_open(emulator: Emulator) -> None:
    """An httpx.Client passed in carries every call and stays open after close()."""
    seen: list[str] = []
    client = httpx.Client(
        event_hooks={"request": [lambda request: seen.append(request.url.path)]}
    )
    with client:
        with RuntimeApi.from_env(emulator.function_env(), http_client=client) as api:
            invocation, future = take(api, emulator)
            api.send_response(invocation.request_id, b"{}")
        assert future.result(WAIT_S).kind == "response"
        assert seen == [
            "/2018-06-01/runtime/invocation/next",
            f"/2018-06-01/runtime/invocation/{invocation.request_id}/response",
        ]
        assert not client.is_closed


# -- a streamed chunk moved from a pipe ----------------------------------------------


class _Stopped(Exception):
    """What a slot's ``blocked`` raises when it stops the worker mid-chunk."""


def _stop() -> None:
    raise _Stopped


def test_a_chunk_stopped_in_its_pipe_is_completed_before_the_trailers(
    emulator: Emulator, transport: str, log: RecordingLog
) -> None:
    """A chunk sent from a pipe whose wait for the Runtime API is stopped (a worker
    killed meanwhile) is taken out of the pipe whole, and sent before the
    trailers however the pipe fares: every byte arrives, in well-formed chunks."""
    emulator.read_streams_slowly(2 * 1024 * 1024, read_size=64 * 1024)
    read_end, write_end = os.pipe()
    with by_hand(emulator, transport, log, post_timeout=30.0) as api:
        try:
            invocation, future = take(api, emulator)
            stream = api.open_stream(invocation.request_id)
            stream.begin("application/octet-stream")
            # More than the send buffer and the slow reader's receive buffer
            # hold: the socket is full when the pipe's chunk comes.
            stream.send(b"a" * (3 * 1024 * 1024))
            assert enlarge_pipe(write_end) >= 1024 * 1024
            os.write(write_end, b"b" * (1024 * 1024))
            os.set_blocking(read_end, False)
            with pytest.raises(_Stopped):
                stream.send_from_pipe(read_end, 1024 * 1024, _stop)
            assert pipe_holds(read_end) == 0  # the rest is in hand, not in the pipe
        finally:
            os.close(read_end)
            os.close(write_end)
        stream.fail(InvocationError("Sandbox.Timedout", "stopped"))
        result = future.result(30.0)
    assert result.stream_error_type == "Runtime.Timedout", result
    assert b"".join(chunk.data for chunk in result.chunks) == b"a" * (3 << 20) + b"b" * (1 << 20)
