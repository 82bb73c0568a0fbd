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
    assert context.deadline_ms == 1_700_000_005_000
    assert context.trace_id == "Root=1-a-b"
    assert context.tenant_id == "tenant-1"
    assert context.invocation_id == "nonce-1"


def test_seed_names_are_aliases() -> None:
    """request_id and cognito_identity (the seed API's names) alias the official ones."""
    context = build_context(invocation(), FunctionMeta())
    assert context.request_id == context.aws_request_id
    assert context.cognito_identity is context.identity


def test_client_context_objects() -> None:
    """client_context.client.*, .custom and .env as the official runtime exposes them."""
    context = build_context(invocation(), FunctionMeta())
    assert context.client_context == ClientContext(
        client=Client(
            installation_id="inst-1", app_title="Shop", app_version_name="1.2",
            app_version_code="12", app_package_name="com.example.shop",
        ),
        custom={"cart": [1, 2]},
        env={"platform": "Android", "locale": "en_GB"},
    )
    assert context.client_context.client is not None
    assert context.client_context.client.app_title == "Shop"


def test_client_context_without_client() -> None:
    """A client context with only custom data has client None."""
    context = build_context(invocation(client_context='{"custom": {"a": 1}}'), FunctionMeta())
    assert context.client_context == ClientContext(client=None, custom={"a": 1}, env=None)


def test_identity_object() -> None:
    """identity.cognito_identity_id and cognito_identity_pool_id from the Cognito header."""
    context = build_context(invocation(), FunctionMeta())
    assert context.identity == CognitoIdentity(
        cognito_identity_id="us-east-1:id", cognito_identity_pool_id="us-east-1:pool"
    )


def test_absent_headers_give_none() -> None:
    """No client context or Cognito header: both attributes are None."""
    context = build_context(
        invocation(client_context=None, cognito_identity=None, trace_id=None), FunctionMeta()
    )
    assert (context.client_context, context.identity, context.trace_id) == (None, None, None)


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


def test_context_is_frozen() -> None:
    """A handler cannot change its context."""
    context = build_context(invocation(), FunctionMeta())
    with pytest.raises(AttributeError):
        context.aws_request_id = "other"  # type: ignore[misc]
