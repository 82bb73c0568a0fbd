"""Proxy responses for each HTTP integration, and partial batch responses."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples import http_api, sqs_batch
from lambda_bulkhead import events, responses
from lambda_bulkhead.responses import ProxyResponse, ResponseTarget, proxy_response

EXAMPLE_EVENTS = Path(__file__).parent.parent / "examples" / "events"
FIXTURES = Path(__file__).parent / "fixtures" / "events"
TARGETS: tuple[ResponseTarget, ...] = get_args(ResponseTarget)


def load(path: Path) -> Any:
    """A JSON event file, parsed."""
    return json.loads(path.read_text())


# -- proxy_response -----------------------------------------------------------------------


def test_text_response_default_target() -> None:
    """The default target is payload format 2.0, shared by HTTP APIs and function URLs."""
    resp = proxy_response(200, "hi", headers={"content-type": "text/plain"})
    wire = {
        "statusCode": 200,
        "headers": {"content-type": "text/plain"},
        "body": "hi",
        "isBase64Encoded": False,
    }
    assert resp.to_dict() == wire
    assert resp.to_dict("function-url") == wire


def test_bytes_body_is_base64_encoded() -> None:
    """A bytes body is sent base64-encoded and flagged so."""
    resp = proxy_response(200, b"\x89PNG\r\n")
    assert resp.is_base64_encoded
    assert base64.b64decode(resp.body) == b"\x89PNG\r\n"
    assert resp.to_dict()["isBase64Encoded"] is True


def test_is_base64_overrides() -> None:
    """``is_base64`` marks pre-encoded text, or sends bytes as UTF-8 text."""
    assert proxy_response(200, "aGk=", is_base64=True).to_dict()["isBase64Encoded"] is True
    as_text = proxy_response(200, "héllo".encode(), is_base64=False)
    assert (as_text.body, as_text.is_base64_encoded) == ("héllo", False)
    assert proxy_response(200, b"x", is_base64=True).body == "eA=="


def test_empty_response() -> None:
    """A status alone makes an empty-bodied response."""
    assert proxy_response(204).to_dict("api-gateway-v1") == {
        "statusCode": 204,
        "headers": {},
        "body": "",
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize("status", [99, 600, -1])
def test_status_out_of_range(status: int) -> None:
    """A status outside 100-599 is refused when the response is made."""
    with pytest.raises(ValueError, match="HTTP status must be 100-599"):
        proxy_response(status)


def test_unknown_target() -> None:
    """A target outside ResponseTarget is refused by name."""
    with pytest.raises(ValueError, match="unknown response target 'lambda'"):
        proxy_response(200).to_dict("lambda")  # type: ignore[arg-type]


# -- cookies per target -------------------------------------------------------------


COOKIES = ("a=1; Path=/", "b=2; HttpOnly")


def test_cookies_v2() -> None:
    """Payload 2.0 sends cookies in their own list."""
    assert proxy_response(200, cookies=COOKIES).to_dict()["cookies"] == list(COOKIES)


def test_cookies_v1() -> None:
    """REST APIs send cookies as multi-value Set-Cookie headers."""
    wire = proxy_response(200, headers={"x": "1"}, cookies=COOKIES).to_dict("api-gateway-v1")
    assert wire["headers"] == {"x": "1"}
    assert wire["multiValueHeaders"] == {"Set-Cookie": list(COOKIES)}
    assert "cookies" not in wire


def test_single_cookie_as_str() -> None:
    """One ``Set-Cookie`` value may be given as a plain str."""
    assert proxy_response(200, cookies="a=1").cookies == ("a=1",)


def test_alb_single_value() -> None:
    """ALB responses carry a status description and at most one Set-Cookie header."""
    wire = proxy_response(404, "gone", cookies="a=1").to_dict("alb")
    assert wire == {
        "statusCode": 404,
        "statusDescription": "404 Not Found",
        "headers": {"Set-Cookie": "a=1"},
        "body": "gone",
        "isBase64Encoded": False,
    }


def test_alb_single_value_refuses_two_cookies() -> None:
    """Two cookies cannot be sent without multi-value headers."""
    with pytest.raises(ValueError, match="alb-multi-value"):
        proxy_response(200, cookies=COOKIES).to_dict("alb")


def test_alb_multi_value() -> None:
    """Multi-value ALB responses put every header, cookies included, in lists."""
    wire = proxy_response(200, "ok", headers={"x": "1"}, cookies=COOKIES).to_dict("alb-multi-value")
    assert wire == {
        "statusCode": 200,
        "statusDescription": "200 OK",
        "multiValueHeaders": {"x": ["1"], "Set-Cookie": list(COOKIES)},
        "body": "ok",
        "isBase64Encoded": False,
    }


def test_status_description_of_unregistered_code() -> None:
    """A status code with no registered phrase is described by its number."""
    assert proxy_response(299).to_dict("alb")["statusDescription"] == "299"


# -- json_response and JSON encoding ------------------------------------------------------


def test_json_response() -> None:
    """``json_response`` encodes the value and sets the content type."""
    resp = responses.json_response(201, {"id": 7}, cookies="a=1")
    assert json.loads(resp.body) == {"id": 7}
    assert resp.headers == {"content-type": "application/json"}
    assert resp.cookies == ("a=1",)


def test_json_response_keeps_caller_content_type() -> None:
    """A caller's content type, in any case, wins over the default."""
    resp = responses.json_response(200, [], headers={"Content-Type": "application/problem+json"})
    assert resp.headers == {"Content-Type": "application/problem+json"}


