"""The sans-IO Runtime API core: one request value per endpoint, ``parse_next``,
error bodies and what each answer to a post means.  No sockets here."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_bulkhead import (
    InvalidEndpoint,
    InvocationError,
    MissingRequestId,
    UnexpectedStatus,
)
from lambda_bulkhead._errors import error_type_header
from lambda_bulkhead.runtime_api._protocol import (
    MAX_DEADLINE_MS,
    MAX_RESPONSE_BYTES,
    PostOutcome,
    Response,
    error_body,
    error_request,
    init_error_request,
    next_request,
    parse_deadline,
    parse_endpoint,
    parse_next,
    path_segment,
    post_outcome,
    response_request,
    too_large_error,
)

RUNTIME = "/2018-06-01/runtime"
PLATFORM_ERROR_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")


def answer(
    status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"{}"
) -> Response:
    return Response(status, headers or {}, body)


def next_answer(**overrides: str | None) -> Response:
    headers: dict[str, str] = {
        "content-type": "application/json",
        "lambda-runtime-aws-request-id": "req-1",
        "lambda-runtime-deadline-ms": "1700000000123",
        "lambda-runtime-invoked-function-arn": "arn:aws:lambda:us-east-1:1:function:f",
        "lambda-runtime-trace-id": "Root=1-2-3;Parent=4;Sampled=0",
        "lambda-runtime-client-context": '{"custom": {"k": "v"}}',
        "lambda-runtime-cognito-identity": '{"cognitoIdentityId": "id"}',
        "lambda-runtime-aws-tenant-id": "tenant-7",
        "lambda-runtime-invocation-id": "nonce-9",
    }
    for name, value in overrides.items():
        key = name.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return answer(200, headers, b'{"x": 1}')


# -- requests ------------------------------------------------------------------


def test_next_request_is_a_bare_get() -> None:
    """/next is a GET of the invocation/next path with no headers and no body."""
    request = next_request()
    assert (request.call, request.method, request.path) == (
        "next", "GET", f"{RUNTIME}/invocation/next"
    )
    assert request.headers == ()
    assert request.body == b""


def test_response_request_echoes_the_invocation_id_and_content_type() -> None:
    """/response carries the body, the invocation id echo and the content type."""
    request = response_request("abc", b"[1]", invocation_id="n-1", content_type="text/plain")
    assert (request.call, request.method, request.path) == (
        "response", "POST", f"{RUNTIME}/invocation/abc/response"
    )
    assert request.headers == (
        ("Lambda-Runtime-Invocation-Id", "n-1"), ("Content-Type", "text/plain")
    )
    assert request.body == b"[1]"


def test_response_request_without_invocation_id_sends_no_echo_header() -> None:
    """No invocation id from /next means no Lambda-Runtime-Invocation-Id header."""
    request = response_request("abc", b"")
    assert request.headers == ()


def test_error_request_headers_and_body() -> None:
    """/error sends the error content type, the error-type header and the echo."""
    error = InvocationError("ValueError", "boom", ['  File "a.py", line 1, in f\n'])
    request = error_request("abc", error, invocation_id="n-2")
    assert (request.call, request.method, request.path) == (
        "error", "POST", f"{RUNTIME}/invocation/abc/error"
    )
    assert request.headers == (
        ("Content-Type", "application/vnd.aws.lambda.error+json"),
        ("Lambda-Runtime-Function-Error-Type", "Function.ValueError"),
        ("Lambda-Runtime-Invocation-Id", "n-2"),
    )
    assert json.loads(request.body)["requestId"] == "abc"


def test_init_error_request_has_the_header_and_an_empty_request_id() -> None:
    """/init/error carries the error-type header and, as the official runtime's,
    a body whose requestId is empty."""
    error = InvocationError("Runtime.ImportModuleError", "Unable to import module 'app'")
    request = init_error_request(error)
    assert (request.call, request.method, request.path) == (
        "init/error", "POST", f"{RUNTIME}/init/error"
    )
    assert ("Lambda-Runtime-Function-Error-Type", "Runtime.ImportModuleError") in request.headers
    assert json.loads(request.body)["requestId"] == ""


# -- the error-type header ------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "header"),
    [
        ("Runtime.MarshalError", "Runtime.MarshalError"),
        ("Runtime.UnmarshalError", "Runtime.UnmarshalError"),
        ("Runtime.InvalidEvent", "Runtime.InvalidEvent"),
        ("Runtime.ExitError", "Runtime.ExitError"),
        ("Runtime.OutOfMemory", "Runtime.OutOfMemory"),
        ("Function.ResponseSizeTooLarge", "Function.ResponseSizeTooLarge"),
        ("Sandbox.Timedout", "Runtime.Timedout"),
        ("ValueError", "Function.ValueError"),
        ("MemoryError", "Function.MemoryError"),
        ("mypackage.CustomError", "Function.CustomError"),
        ("snake_case_error", "Function.Unhandled"),
        ("Error2", "Function.Unhandled"),
        ("", "Function.Unhandled"),
    ],
)
def test_error_type_header_values(error_type: str, header: str) -> None:
    """Each errorType maps to the header value the platform accepts."""
    assert error_type_header(error_type) == header


@given(st.text())
def test_error_type_header_always_fits_the_platform_pattern(error_type: str) -> None:
    """Whatever the errorType, the header value matches (Runtime|Function).[A-Z][a-zA-Z]+."""
    assert PLATFORM_ERROR_TYPE.fullmatch(error_type_header(error_type))


# -- error bodies -----------------------------------------------------------------


def test_error_body_has_the_official_key_order() -> None:
    """errorMessage, errorType, requestId, stackTrace: the official runtime's order."""
    error = InvocationError("KeyError", "'x'", ["line 1\n", "line 2\n"])
    body = json.loads(error_body(error, "req"))
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body == {
        "errorMessage": "'x'", "errorType": "KeyError", "requestId": "req",
        "stackTrace": ["line 1\n", "line 2\n"],
    }


