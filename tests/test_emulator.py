"""The Runtime API emulator, driven over real loopback sockets.

The runtime's side is played with ``http.client`` (one keep-alive connection
per simulated poller) and, for malformed or cut-off traffic, raw sockets.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import CancelledError
from typing import Any, NamedTuple

import pytest

import lambda_bulkhead.emulator as emulator_module
from lambda_bulkhead.emulator import (
    MAX_RESPONSE_BYTES,
    Emulator,
    InvokeResult,
    NextBody,
    NextFault,
    NextHeaders,
    NextPastDeadline,
    NextReset,
    NextShortBody,
    NextStatus,
    PostFault,
    PostHang,
    PostReset,
    PostStatus,
)

NEXT = "/2018-06-01/runtime/invocation/next"
INIT_ERROR = "/2018-06-01/runtime/init/error"
INVOKE = "/2015-03-31/functions/function/invocations"
INVOKE_HEAD = b"POST " + INVOKE.encode() + b" HTTP/1.1\r\nHost: emu\r\n"
WAIT_S = 5.0  # upper bound for anything that should happen at once


def post_path(request_id: str, call: str) -> str:
    return f"/2018-06-01/runtime/invocation/{request_id}/{call}"


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def request_id(self) -> str:
        return self.headers["lambda-runtime-aws-request-id"]

    def json(self) -> Any:
        return json.loads(self.body)


def read_reply(conn: http.client.HTTPConnection) -> Reply:
    response = conn.getresponse()
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Reply(response.status, headers, body)


class Runtime:
    """The runtime's side: one keep-alive connection to the Runtime API."""

    def __init__(self, emu: Emulator) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=WAIT_S)

    def start_next(self) -> None:
        self.conn.request("GET", NEXT)

    def next(self) -> Reply:
        self.start_next()
        return read_reply(self.conn)

    def post(
        self, request_id: str, call: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Reply:
        self.conn.request("POST", post_path(request_id, call), body=body, headers=headers or {})
        return read_reply(self.conn)

    def answer(self, event: Reply, body: bytes = b'{"ok":true}') -> Reply:
        """Post ``body`` as the response to ``event``, echoing its invocation id."""
        echo = {"Lambda-Runtime-Invocation-Id": event.headers["lambda-runtime-invocation-id"]}
        return self.post(event.request_id, "response", body, echo)


class Net:
    """Opens connections to one emulator and closes them all at teardown."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self._runtimes: list[Runtime] = []
        self._conns: list[http.client.HTTPConnection] = []
        self._socks: list[socket.socket] = []

    def runtime(self) -> Runtime:
        runtime = Runtime(self.emu)
        self._runtimes.append(runtime)
        return runtime

    def start_invoke(
        self, body: bytes = b"{}", headers: Mapping[str, str] | None = None
    ) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.emu.port, timeout=WAIT_S)
        self._conns.append(conn)
        conn.request("POST", INVOKE, body=body, headers=headers or {})
        return conn

    def raw(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.emu.port), timeout=WAIT_S)
        self._socks.append(sock)
        return sock

    def close(self) -> None:
        for runtime in self._runtimes:
            runtime.conn.close()
        for conn in self._conns:
            conn.close()
        for sock in self._socks:
            sock.close()


def read_until_closed(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes; and whether it reset the connection."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(timeout_s=1.0) as emulator:
        yield emulator


@pytest.fixture
def quick_emu() -> Iterator[Emulator]:
    """An emulator whose function times out after 0.2 s."""
    with Emulator(timeout_s=0.2) as emulator:
        yield emulator


@pytest.fixture
def net(emu: Emulator) -> Iterator[Net]:
    connections = Net(emu)
    yield connections
    connections.close()


@pytest.fixture
def quick_net(quick_emu: Emulator) -> Iterator[Net]:
    connections = Net(quick_emu)
    yield connections
    connections.close()


@pytest.fixture
def runtime(net: Net) -> Runtime:
    return net.runtime()


# -- setup and environment -------------------------------------------------------------


def test_function_env_points_at_the_emulator() -> None:
    """function_env() carries the Runtime API address and the function's settings."""
    with Emulator(timeout_s=3.0, function_name="my-fn", memory_mb=512) as emu:
        env = emu.function_env()
        assert env["AWS_LAMBDA_RUNTIME_API"] == emu.runtime_api == f"127.0.0.1:{emu.port}"
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == "my-fn"
        assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
        assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "3"
        assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/my-fn"
        assert "[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
        assert env["AWS_REGION"] == "us-east-1"
        assert emu.invoke_url == f"http://127.0.0.1:{emu.port}{INVOKE}"


def test_public_names_are_all_exported() -> None:
    """__all__ lists every public name of the package and each one exists."""
    public = {name for name in vars(emulator_module) if not name.startswith("_")}
    assert set(emulator_module.__all__) == public


def test_an_emulator_runs_once_and_refuses_calls_when_stopped() -> None:
    """start() twice and calls after stop() raise instead of misbehaving."""
    emu = Emulator()
    with pytest.raises(RuntimeError, match="not running"):
        emu.submit(b"{}")
    with emu, pytest.raises(RuntimeError, match="started once"):
        emu.start()
    emu.stop()  # a second stop is harmless
    with pytest.raises(RuntimeError, match="not running"):
        emu.invoke(b"{}")
    with pytest.raises(RuntimeError, match="started once"):
        emu.start()


def test_bad_settings_are_refused() -> None:
    """Constructor arguments a Lambda function cannot have raise ValueError."""
    with pytest.raises(ValueError, match="timeout_s"):
        Emulator(timeout_s=0)
    with pytest.raises(ValueError, match="function_name"):
        Emulator(function_name="bad name")
    with pytest.raises(ValueError, match="max_history"):
        Emulator(max_history=0)


# -- /next -----------------------------------------------------------------------------


def test_next_delivers_the_event_with_lambda_headers(emu: Emulator, runtime: Runtime) -> None:
    """/next answers 200 with the payload, request id, deadline, ARN, trace and invocation ids."""
    future = emu.submit(b'{"x":1}')
    before_ms = time.time() * 1000
    event = runtime.next()
    assert event.status == 200
    assert event.body == b'{"x":1}'
    assert event.headers["content-type"] == "application/json"
    assert len(event.request_id) == 36
    deadline = int(event.headers["lambda-runtime-deadline-ms"])
    assert before_ms + 900 <= deadline <= time.time() * 1000 + 1000
    assert event.headers["lambda-runtime-invoked-function-arn"] == (
        "arn:aws:lambda:us-east-1:012345678912:function:test_function"
    )
    assert event.headers["lambda-runtime-trace-id"].startswith("Root=1-")
    assert event.headers["lambda-runtime-trace-id"].endswith(";Sampled=0")
    assert event.headers["lambda-runtime-invocation-id"]
    for absent in (
        "lambda-runtime-client-context",
        "lambda-runtime-cognito-identity",
        "lambda-runtime-aws-tenant-id",
    ):
        assert absent not in event.headers
    runtime.answer(event)
    assert future.result(WAIT_S).request_id == event.request_id
    [delivery] = emu.deliveries
    assert delivery.request_id == event.request_id
    assert delivery.status == 200
    assert delivery.fault is None


def test_invoke_endpoint_passes_trace_client_context_tenant_and_content_type(
    net: Net, runtime: Runtime
) -> None:
    """The invoke's X-Amzn-Trace-Id, X-Amz-Client-Context, X-Amz-Tenant-Id reach /next."""
    context = {"custom": {"k": "v"}}
    invoke = net.start_invoke(
        b"raw bytes",
        {
            "Content-Type": "application/octet-stream",
            "X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            "X-Amz-Client-Context": base64.b64encode(json.dumps(context).encode()).decode(),
            "X-Amz-Tenant-Id": "tenant-7",
        },
    )
    event = runtime.next()
    assert event.body == b"raw bytes"
    assert event.headers["content-type"] == "application/octet-stream"
    assert event.headers["lambda-runtime-trace-id"] == (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    )
    assert json.loads(event.headers["lambda-runtime-client-context"]) == context
    assert event.headers["lambda-runtime-aws-tenant-id"] == "tenant-7"
    runtime.answer(event)
    assert read_reply(invoke).status == 200


def test_invoke_endpoint_treats_a_form_content_type_as_json(net: Net, runtime: Runtime) -> None:
    """curl -d's form content type is delivered as application/json."""
    net.start_invoke(b"{}", {"Content-Type": "application/x-www-form-urlencoded"})
    assert runtime.next().headers["content-type"] == "application/json"


def test_submit_sends_cognito_identity_and_client_context(emu: Emulator, runtime: Runtime) -> None:
    """submit() encodes mapping headers as JSON and passes strings as given."""
    emu.submit(
        b"{}",
        client_context={"client": {"app_title": "t"}},
        cognito_identity='{"cognitoIdentityId":"id-1"}',
        trace_id="Root=1-1-1",
        tenant_id="t1",
        content_type="text/plain",
    )
    event = runtime.next()
    assert json.loads(event.headers["lambda-runtime-client-context"]) == {
        "client": {"app_title": "t"}
    }
    assert event.headers["lambda-runtime-cognito-identity"] == '{"cognitoIdentityId":"id-1"}'
    assert event.headers["lambda-runtime-trace-id"] == "Root=1-1-1"
    assert event.headers["lambda-runtime-aws-tenant-id"] == "t1"
    assert event.headers["content-type"] == "text/plain"


def test_submit_refuses_header_injection(emu: Emulator) -> None:
    """A CR or LF in a value that becomes a header raises ValueError."""
    with pytest.raises(ValueError, match="CR or LF"):
        emu.submit(b"{}", trace_id="x\r\nEvil: 1")


def test_concurrent_next_polls_get_different_events(emu: Emulator, net: Net) -> None:
    """N runtime connections long-polling at once each get a different event."""
    pollers = [net.runtime() for _ in range(3)]
    for poller in pollers:
        poller.start_next()
    assert emu.wait_for_next_poll(WAIT_S, polls=3)
    futures = [emu.submit(json.dumps({"n": n}).encode()) for n in range(3)]
    events = [read_reply(poller.conn) for poller in pollers]
    assert sorted(json.loads(event.body)["n"] for event in events) == [0, 1, 2]
    assert len({event.request_id for event in events}) == 3
    for poller, event in zip(pollers, events, strict=True):
        poller.answer(event, event.body)
    for n, future in enumerate(futures):
        assert json.loads(future.result(WAIT_S).body) == {"n": n}


def test_wait_for_next_poll_reports_whether_a_runtime_waits(
    emu: Emulator, runtime: Runtime
) -> None:
    """wait_for_next_poll() is False while nobody polls and True once a /next waits."""
    assert emu.wait_for_next_poll(0.05) is False
    runtime.start_next()
    assert emu.wait_for_next_poll(WAIT_S) is True


def test_cancelled_submission_is_never_delivered(emu: Emulator, runtime: Runtime) -> None:
    """A future cancelled while queued withdraws its invoke."""
    withdrawn = emu.submit(b'"withdrawn"')
    assert withdrawn.cancel()
    kept = emu.submit(b'"kept"')
    event = runtime.next()
    assert event.body == b'"kept"'
    runtime.answer(event)
    assert kept.result(WAIT_S).kind == "response"


# -- /response and /error --------------------------------------------------------------


def test_response_is_accepted_and_returned_to_the_caller(
    emu: Emulator, net: Net, runtime: Runtime
) -> None:
    """/response answers 202 and the invoke gets 200 with the body and content type as posted."""
    invoke = net.start_invoke(b'{"q":1}')
    event = runtime.next()
    accepted = runtime.post(
        event.request_id, "response", b"<p>hi</p>", {"Content-Type": "text/html"}
    )
    assert (accepted.status, accepted.json()) == (202, {"status": "OK"})
    result = read_reply(invoke)
    assert result.status == 200
    assert result.body == b"<p>hi</p>"
    assert result.headers["content-type"] == "text/html"
    assert result.headers["x-amzn-requestid"] == event.request_id
    assert "x-amz-function-error" not in result.headers
    [answer] = emu.answers
    assert (answer.call, answer.status, answer.body) == ("response", 202, b"<p>hi</p>")


def test_error_is_accepted_and_returned_as_a_function_error(
    emu: Emulator, net: Net, runtime: Runtime
) -> None:
    """/error answers 202; the invoke gets 200, the error JSON and X-Amz-Function-Error."""
    invoke = net.start_invoke(b"{}")
    event = runtime.next()
    error = b'{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}'
    accepted = runtime.post(
        event.request_id,
        "error",
        error,
        {"Lambda-Runtime-Function-Error-Type": "Function.ValueError"},
    )
    assert accepted.status == 202
    result = read_reply(invoke)
    assert (result.status, result.body) == (200, error)
    assert result.headers["x-amz-function-error"] == "Unhandled"
    [answer] = emu.answers
    assert answer.call == "error"
    assert answer.error_type == "Function.ValueError"


def test_invoke_returns_the_result_through_the_python_api(emu: Emulator) -> None:
    """invoke() blocks until the runtime answers and returns an InvokeResult."""
    answered = threading.Event()

    def play_runtime() -> None:
        runtime = Runtime(emu)
        try:
            event = runtime.next()
            runtime.post(event.request_id, "error", b'{"errorType":"E"}')
        finally:
            runtime.conn.close()
            answered.set()

    thread = threading.Thread(target=play_runtime)
    thread.start()
    result = emu.invoke(b"{}", timeout=WAIT_S)
    thread.join()
    assert answered.is_set()
    assert isinstance(result, InvokeResult)
    assert (result.kind, result.status, result.body) == ("error", 200, b'{"errorType":"E"}')
    assert result.headers["X-Amz-Function-Error"] == "Unhandled"


def test_invocation_id_echo_is_recorded(emu: Emulator, runtime: Runtime) -> None:
    """answers records the echoed Lambda-Runtime-Invocation-Id beside the one /next sent."""
    emu.submit(b"{}")
    emu.submit(b"{}")
    first = runtime.next()
    runtime.answer(first)
    second = runtime.next()
    runtime.post(second.request_id, "response", b"{}")  # forgets to echo
    echoed, forgotten = emu.answers
    assert echoed.invocation_id == echoed.expected_invocation_id
    assert echoed.invocation_id == first.headers["lambda-runtime-invocation-id"]
    assert forgotten.invocation_id is None
    assert forgotten.expected_invocation_id == second.headers["lambda-runtime-invocation-id"]


def test_concurrent_invokes_are_queued_not_rejected(net: Net, runtime: Runtime) -> None:
    """Two invokes at once both succeed, one after the other (the RIE would answer 400)."""
    first = net.start_invoke(b'"one"')
    second = net.start_invoke(b'"two"')
    bodies = set()
    for _ in range(2):
        event = runtime.next()
        bodies.add(event.body)
        runtime.answer(event, b"echo:" + event.body)
    assert bodies == {b'"one"', b'"two"'}
    for invoke, expected in ((first, b'echo:"one"'), (second, b'echo:"two"')):
        reply = read_reply(invoke)
        assert (reply.status, reply.body) == (200, expected)


def test_timeout_answers_task_timed_out(quick_emu: Emulator, quick_net: Net) -> None:
    """An invoke unanswered within timeout_s gets 200 'Task timed out after 0.20 seconds'."""
    runtime = quick_net.runtime()
    invoke = quick_net.start_invoke(b"{}")
    event = runtime.next()
    result = read_reply(invoke)
    assert result.status == 200
    assert result.body == b"Task timed out after 0.20 seconds"
    assert result.headers["x-amz-function-error"] == "Unhandled"
    assert result.headers["x-amzn-requestid"] == event.request_id


def test_late_post_after_timeout_answers_410(quick_emu: Emulator, quick_net: Net) -> None:
    """A /response or /error for a timed-out invocation is answered 410 InvokeTimeout."""
    runtime = quick_net.runtime()
    future = quick_emu.submit(b"{}")
    event = runtime.next()
    assert future.result(WAIT_S).kind == "timeout"
    late = runtime.answer(event)
    assert late.status == 410
    assert late.json()["errorType"] == "InvokeTimeout"
    assert runtime.post(event.request_id, "error", b"{}").status == 410
    assert [answer.status for answer in quick_emu.answers] == [410, 410]


@pytest.mark.parametrize(
    ("first", "second"), [("response", "response"), ("response", "error"), ("error", "response")]
)
def test_second_post_answers_403(emu: Emulator, runtime: Runtime, first: str, second: str) -> None:
    """Answering an invocation twice is 403 InvalidStateTransition; the first answer stands."""
    future = emu.submit(b"{}")
    event = runtime.next()
    assert runtime.post(event.request_id, first, b'"first"').status == 202
    again = runtime.post(event.request_id, second, b'"second"')
    assert again.status == 403
    assert again.json()["errorType"] == "InvalidStateTransition"
    assert future.result(WAIT_S).body == b'"first"'


def test_unknown_request_id_answers_400(emu: Emulator, runtime: Runtime) -> None:
    """A post for a request id /next never gave out is 400 with a JSON error."""
    emu.submit(b"{}")  # queued but not delivered: still unknown to the runtime
    for call in ("response", "error"):
        reply = runtime.post("no-such-id", call, b"{}")
        assert reply.status == 400
        assert reply.json()["errorType"] == "InvalidRequestID"
        assert "no-such-id" in reply.json()["errorMessage"]
    assert emu.answers[0].expected_invocation_id is None


def test_oversized_response_answers_413_and_keeps_the_invocation(
    emu: Emulator, runtime: Runtime
) -> None:
    """A body over 6291556 bytes is 413 and the runtime may still post /error."""
    future = emu.submit(b"{}")
    event = runtime.next()
    too_big = runtime.post(event.request_id, "response", b"x" * (MAX_RESPONSE_BYTES + 1))
    assert too_big.status == 413
    assert too_big.json()["errorType"] == "RequestEntityTooLarge"
    assert not future.done()
    just_fits = b'"' + b"x" * (MAX_RESPONSE_BYTES - 2) + b'"'
    assert runtime.post(event.request_id, "error", just_fits).status == 202
    assert future.result(WAIT_S).kind == "error"


# -- init errors and runtime exits ------------------------------------------------------


def test_init_error_answers_502_to_invokes_and_403_to_next(
    emu: Emulator, net: Net, runtime: Runtime
) -> None:
    """After /init/error every invoke is 502 with the posted body, and /next is 403."""
    queued = net.start_invoke(b"{}")
    error = b'{"errorMessage":"Unable to import module","errorType":"Runtime.ImportModuleError"}'
    runtime.conn.request(
        "POST",
        INIT_ERROR,
        body=error,
        headers={"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"},
    )
    assert read_reply(runtime.conn).status == 202
    waiting = read_reply(queued)
    assert (waiting.status, waiting.body) == (502, error)
    later = emu.invoke(b"{}", timeout=WAIT_S)
    assert (later.kind, later.status, later.body) == ("init_error", 502, error)
    assert runtime.next().status == 403
    [report] = emu.init_errors
    assert (report.error_type, report.body, report.status) == (
        "Runtime.ImportModuleError",
        error,
        202,
    )


def test_init_error_after_first_next_answers_403(emu: Emulator, runtime: Runtime) -> None:
    """Once the runtime has polled /next, init is over: /init/error is 403."""
    emu.submit(b"{}")
    runtime.next()
    runtime.conn.request("POST", INIT_ERROR, body=b"{}")
    assert read_reply(runtime.conn).status == 403
    assert [report.status for report in emu.init_errors] == [403]


def test_runtime_exited_fails_in_flight_and_later_invokes(
    emu: Emulator, net: Net, runtime: Runtime
) -> None:
    """runtime_exited() answers the in-flight and every later invoke 502 Runtime.ExitError."""
    in_flight = net.start_invoke(b"{}")
    event = runtime.next()
    emu.runtime_exited("signal: segmentation fault")
    crashed = read_reply(in_flight)
    assert crashed.status == 502
    assert crashed.json() == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {event.request_id} Error: Runtime exited with error: "
        "signal: segmentation fault",
    }
    later = emu.invoke(b"{}", timeout=WAIT_S)
    assert (later.kind, later.status) == ("exit", 502)
    assert later.request_id in later.body.decode()
    assert runtime.answer(event).status == 403  # the dead runtime's answer is not taken


