"""Property tests: whatever the Runtime API's headers say, parsing them into an
Invocation and a Context raises nothing but the documented errors."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_bulkhead._context import FunctionMeta, build_context
from lambda_bulkhead._errors import InvocationError, MissingRequestId
from lambda_bulkhead.runtime_api._protocol import Response, parse_next

HEADERS = (
    "lambda-runtime-aws-request-id",
    "lambda-runtime-deadline-ms",
    "lambda-runtime-invoked-function-arn",
    "lambda-runtime-trace-id",
    "lambda-runtime-client-context",
    "lambda-runtime-cognito-identity",
    "lambda-runtime-aws-tenant-id",
    "lambda-runtime-invocation-id",
    "content-type",
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
header_values = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    json_values.map(json.dumps),
    st.sampled_from(["", " ", "{", "null", "[]", "{}", "12abc", "-1", "1e3"]),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(HEADERS), header_values), st.binary(max_size=64))
def test_any_headers_parse_or_raise_only_documented_errors(
    headers: dict[str, str], body: bytes
) -> None:
    """parse_next + build_context: an Invocation and a Context, MissingRequestId
    (no id), or Runtime.UnmarshalError (a context header that is not a JSON object)."""
    try:
        invocation = parse_next(Response(200, headers, body))
    except MissingRequestId:
        assert not headers.get("lambda-runtime-aws-request-id")
        return
    assert invocation.request_id == headers["lambda-runtime-aws-request-id"]
    assert invocation.payload == body
    assert isinstance(invocation.deadline_ms, int)
    failure: InvocationError | None = None
    try:
        context = build_context(invocation, FunctionMeta(function_name="f"))
    except InvocationError as error:
        failure = error
    if failure is not None:
        assert failure.error_type == "Runtime.UnmarshalError"
        assert "Lambda-Runtime-" in failure.error_message
        return
    assert context.aws_request_id == invocation.request_id
    assert context.get_remaining_time_in_millis() >= 0
    if invocation.client_context:
        assert context.client_context is not None
    if invocation.cognito_identity:
        assert context.identity is not None
