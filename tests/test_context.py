"""``Context``: built from an ``Invocation`` and the function's environment, with
the official Python runtime's attribute names and objects."""

from __future__ import annotations

import json
import time

import pytest

from lambda_bulkhead import ClientContext, CognitoIdentity, Context, Invocation, InvocationError
from lambda_bulkhead._context import Client, FunctionMeta, build_context

ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "orders",
    "AWS_LAMBDA_FUNCTION_VERSION": "7",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/21/[7]abc",
}

CLIENT_CONTEXT = {
    "client": {
        "installation_id": "inst-1",
        "app_title": "Shop",
        "app_version_name": "1.2",
        "app_version_code": "12",
        "app_package_name": "com.example.shop",
    },
    "custom": {"cart": [1, 2]},
    "env": {"platform": "Android", "locale": "en_GB"},
}


def invocation(**changes: object) -> Invocation:
    base = Invocation(
        request_id="req-1",
        payload=b"{}",
        deadline_ms=1_700_000_005_000,
        invoked_function_arn="arn:aws:lambda:us-east-1:1:function:orders",
        trace_id="Root=1-a-b",
        client_context=json.dumps(CLIENT_CONTEXT),
        cognito_identity=json.dumps(
            {"cognitoIdentityId": "us-east-1:id", "cognitoIdentityPoolId": "us-east-1:pool"}
        ),
        tenant_id="tenant-1",
        invocation_id="nonce-1",
        content_type="application/json",
    )
    return base._replace(**changes)  # type: ignore[arg-type]


def test_function_meta_reads_the_lambda_environment() -> None:
    """FunctionMeta takes name, version, memory and log names from the environment."""
    assert FunctionMeta.from_environ(ENV) == FunctionMeta(
        function_name="orders", function_version="7", memory_limit_in_mb="512",
        log_group_name="/aws/lambda/orders", log_stream_name="2026/11/21/[7]abc",
    )
    assert FunctionMeta.from_environ({}) == FunctionMeta()


@pytest.mark.parametrize(
    ("value", "seconds"), [("3", 3.0), ("0.5", 0.5), ("", None), ("x", None), ("0", None),
                           ("-1", None), ("inf", None)],
)
def test_function_meta_reads_the_timeout_where_it_is_set(value: str, seconds: float | None) -> None:
    """AWS_LAMBDA_FUNCTION_TIMEOUT (the RIE's, the emulator's): positive seconds or None."""
    assert FunctionMeta.from_environ({"AWS_LAMBDA_FUNCTION_TIMEOUT": value}).timeout_s == seconds


def test_build_context_has_the_official_attribute_names() -> None:
    """Every attribute a handler for the official runtime reads is there, same name and type."""
    context = build_context(invocation(), FunctionMeta.from_environ(ENV))
    assert context.aws_request_id == "req-1"
    assert context.invoked_function_arn == "arn:aws:lambda:us-east-1:1:function:orders"
    assert context.function_name == "orders"
    assert context.function_version == "7"
    assert context.memory_limit_in_mb == "512"  # a string, as in the official runtime
    assert context.log_group_name == "/aws/lambda/orders"
    assert context.log_stream_name == "2026/11/21/[7]abc"
    assert context.deadline_ms == 1_700_000_005_000  # an extra: the official one is private
    assert context.trace_id == "Root=1-a-b"
    assert context.tenant_id == "tenant-1"
    assert context.invocation_id == "nonce-1"


def test_client_context_objects() -> None:
    """client_context.client.*, .custom and .env as the official runtime exposes them."""
    context = build_context(invocation(), FunctionMeta())
    client_context = context.client_context
    assert isinstance(client_context, ClientContext)
    assert (client_context.custom, client_context.env) == (
        {"cart": [1, 2]}, {"platform": "Android", "locale": "en_GB"}
    )
    client = client_context.client
    assert isinstance(client, Client)
    assert (client.installation_id, client.app_title, client.app_version_name,
            client.app_version_code, client.app_package_name) == (
        "inst-1", "Shop", "1.2", "12", "com.example.shop"
    )


def test_client_context_without_client() -> None:
    """A client context with only custom data has client None."""
    context = build_context(invocation(client_context='{"custom": {"a": 1}}'), FunctionMeta())
    assert context.client_context is not None
    assert (context.client_context.client, context.client_context.custom,
            context.client_context.env) == (None, {"a": 1}, None)