def test_error_body_appends_causes_after_the_official_keys() -> None:
    """Chained causes come last, each in the same shape without requestId."""
    root = InvocationError("OSError", "disk", ["s\n"])
    error = InvocationError("RuntimeError", "wrapped", [], [root])
    body = json.loads(error_body(error, "req"))
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace", "causes"]
    assert body["causes"] == [
        {"errorMessage": "disk", "errorType": "OSError", "stackTrace": ["s\n"]}
    ]


def test_error_body_without_causes_has_no_causes_key() -> None:
    """A lone error sends exactly the official keys."""
    assert "causes" not in json.loads(error_body(InvocationError("E", "m"), None))


def test_error_body_keeps_unicode_and_escapes_lone_surrogates() -> None:
    """Non-ASCII text stays readable; a lone surrogate still gives valid UTF-8 JSON."""
    body = error_body(InvocationError("E", "héllo \udcff"), None)
    text = body.decode("utf-8")  # must not raise
    assert "héllo" in text
    assert json.loads(text)["errorMessage"].startswith("héllo ")


def test_too_large_error_names_the_size() -> None:
    """Function.ResponseSizeTooLarge names the refused size and the limit."""
    error = too_large_error(7_000_000)
    assert error.error_type == "Function.ResponseSizeTooLarge"
    assert "7000000 bytes" in error.error_message
    assert str(MAX_RESPONSE_BYTES) in error.error_message


# -- AWS_LAMBDA_RUNTIME_API ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9001", ("127.0.0.1", 9001)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:65535", ("::1", 65535)),
        (" 127.0.0.1:9001 ", ("127.0.0.1", 9001)),
    ],
)
def test_parse_endpoint_accepts_host_port(value: str, expected: tuple[str, int]) -> None:
    """host:port (IPv6 in brackets) splits into host and port."""
    assert parse_endpoint(value) == expected


@pytest.mark.parametrize(
    "value",
    ["localhost", "http://127.0.0.1:9001", "127.0.0.1:0", "127.0.0.1:65536", ":9001",
     "127.0.0.1:abc", "127.0.0.1:9001/path", ""],
)
def test_parse_endpoint_rejects_anything_else(value: str) -> None:
    """A scheme, a path, no port or a port out of range is InvalidEndpoint."""
    with pytest.raises(InvalidEndpoint) as caught:
        parse_endpoint(value)
    assert caught.value.endpoint == value


# -- parse_next -----------------------------------------------------------------------


def test_parse_next_reads_every_header() -> None:
    """Every /next header lands in its Invocation field."""
    invocation = parse_next(next_answer())
    assert invocation.request_id == "req-1"
    assert invocation.payload == b'{"x": 1}'
    assert invocation.deadline_ms == 1700000000123
    assert invocation.invoked_function_arn == "arn:aws:lambda:us-east-1:1:function:f"
    assert invocation.trace_id == "Root=1-2-3;Parent=4;Sampled=0"
    assert invocation.client_context == '{"custom": {"k": "v"}}'
    assert invocation.cognito_identity == '{"cognitoIdentityId": "id"}'
    assert invocation.tenant_id == "tenant-7"
    assert invocation.invocation_id == "nonce-9"
    assert invocation.content_type == "application/json"


def test_parse_next_absent_optional_headers_are_none() -> None:
    """Only the request id is required; the rest default to None, 0 or ''."""
    invocation = parse_next(answer(200, {"lambda-runtime-aws-request-id": "r"}, b"x"))
    assert invocation.deadline_ms == 0
    assert invocation.invoked_function_arn == ""
    assert (invocation.trace_id, invocation.client_context, invocation.cognito_identity,
            invocation.tenant_id, invocation.invocation_id, invocation.content_type) == (
        None, None, None, None, None, None
    )


@pytest.mark.parametrize("request_id", [None, ""])
def test_parse_next_without_a_request_id_is_fatal(request_id: str | None) -> None:
    """A missing or empty Lambda-Runtime-Aws-Request-Id raises MissingRequestId."""
    with pytest.raises(MissingRequestId):
        parse_next(next_answer(lambda_runtime_aws_request_id=request_id))