def test_to_json() -> None:
    """``to_json`` is ``to_dict`` as JSON text."""
    resp = proxy_response(200, b"\x00", cookies=COOKIES)
    for target in ("api-gateway-v1", "api-gateway-v2", "alb-multi-value"):
        assert json.loads(resp.to_json(target)) == resp.to_dict(target)


@given(
    status=st.integers(min_value=100, max_value=599),
    body=st.text() | st.binary(),
    headers=st.dictionaries(st.text(min_size=1), st.text(), max_size=3),
    cookie=st.text(),
    target=st.sampled_from(TARGETS),
)
def test_every_target_is_json_serialisable(
    status: int, body: str | bytes, headers: dict[str, str], cookie: str, target: ResponseTarget
) -> None:
    """What a handler returns from ``to_dict`` always survives ``json.dumps``."""
    resp = proxy_response(status, body, headers=headers, cookies=cookie)
    wire = json.loads(json.dumps(resp.to_dict(target)))
    assert wire["statusCode"] == status
    decoded = base64.b64decode(wire["body"]) if wire["isBase64Encoded"] else wire["body"]
    assert decoded == body


def test_encoder_for_a_typed_loop() -> None:
    """``ProxyResponse.to_dict`` serves as the encoder of ``start_json``."""
    encode = ProxyResponse.to_dict
    assert encode(proxy_response(200, "x"))["body"] == "x"


# -- answering each request with its own target ---------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "envelope", "shape"),
    [
        ("api_gateway_v1.json", events.ApiGatewayV1Request, {"headers", "multiValueHeaders"}),
        ("api_gateway_v2.json", events.ApiGatewayV2Request, {"headers", "cookies"}),
        ("function_url.json", events.FunctionUrlRequest, {"headers", "cookies"}),
        ("alb.json", events.AlbRequest, {"statusDescription", "headers"}),
        ("alb_multi_value.json", events.AlbRequest, {"statusDescription", "multiValueHeaders"}),
    ],
)
def test_request_names_its_response_target(
    fixture: str, envelope: type[Any], shape: set[str]
) -> None:
    """Each request's ``response_target`` gives the response shape its integration needs."""
    request = envelope.decode(load(FIXTURES / fixture))
    wire = proxy_response(200, "ok", cookies="a=1").to_dict(request.response_target)
    assert set(wire) == {"statusCode", "body", "isBase64Encoded"} | shape


# -- batch_item_failures ----------------------------------------------------------------


def test_batch_item_failures() -> None:
    """Failed ids become ``batchItemFailures`` entries in order."""
    assert responses.batch_item_failures(["m1", "m2"]) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    }


def test_batch_item_failures_empty() -> None:
    """No failures is an empty list: the whole batch succeeded."""
    assert responses.batch_item_failures([]) == {"batchItemFailures": []}


def test_batch_item_failures_refuses_a_single_str() -> None:
    """One id given as a bare str would be split into characters, so it is refused."""
    with pytest.raises(TypeError, match="not one str"):
        responses.batch_item_failures("m1")


def test_batch_item_failures_from_stream_records() -> None:
    """Kinesis and DynamoDB records are reported by sequence number."""
    kinesis = events.KinesisEvent.decode(load(FIXTURES / "kinesis.json"))
    failures = responses.batch_item_failures(r.sequence_number for r in kinesis.records)
    assert failures["batchItemFailures"][0]["itemIdentifier"] == kinesis.records[0].sequence_number


# -- the shipped examples ----------------------------------------------------------------


def test_http_api_example() -> None:
    """The HTTP API example greets the caller of its shipped event and counts the visit."""
    wire = http_api.handler(load(EXAMPLE_EVENTS / "http_api.json"), None)
    assert wire["statusCode"] == 200
    assert json.loads(wire["body"])["message"] == "hello, Ada"
    assert wire["cookies"] == ["visits=3; Path=/; Max-Age=86400; HttpOnly; Secure"]
    json.dumps(wire)


def test_http_api_example_echo_rejects_non_json() -> None:
    """The echo route answers 400 for a body that is not JSON."""
    event = load(EXAMPLE_EVENTS / "http_api.json")
    event.update(routeKey="POST /echo", body="{not json")
    assert http_api.handler(event, None)["statusCode"] == 400


def test_sqs_batch_example() -> None:
    """The SQS example fails the message that is not JSON and the one asking to fail."""
    assert sqs_batch.handler(load(EXAMPLE_EVENTS / "sqs_batch.json"), None) == {
        "batchItemFailures": [
            {"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"},
            {"itemIdentifier": "6a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"},
        ]
    }


def test_all_is_complete() -> None:
    """``__all__`` lists exactly the public names the module defines (and
    HttpPrelude, defined beside the runtime that sends it)."""
    public = {
        name
        for name, value in vars(responses).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == responses.__name__
    }
    assert set(responses.__all__) == public | {"ResponseTarget", "HttpPrelude"}