def test_identity_object() -> None:
    """identity.cognito_identity_id and cognito_identity_pool_id from the Cognito header."""
    identity = build_context(invocation(), FunctionMeta()).identity
    assert (identity.cognito_identity_id, identity.cognito_identity_pool_id) == (
        "us-east-1:id", "us-east-1:pool"
    )


def test_absent_headers_give_an_empty_identity_and_no_client_context() -> None:
    """No Cognito header: identity is still an object, its fields None (so
    ``context.identity.cognito_identity_id`` works); no client context header:
    client_context is None.  Both as in the official runtime."""
    context = build_context(
        invocation(client_context=None, cognito_identity=None, trace_id=None), FunctionMeta()
    )
    assert isinstance(context.identity, CognitoIdentity)
    assert context.identity.cognito_identity_id is None
    assert context.identity.cognito_identity_pool_id is None
    assert context.client_context is None
    assert context.trace_id is None


def test_w3c_trace_context_comes_out_of_the_client_context() -> None:
    """The client context's w3c object: its allow-listed string fields from
    context.w3c(), and no longer part of the client context."""
    raw = {"custom": {"a": 1},
           "w3c": {"traceparent": "00-1-2-01", "baggage": "k=v", "tracestate": 3, "x": "y"}}
    context = build_context(invocation(client_context=json.dumps(raw)), FunctionMeta())
    assert context.w3c() == {"traceparent": "00-1-2-01", "baggage": "k=v"}
    context.w3c()["traceparent"] = "changed"
    assert context.w3c()["traceparent"] == "00-1-2-01"
    assert build_context(invocation(client_context=None), FunctionMeta()).w3c() == {}


def test_libraries_can_attach_attributes_and_read_vars() -> None:
    """setattr(context, ...) works (tracers and error reporters attach their own
    attributes) and vars(context) lists the attributes."""
    context = build_context(invocation(), FunctionMeta.from_environ(ENV))
    setattr(context, "x", 1)  # noqa: B010 - the way libraries do it
    context.aws_request_id = "changed"
    assert vars(context)["x"] == 1
    assert vars(context)["aws_request_id"] == "changed"
    assert vars(context)["function_name"] == "orders"


def test_context_log_writes_the_message_as_it_is(capfd: pytest.CaptureFixture[str]) -> None:
    """context.log(msg) writes str(msg) to stdout, no newline added, flushed."""
    context = build_context(invocation(), FunctionMeta())
    context.log("hello ")
    context.log(42)
    assert capfd.readouterr().out == "hello 42"


@pytest.mark.parametrize(
    ("field", "header", "text", "why"),
    [
        ("client_context", "Lambda-Runtime-Client-Context", "{not json", "Expecting"),
        ("client_context", "Lambda-Runtime-Client-Context", "[1, 2]", "not a JSON object"),
        ("cognito_identity", "Lambda-Runtime-Cognito-Identity", "[1,", "Expecting"),
        ("cognito_identity", "Lambda-Runtime-Cognito-Identity", '"id"', "not a JSON object"),
    ],
)
def test_bad_context_json_is_an_unmarshal_error(
    field: str, header: str, text: str, why: str
) -> None:
    """A client context or identity that is not a JSON object is Runtime.UnmarshalError."""
    with pytest.raises(InvocationError) as caught:
        build_context(invocation(**{field: text}), FunctionMeta())
    assert caught.value.error_type == "Runtime.UnmarshalError"
    assert caught.value.error_message.startswith(f"Unable to unmarshal {header}: ")
    assert why in caught.value.error_message


def test_remaining_time_counts_down_to_zero() -> None:
    """get_remaining_time_in_millis is deadline minus now, never negative."""
    now_ms = int(time.time() * 1000)
    soon = Context(aws_request_id="r", deadline_ms=now_ms + 5000, invoked_function_arn="a")
    assert 4000 < soon.get_remaining_time_in_millis() <= 5000
    past = Context(aws_request_id="r", deadline_ms=now_ms - 1, invoked_function_arn="a")
    assert past.get_remaining_time_in_millis() == 0


def test_remaining_time_with_the_real_clock() -> None:
    """With the wall clock, a deadline 60 s away leaves at most 60000 ms (and not much less)."""
    deadline = int(time.time() * 1000) + 60_000
    context = build_context(invocation(deadline_ms=deadline), FunctionMeta())
    assert 50_000 < context.get_remaining_time_in_millis() <= 60_000