@pytest.mark.parametrize(
    "deadline", ["soon", "", "12.5", "0x10", "-5", "+5", "1_000", " 5", "\u0661", "1e12"]
)
def test_parse_next_non_numeric_deadline_is_zero(deadline: str) -> None:
    """A deadline that is not a plain decimal means no deadline known (0)."""
    assert parse_next(next_answer(lambda_runtime_deadline_ms=deadline)).deadline_ms == 0


@pytest.mark.parametrize(
    ("deadline", "expected"),
    [
        ("9223372036854775807", MAX_DEADLINE_MS),
        ("9223372036854775808", MAX_DEADLINE_MS),
        ("99999999999999999999", MAX_DEADLINE_MS),
        ("9" * 5000, MAX_DEADLINE_MS),  # past int()'s digit limit
        ("0000000000000000000000001", 1),
        ("0", 0),
    ],
)
def test_parse_deadline_clamps_to_the_latest_an_invoke_frame_holds(
    deadline: str, expected: int
) -> None:
    """A decimal past the i64 is the latest deadline; leading zeros do not count."""
    assert parse_deadline(deadline) == expected


@given(st.text(max_size=30))
def test_parse_deadline_never_raises_and_stays_in_the_i64(text: str) -> None:
    """Any header text gives a deadline the Invoke frame can hold."""
    assert 0 <= parse_deadline(text) <= MAX_DEADLINE_MS


@pytest.mark.parametrize(
    ("request_id", "segment"),
    [
        ("8476a536-e9f4-11e8-9739-2dfe598c3fcd", "8476a536-e9f4-11e8-9739-2dfe598c3fcd"),
        ("a?b#c", "a%3Fb%23c"),
        ("x y", "x%20y"),
        ("../../runtime/init/error", "%2E%2E%2F%2E%2E%2Fruntime%2Finit%2Ferror"),
        ("..", "%2E%2E"),
        ("%41", "%2541"),
        ("caf\u00e9", "caf%C3%A9"),
    ],
)
def test_a_request_id_is_one_percent_encoded_path_segment(request_id: str, segment: str) -> None:
    """The id goes into /response and /error paths as one segment, encoded."""
    assert path_segment(request_id) == segment
    assert response_request(request_id, b"").path == f"{RUNTIME}/invocation/{segment}/response"
    error = error_request(request_id, InvocationError("E", "m"))
    assert error.path == f"{RUNTIME}/invocation/{segment}/error"
    assert json.loads(error.body)["requestId"] == request_id


@given(st.text(min_size=1, max_size=40))
def test_any_request_id_gives_a_path_of_url_safe_characters(request_id: str) -> None:
    """Whatever the id, the segment holds no character a URL would read as structure."""
    segment = path_segment(request_id)
    assert re.fullmatch(r"(?:[A-Za-z0-9_~-]|%[0-9A-F]{2})+", segment)


def test_parse_next_empty_trace_id_is_none() -> None:
    """An empty trace header is no trace id (the handler's variable is removed)."""
    assert parse_next(next_answer(lambda_runtime_trace_id="")).trace_id is None


@pytest.mark.parametrize("status", [204, 403, 404, 500, 502])
def test_parse_next_other_status_is_unexpected(status: int) -> None:
    """Anything but 200 from /next is UnexpectedStatus naming the call."""
    with pytest.raises(UnexpectedStatus) as caught:
        parse_next(answer(status, {}, b'{"errorType":"X"}'))
    assert (caught.value.call, caught.value.status) == ("next", status)
    assert "Runtime API next" in str(caught.value)
    assert '{"errorType":"X"}' in str(caught.value)


# -- post_outcome ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "status", "outcome"),
    [
        ("response", 202, PostOutcome.ACCEPTED),
        ("error", 200, PostOutcome.ACCEPTED),
        ("init/error", 202, PostOutcome.ACCEPTED),
        ("response", 410, PostOutcome.LATE),
        ("error", 410, PostOutcome.LATE),
        ("response", 413, PostOutcome.TOO_LARGE),
        ("error", 413, PostOutcome.REFUSED),
        ("response", 400, PostOutcome.REFUSED),
        ("error", 403, PostOutcome.REFUSED),
        ("response", 404, PostOutcome.REFUSED),
        ("error", 404, PostOutcome.REFUSED),
        ("init/error", 404, PostOutcome.REFUSED),
        ("response", 429, PostOutcome.REFUSED),
    ],
)
def test_post_outcome_table(call: str, status: int, outcome: PostOutcome) -> None:
    """2xx accepted, 410 late, 413 on /response too large, any other 4xx refused."""
    assert post_outcome(call, answer(status)) is outcome


@pytest.mark.parametrize("call", ["response", "error", "init/error"])
@pytest.mark.parametrize("status", [500, 502, 301, 600])
def test_post_outcome_fatal_statuses_name_the_call(call: str, status: int) -> None:
    """500 (and any status with no rule) is UnexpectedStatus naming the call."""
    with pytest.raises(UnexpectedStatus) as caught:
        post_outcome(call, answer(status, body=b"oops"))
    assert (caught.value.call, caught.value.status, caught.value.body) == (call, status, b"oops")
    assert f"Runtime API {call}: unexpected status {status}" in str(caught.value)