def test_next_poll_after_exit_serves_invokes_again(emu: Emulator, net: Net) -> None:
    """A /next after runtime_exited() is a restarted runtime: invokes are delivered again."""
    emu.runtime_exited()
    assert emu.invoke(b"{}", timeout=WAIT_S).kind == "exit"
    restarted = net.runtime()
    restarted.start_next()
    assert emu.wait_for_next_poll(WAIT_S)
    future = emu.submit(b'"again"')
    event = read_reply(restarted.conn)
    assert event.body == b'"again"'
    restarted.answer(event)
    assert future.result(WAIT_S).kind == "response"


# -- HTTP errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/2018-06-01/runtime/invocation/abc/other",
        "/2018-06-01/runtime/invocation//response",
        "/2015-03-31/functions/other/invocations",
    ],
)
def test_unknown_path_answers_404(runtime: Runtime, path: str) -> None:
    """A path the emulator does not serve is a 404 JSON error, and the connection stays up."""
    runtime.conn.request("POST", path, body=b"{}")
    reply = read_reply(runtime.conn)
    assert reply.status == 404
    assert reply.json()["errorType"] == "NotFound"
    runtime.conn.request("GET", "/nope")
    assert read_reply(runtime.conn).status == 404


def test_invoke_path_accepts_the_function_name(emu: Emulator, runtime: Runtime) -> None:
    """The invoke endpoint also answers under the configured function name."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=WAIT_S)
    try:
        conn.request("POST", "/2015-03-31/functions/test_function/invocations", body=b"{}")
        runtime.answer(runtime.next())
        assert read_reply(conn).status == 200
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", NEXT, "GET"),
        ("GET", post_path("id", "response"), "POST"),
        ("PUT", post_path("id", "error"), "POST"),
        ("GET", INIT_ERROR, "POST"),
        ("GET", INVOKE, "POST"),
    ],
)
def test_wrong_method_answers_405(runtime: Runtime, method: str, path: str, allowed: str) -> None:
    """A known path with the wrong method is 405 naming the allowed one."""
    runtime.conn.request(method, path)
    reply = read_reply(runtime.conn)
    assert reply.status == 405
    assert reply.headers["allow"] == allowed


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (INVOKE_HEAD + b"Content-Length: ten\r\n\r\n", 400),
        (INVOKE_HEAD + b"Content-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: emu\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (INVOKE_HEAD + b"Transfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 requires Host, as Lambda's server does
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: emu\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: emu\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: emu\r\nContent-Length: 999999999999\r\n\r\n", 413),
    ],
)
def test_malformed_request_answers_4xx_and_closes(
    net: Net, request_bytes: bytes, status: int
) -> None:
    """A request the parser cannot trust gets a JSON error, then the connection is closed."""
    sock = net.raw()
    sock.sendall(request_bytes)
    data, _reset = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close" in head
    assert json.loads(body)["errorMessage"]


def test_connection_close_is_honoured(net: Net) -> None:
    """Connection: close gets its answer and then the server closes the connection."""
    sock = net.raw()
    sock.sendall(b"GET /nope HTTP/1.1\r\nHost: emu\r\nConnection: close\r\n\r\n")
    data, reset = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 404 ")
    assert not reset


def test_pipelined_requests_are_answered_in_order(net: Net) -> None:
    """Requests sent back to back on one connection are answered one by one, in order."""
    sock = net.raw()
    sock.sendall(
        b"GET /a HTTP/1.1\r\nHost: emu\r\n\r\n"
        b"POST " + NEXT.encode() + b" HTTP/1.1\r\nHost: emu\r\nContent-Length: 2\r\n\r\n{}"
        b"GET /b HTTP/1.1\r\nHost: emu\r\nConnection: close\r\n\r\n"
    )
    data, _ = read_until_closed(sock)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"404", b"405", b"404"]
    assert data.index(b"/a") < data.index(b"/b")


def test_expect_100_continue_gets_an_interim_answer(emu: Emulator, net: Net) -> None:
    """A request with Expect: 100-continue is told to go on before its body is sent."""
    emu.submit(b"{}")
    sock = net.raw()
    sock.sendall(
        b"POST /2018-06-01/runtime/invocation/unknown/response HTTP/1.1\r\nHost: emu\r\n"
        b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"{}")
    assert sock.recv(1024).startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    "context", ["not base64!", base64.b64encode(b"[1]").decode(), "bm90IGpzb24="]
)
def test_invoke_with_bad_client_context_answers_400(net: Net, context: str) -> None:
    """An X-Amz-Client-Context that is not base64 of a JSON object is a 400."""
    reply = read_reply(net.start_invoke(b"{}", {"X-Amz-Client-Context": context}))
    assert reply.status == 400
    assert "X-Amz-Client-Context" in reply.json()["errorMessage"]


# -- lifecycle -------------------------------------------------------------------------


def test_stop_closes_connections_and_cancels_pending_invokes() -> None:
    """stop() drops connections, cancels queued futures, frees the port and ends the thread."""
    threads_before = set(threading.enumerate())
    emu = Emulator().start()
    port = emu.port
    runtime = Runtime(emu)
    try:
        runtime.start_next()
        assert emu.wait_for_next_poll(WAIT_S)
        delivered = emu.submit(b"{}")
        queued = emu.submit(b"{}")
        read_reply(runtime.conn)
        emu.stop()
        with pytest.raises(CancelledError):
            delivered.result(WAIT_S)
        assert queued.cancelled()
        with pytest.raises(ConnectionError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()
        assert set(threading.enumerate()) == threads_before
    finally:
        runtime.conn.close()


def test_max_history_keeps_the_newest_records() -> None:
    """With max_history=2 only the two newest answers and deliveries are kept."""
    with Emulator(max_history=2) as emu:
        runtime = Runtime(emu)
        try:
            for n in range(3):
                emu.submit(str(n).encode())
                runtime.answer(runtime.next())
            assert [delivery.body_size for delivery in emu.deliveries] == [1, 1]
            assert len(emu.answers) == 2
        finally:
            runtime.conn.close()


# -- faults: /next ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 403, 404])
def test_next_status_fault_answers_without_using_the_event(
    emu: Emulator, runtime: Runtime, status: int
) -> None:
    """NextStatus answers its status and error body; the queued invoke waits for the next poll."""
    future = emu.submit(b'"event"')
    emu.inject(NextStatus(status=status))
    faulty = runtime.next()
    assert faulty.status == status
    assert "injected fault" in faulty.json()["errorMessage"]
    event = runtime.next()
    assert event.body == b'"event"'
    runtime.answer(event)
    assert future.result(WAIT_S).kind == "response"
    first, second = emu.deliveries
    assert (first.request_id, first.status, first.fault) == (
        None,
        status,
        NextStatus(status=status),
    )
    assert (second.request_id, second.fault) == (event.request_id, None)


def test_next_status_fault_answers_a_poll_already_waiting(emu: Emulator, runtime: Runtime) -> None:
    """A fault that needs no event answers a /next that is already long-polling."""
    runtime.start_next()
    assert emu.wait_for_next_poll(WAIT_S)
    emu.inject(NextStatus(status=500, body=b"container error"))
    reply = read_reply(runtime.conn)
    assert (reply.status, reply.body) == (500, b"container error")


def test_next_reset_during_headers_resets_without_using_the_event(
    emu: Emulator, net: Net, runtime: Runtime
) -> None:
    """NextReset(during='headers') cuts the answer before the request id, then resets."""
    future = emu.submit(b"{}")
    emu.inject(NextReset(during="headers"))
    sock = net.raw()
    sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: emu\r\n\r\n".encode())
    data, reset = read_until_closed(sock)
    assert reset
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Request-Id" not in data
    event = runtime.next()
    runtime.answer(event)
    assert future.result(WAIT_S).kind == "response"


def test_next_reset_during_body_uses_the_event(quick_emu: Emulator, quick_net: Net) -> None:
    """NextReset(during='body') sends headers and half the body, resets; the invoke times out."""
    future = quick_emu.submit(b'{"half":"of this"}')
    quick_emu.inject(NextReset(during="body"))
    sock = quick_net.raw()
    sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: emu\r\n\r\n".encode())
    data, reset = read_until_closed(sock)
    assert reset
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Lambda-Runtime-Aws-Request-Id" in head
    assert b"Content-Length: 18" in head
    assert body == b'{"half":"'
    assert future.result(WAIT_S).kind == "timeout"


def test_next_short_body_closes_before_the_declared_length(
    quick_emu: Emulator, quick_net: Net
) -> None:
    """NextShortBody declares the whole body, sends half, and closes cleanly."""
    future = quick_emu.submit(b"0123456789")
    quick_emu.inject(NextShortBody())
    runtime = quick_net.runtime()
    runtime.start_next()
    response = runtime.conn.getresponse()
    assert response.getheader("Content-Length") == "10"
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert caught.value.partial == b"01234"
    assert future.result(WAIT_S).kind == "timeout"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"Lambda-Runtime-Aws-Request-Id": None}, {"lambda-runtime-aws-request-id": None}),
        ({"lambda-runtime-aws-request-id": ""}, {"lambda-runtime-aws-request-id": ""}),
        ({"Lambda-Runtime-Deadline-Ms": "soon"}, {"lambda-runtime-deadline-ms": "soon"}),
        (
            {"Lambda-Runtime-Client-Context": "{not json"},
            {"lambda-runtime-client-context": "{not json"},
        ),
        ({"Lambda-Runtime-Cognito-Identity": "[1,"}, {"lambda-runtime-cognito-identity": "[1,"}),
        ({"Content-Type": "application/x-custom"}, {"content-type": "application/x-custom"}),
    ],
)
def test_next_headers_fault_changes_the_event_headers(
    emu: Emulator,
    runtime: Runtime,
    overrides: dict[str, str | None],
    expected: dict[str, str | None],
) -> None:
    """NextHeaders sets, adds or removes headers of the delivered event."""
    emu.submit(b'"event"')
    emu.inject(NextHeaders(headers=overrides))
    event = runtime.next()
    assert event.body == b'"event"'
    for name, value in expected.items():
        assert event.headers.get(name) == value
    [delivery] = emu.deliveries
    assert delivery.fault == NextHeaders(headers=overrides)
    assert delivery.request_id is not None


def test_next_headers_fault_sends_text_as_utf8(emu: Emulator, runtime: Runtime) -> None:
    """A non-ASCII header value in a fault goes out as its UTF-8 bytes."""
    emu.submit(b"{}")
    emu.inject(NextHeaders(headers={"Lambda-Runtime-Client-Context": '{"name":"Zoë"}'}))
    raw = runtime.next().headers["lambda-runtime-client-context"]
    assert raw.encode("latin-1").decode("utf-8") == '{"name":"Zoë"}'


def test_event_without_request_id_times_out(quick_emu: Emulator, quick_net: Net) -> None:
    """An event delivered without its request id cannot be answered, so its invoke times out."""
    future = quick_emu.submit(b"{}")
    quick_emu.inject(NextHeaders(headers={"Lambda-Runtime-Aws-Request-Id": None}))
    event = quick_net.runtime().next()
    assert "lambda-runtime-aws-request-id" not in event.headers
    assert future.result(WAIT_S).kind == "timeout"


def test_next_past_deadline_fault(emu: Emulator, runtime: Runtime) -> None:
    """NextPastDeadline sends a Deadline-Ms already by_ms in the past; the event is usable."""
    future = emu.submit(b"{}")
    emu.inject(NextPastDeadline(by_ms=5000))
    event = runtime.next()
    assert int(event.headers["lambda-runtime-deadline-ms"]) < time.time() * 1000 - 4000
    runtime.answer(event)
    assert future.result(WAIT_S).kind == "response"


@pytest.mark.parametrize("body", [b"", b'"' + b"x" * (6 * 1024 * 1024) + b'"'])
def test_next_body_fault_replaces_the_event_body(
    emu: Emulator, runtime: Runtime, body: bytes
) -> None:
    """NextBody delivers the event with another body (empty, 6 MB)."""
    emu.submit(b'"original"')
    emu.inject(NextBody(body=body))
    event = runtime.next()
    assert event.body == body
    assert emu.deliveries[0].body_size == len(body)


def test_fault_times_spoils_that_many_answers(emu: Emulator, runtime: Runtime) -> None:
    """inject(fault, times=2) affects the next two answers, then answers are normal."""
    emu.inject(NextStatus(status=500), times=2)
    emu.submit(b"{}")
    assert [runtime.next().status for _ in range(3)] == [500, 500, 200]


def test_clear_faults_drops_unused_faults(emu: Emulator, runtime: Runtime) -> None:
    """clear_faults() removes every queued fault."""
    emu.inject(NextStatus(status=500), times=5)
    emu.inject(PostStatus(status=500))
    emu.clear_faults()
    emu.submit(b"{}")
    event = runtime.next()
    assert event.status == 200
    assert runtime.answer(event).status == 202


# -- faults: /response and /error ------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 403, 410, 413, 500])
def test_post_status_fault_leaves_the_invocation_waiting(
    emu: Emulator, runtime: Runtime, status: int
) -> None:
    """PostStatus answers its status without accepting; a retry is accepted."""
    future = emu.submit(b"{}")
    emu.inject(PostStatus(status=status))
    event = runtime.next()
    refused = runtime.answer(event)
    assert refused.status == status
    assert refused.json()["errorMessage"] == f"injected fault: status {status}"
    assert not future.done()
    assert runtime.answer(event).status == 202
    assert future.result(WAIT_S).kind == "response"
    assert [(answer.status, answer.fault) for answer in emu.answers] == [
        (status, PostStatus(status=status)),
        (202, None),
    ]


def test_post_fault_applies_only_to_its_call(emu: Emulator, runtime: Runtime) -> None:
    """A PostFault with call='error' leaves /response alone."""
    emu.inject(PostStatus(status=500, body=b"nope", call="error"))
    emu.submit(b"{}")
    emu.submit(b"{}")
    assert runtime.answer(runtime.next()).status == 202
    failed = runtime.post(runtime.next().request_id, "error", b"{}")
    assert (failed.status, failed.body) == (500, b"nope")


def test_post_reset_drops_the_connection_without_accepting(
    emu: Emulator, net: Net, runtime: Runtime
) -> None:
    """PostReset resets the connection; the invocation still waits for an answer."""
    future = emu.submit(b"{}")
    emu.inject(PostReset())
    event = runtime.next()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        runtime.answer(event)
    assert not future.done()
    retry = net.runtime()
    assert retry.answer(event).status == 202
    assert future.result(WAIT_S).kind == "response"
    assert [answer.status for answer in emu.answers] == [None, 202]


def test_post_reset_after_accept_ends_the_invocation(
    emu: Emulator, net: Net, runtime: Runtime
) -> None:
    """PostReset(after_accept=True) takes the answer, resets; a retry meets 403."""
    future = emu.submit(b"{}")
    emu.inject(PostReset(after_accept=True, call="response"))
    event = runtime.next()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        runtime.answer(event, b'"taken"')
    assert future.result(WAIT_S).body == b'"taken"'
    assert net.runtime().answer(event).status == 403


def test_post_hang_holds_the_answer(emu: Emulator, runtime: Runtime) -> None:
    """PostHang answers only after its seconds, then as usual."""
    future = emu.submit(b"{}")
    emu.inject(PostHang(seconds=0.3))
    event = runtime.next()
    started = time.monotonic()
    assert runtime.answer(event).status == 202
    assert time.monotonic() - started >= 0.29
    assert future.result(WAIT_S).kind == "response"


def test_post_hang_past_the_timeout_answers_410(quick_emu: Emulator, quick_net: Net) -> None:
    """A post held past the function timeout is answered 410 when the hang ends."""
    future = quick_emu.submit(b"{}")
    quick_emu.inject(PostHang(seconds=0.4))
    runtime = quick_net.runtime()
    event = runtime.next()
    assert runtime.answer(event).status == 410
    assert future.result(WAIT_S).kind == "timeout"


@pytest.mark.parametrize(
    "make_fault",
    [
        lambda: NextStatus(status=99),
        lambda: NextReset(during="trailers"),  # type: ignore[arg-type]
        lambda: NextPastDeadline(by_ms=0),
        lambda: NextHeaders(headers={"X": "a\r\nb"}),
        lambda: PostStatus(status=600),
        lambda: PostHang(seconds=-1),
        lambda: PostReset(call="init"),  # type: ignore[arg-type]
    ],
)
def test_faults_refuse_impossible_settings(make_fault: Callable[[], object]) -> None:
    """A fault that cannot be produced raises ValueError when built."""
    with pytest.raises(ValueError):  # noqa: PT011 -- each case names a different field
        make_fault()


def test_inject_checks_its_arguments(emu: Emulator) -> None:
    """inject() wants a fault and times >= 1."""
    with pytest.raises(TypeError):
        emu.inject("NextStatus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        emu.inject(NextStatus(), times=0)
    assert isinstance(NextStatus(), NextFault)
    assert isinstance(PostHang(seconds=1), PostFault)
