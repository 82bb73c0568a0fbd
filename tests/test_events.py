"""Typed event envelopes: decoding AWS's documented shapes and naming what does not fit."""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_bulkhead import events
from lambda_bulkhead._errors import InvalidEvent

FIXTURES = Path(__file__).parent / "fixtures" / "events"

ENVELOPE_OF: dict[str, type[Any]] = {
    "api_gateway_v1.json": events.ApiGatewayV1Request,
    "api_gateway_v2.json": events.ApiGatewayV2Request,
    "function_url.json": events.FunctionUrlRequest,
    "alb.json": events.AlbRequest,
    "alb_multi_value.json": events.AlbRequest,
    "sqs.json": events.SqsEvent,
    "sns.json": events.SnsEvent,
    "s3.json": events.S3Event,
    "eventbridge.json": events.EventBridgeEvent,
    "scheduled_event.json": events.ScheduledEvent,
    "dynamodb.json": events.DynamoDbStreamEvent,
    "kinesis.json": events.KinesisEvent,
    "cloudwatch_logs.json": events.CloudWatchLogsEvent,
}
ENVELOPES = sorted(set(ENVELOPE_OF.values()), key=lambda envelope: envelope.__name__)


def load(name: str) -> Any:
    """A fixture event, parsed."""
    return json.loads((FIXTURES / name).read_text())


def cloudwatch_logs_event(document: object) -> dict[str, Any]:
    """A CloudWatch Logs subscription event carrying ``document``."""
    packed = gzip.compress(json.dumps(document).encode(), mtime=0)
    return {"awslogs": {"data": base64.b64encode(packed).decode()}}


def cloudwatch_logs_document() -> Any:
    """The JSON packed inside the CloudWatch Logs fixture."""
    data = load("cloudwatch_logs.json")["awslogs"]["data"]
    return json.loads(gzip.decompress(base64.b64decode(data)))


def exercise(decoded: object) -> None:
    """Call every on-request decoding method the value (or its records) has."""
    for value in [decoded, *getattr(decoded, "records", ())]:
        for method in ("decoded_body", "json", "unpack"):
            if hasattr(value, method):
                getattr(value, method)()


# -- API Gateway REST (payload 1.0) ----------------------------------------------


def test_api_gateway_v1_fields() -> None:
    """A REST proxy event decodes method, paths, parameters, context and body."""
    req = events.ApiGatewayV1Request.decode(load("api_gateway_v1.json"))
    assert (req.method, req.path, req.resource) == ("POST", "/pets/42", "/pets/{petId}")
    assert req.path_params == {"petId": "42"}
    assert req.stage_variables == {"tableName": "pets-prod"}
    assert (req.request_id, req.stage) == ("c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "Prod")
    assert req.source_ip == "198.51.100.7"
    assert req.request_context["resourceId"] == "2gxmpl"
    assert req.json() == {"name": "Rex", "kind": "dog"}
    assert req.response_target == "api-gateway-v1"


def test_api_gateway_v1_multi_values() -> None:
    """Headers and query parameters keep every value from the multi-value forms."""
    req = events.ApiGatewayV1Request.decode(load("api_gateway_v1.json"))
    assert req.headers["x-custom"] == "second"
    assert req.headers.get_all("X-CUSTOM") == ("first", "second")
    assert req.query_params["tag"] == "cute"
    assert req.query_params.get_all("tag") == ("fluffy", "cute")


def test_api_gateway_v1_single_value_forms() -> None:
    """Without multi-value forms the single-value headers and parameters are used."""
    event = load("api_gateway_v1.json")
    event["multiValueHeaders"] = None
    del event["multiValueQueryStringParameters"]
    req = events.ApiGatewayV1Request.decode(event)
    assert req.headers.get_all("x-custom") == ("second",)
    assert req.query_params.get_all("tag") == ("cute",)


def test_api_gateway_v1_cookies_from_cookie_header() -> None:
    """REST API cookies are parsed from the Cookie header."""
    req = events.ApiGatewayV1Request.decode(load("api_gateway_v1.json"))
    assert req.cookies == {"session": "abc123", "theme": "dark"}


def test_api_gateway_v1_console_test_event() -> None:
    """The console's test event, with nulls everywhere, decodes to empty collections."""
    event = {
        "httpMethod": "GET",
        "path": "/",
        "headers": None,
        "multiValueHeaders": None,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": None,
        "body": None,
        "isBase64Encoded": None,
    }
    req = events.ApiGatewayV1Request.decode(event)
    assert (len(req.headers), len(req.query_params), req.cookies) == (0, 0, {})
    assert (req.body, req.decoded_body(), req.is_base64_encoded) == (None, b"", False)
    assert req.request_id is None


def test_seed_api_gateway_event() -> None:
    """The API Gateway example of the seed notes decodes."""
    event = {
        "resource": "/",
        "path": "/",
        "httpMethod": "GET",
        "requestContext": {"resourcePath": "/", "httpMethod": "GET", "path": "/Prod/"},
        "headers": {
            "accept": "text/html",
            "Host": "70ixmpl4fl.execute-api.us-east-2.amazonaws.com",
        },
        "multiValueHeaders": {"accept": ["text/html"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "body": None,
        "isBase64Encoded": False,
    }
    req = events.ApiGatewayV1Request.decode(event)
    assert (req.method, req.path, req.headers["Accept"]) == ("GET", "/", "text/html")


# -- API Gateway HTTP API (payload 2.0) and function URLs ------------------------


def test_api_gateway_v2_fields() -> None:
    """An HTTP API event decodes method, route, parameters, cookies and context."""
    req = events.ApiGatewayV2Request.decode(load("api_gateway_v2.json"))
    assert (req.method, req.path, req.route_key) == ("GET", "/pets/42", "GET /pets/{petId}")
    assert req.path_params == {"petId": "42"}
    assert req.stage_variables == {"tableName": "pets-prod"}
    assert (req.request_id, req.stage, req.source_ip) == (
        "JKJaXmPLvHcESHA=",
        "$default",
        "198.51.100.7",
    )
    assert req.cookies == {"session": "abc123", "theme": "dark"}
    assert req.headers["X-Custom"] == "first,second"
    assert req.request_context["authorizer"]["jwt"]["scopes"] == ["pets:read"]
    assert (req.body, req.decoded_body()) == (None, b"")
    assert req.response_target == "api-gateway-v2"


def test_api_gateway_v2_query_from_raw_query_string() -> None:
    """Repeated parameters keep every value; values are URL-decoded; blanks are kept."""
    req = events.ApiGatewayV2Request.decode(load("api_gateway_v2.json"))
    assert req.query_params.get_all("tag") == ("fluffy", "cute")
    assert req.query_params["q"] == "a b+c"
    assert req.query_params["empty"] == ""
    assert req.raw_query_string == "tag=fluffy&tag=cute&q=a%20b%2Bc&empty="


def test_api_gateway_v2_query_without_raw_query_string() -> None:
    """Without ``rawQueryString`` the parameters come from ``queryStringParameters``."""
    event = load("api_gateway_v2.json")
    del event["rawQueryString"]
    req = events.ApiGatewayV2Request.decode(event)
    assert req.query_params.get_all("tag") == ("fluffy,cute",)


def test_function_url_request() -> None:
    """A function URL event decodes under its own name and answers as a function URL."""
    req = events.FunctionUrlRequest.decode(load("function_url.json"))
    assert isinstance(req, events.FunctionUrlRequest)
    assert (req.method, req.path, req.route_key) == ("POST", "/upload", "$default")
    assert req.decoded_body() == b"\x00\x01\x02\x03\x04\xff"
    assert req.query_params == events.QueryParams()
    assert req.response_target == "function-url"
    assert repr(req).startswith("FunctionUrlRequest(")


def test_missing_http_method_names_the_path() -> None:
    """The error for a missing method names ``requestContext.http.method``."""
    event = load("api_gateway_v2.json")
    del event["requestContext"]["http"]["method"]
    with pytest.raises(InvalidEvent) as caught:
        events.ApiGatewayV2Request.decode(event)
    assert str(caught.value) == "ApiGatewayV2Request: field 'requestContext.http.method' missing"
    assert caught.value.error_type == "Runtime.InvalidEvent"


def test_v1_event_given_to_v2_decoder() -> None:
    """A REST event handed to the HTTP API decoder is rejected, not misread."""
    with pytest.raises(InvalidEvent, match=r"field 'requestContext\.http' missing"):
        events.ApiGatewayV2Request.decode(load("api_gateway_v1.json"))


def test_error_names_the_subclass() -> None:
    """Function URL errors are reported under the function URL envelope's name."""
    with pytest.raises(InvalidEvent, match=r"^FunctionUrlRequest: field 'rawPath' missing$"):
        events.FunctionUrlRequest.decode({"requestContext": {"http": {"method": "GET"}}})


# -- ALB -----------------------------------------------------------------------


def test_alb_single_value() -> None:
    """An ALB event without multi-value headers decodes in single-value mode."""
    req = events.AlbRequest.decode(load("alb.json"))
    assert (req.method, req.path, req.multi_value) == ("GET", "/lambda", False)
    assert req.target_group_arn is not None
    assert req.target_group_arn.endswith("49e9d65c45c6791a")
    assert req.query_params["q"] == "café au lait"
    assert req.cookies == {"session": "abc123", "theme": "dark"}
    assert (req.body, req.decoded_body()) == ("", b"")
    assert req.response_target == "alb"


def test_alb_multi_value() -> None:
    """An ALB event with multi-value headers keeps every value and decodes the body."""
    req = events.AlbRequest.decode(load("alb_multi_value.json"))
    assert req.multi_value
    assert req.headers.get_all("x-custom") == ("first", "second")
    assert req.query_params.get_all("tag") == ("fluffy", "cute")
    assert req.query_params["q"] == "café au lait"
    assert req.cookies == {"session": "abc123", "theme": "dark"}
    assert req.decoded_body() == b"hello, ALB"
    assert req.response_target == "alb-multi-value"


# -- HTTP bodies -----------------------------------------------------------------


def test_bad_base64_body() -> None:
    """A body flagged base64 that is not base64 raises naming ``body``."""
    event = load("function_url.json")
    event["body"] = "not base64!"
    req = events.FunctionUrlRequest.decode(event)
    with pytest.raises(
        InvalidEvent, match=r"^FunctionUrlRequest: field 'body' is not valid base64"
    ):
        req.decoded_body()


def test_json_of_base64_body() -> None:
    """``json()`` decodes base64 first when the body is flagged so."""
    event = load("api_gateway_v2.json")
    event["body"] = base64.b64encode(b'{"a": [1, 2]}').decode()
    event["isBase64Encoded"] = True
    assert events.ApiGatewayV2Request.decode(event).json() == {"a": [1, 2]}


def test_json_of_missing_or_bad_body() -> None:
    """``json()`` names ``body`` when it is absent or not JSON."""
    event = load("api_gateway_v2.json")
    with pytest.raises(InvalidEvent, match=r"field 'body' missing"):
        events.ApiGatewayV2Request.decode(event).json()
    event["body"] = "{"
    with pytest.raises(InvalidEvent, match=r"field 'body' is not JSON"):
        events.ApiGatewayV2Request.decode(event).json()


def test_body_with_lone_surrogate() -> None:
    """A body JSON decoded to a lone surrogate cannot become bytes: InvalidEvent."""
    event = load("api_gateway_v2.json")
    event["body"] = "\ud800"
    with pytest.raises(InvalidEvent, match=r"field 'body' is not valid Unicode text"):
        events.ApiGatewayV2Request.decode(event).decoded_body()


def test_deeply_nested_json_body() -> None:
    """A body nested past the parser's recursion limit is InvalidEvent, not RecursionError."""
    event = load("api_gateway_v2.json")
    event["body"] = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InvalidEvent, match=r"field 'body' is not JSON"):
        events.ApiGatewayV2Request.decode(event).json()


# -- Headers and query parameters --------------------------------------------------


def test_headers_are_case_insensitive_and_immutable() -> None:
    """Headers look up in any case, iterate lower-cased and refuse assignment."""
    headers = events.Headers({"Content-Type": "text/plain", "X-Multi": ["a", "b"]})
    assert headers["content-type"] == headers["CONTENT-TYPE"] == "text/plain"
    assert "X-MULTI" in headers
    assert not headers.__contains__(42)
    assert list(headers) == ["content-type", "x-multi"]
    assert headers.get_all("x-multi") == ("a", "b")
    assert headers.get_all("absent") == ()
    assert headers.get("absent") is None
    with pytest.raises(TypeError):
        headers["x"] = "y"  # type: ignore[index]


def test_headers_merge_names_differing_in_case() -> None:
    """Names that differ only in case are one header with all their values."""
    headers = events.Headers({"Accept": "a", "accept": ["b"]})
    assert (len(headers), headers.get_all("ACCEPT")) == (1, ("a", "b"))


def test_headers_equality_and_hash() -> None:
    """Equal headers hash alike, compare equal to a plain mapping of last values."""
    first = events.Headers({"A": ["1", "2"]})
    assert first == events.Headers({"a": ["1", "2"]})
    assert hash(first) == hash(events.Headers({"a": ["1", "2"]}))
    assert first != events.Headers({"a": ["2"]})
    assert first == {"a": "2"}
    assert first != events.QueryParams({"a": ["1", "2"]})
    assert repr(first) == "Headers({'a': ('1', '2')})"


def test_query_params_are_case_sensitive() -> None:
    """Query parameter names keep their case; a name with no values is absent."""
    params = events.QueryParams({"Tag": "x", "empty": []})
    assert "tag" not in params
    assert params["Tag"] == "x"
    assert "empty" not in params
    with pytest.raises(KeyError):
        params[1]  # type: ignore[index]


header_names = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
)


@given(st.dictionaries(header_names, st.lists(st.text(), min_size=1), max_size=5))
def test_headers_lookup_matches_lowercased_dict(values: dict[str, list[str]]) -> None:
    """Every header (an RFC 9110 token) is found under any casing of its name."""
    headers = events.Headers(values)
    for name in values:
        assert headers.get_all(name.upper()) == headers.get_all(name.lower())
        assert headers[name.swapcase()] == headers.get_all(name)[-1]


# -- SQS -----------------------------------------------------------------------------


def test_sqs_messages() -> None:
    """SQS messages decode with system and message attributes and a JSON body."""
    batch = events.SqsEvent.decode(load("sqs.json"))
    first, second = batch.records
    assert first.message_id == "059f36b4-87a3-44ab-83d2-661975830a7d"
    assert first.json() == {"orderId": 1001, "amount": 25.5}
    assert first.attributes["ApproximateReceiveCount"] == "1"
    assert first.message_attributes["tenant"] == events.SqsMessageAttribute(
        data_type="String", string_value="acme"
    )
    assert first.message_attributes["signature"].binary_value == b"\xde\xad\xbe\xef"
    assert first.event_source_arn == "arn:aws:sqs:us-east-2:123456789012:my-queue"
    assert second.body == "Test message."
    assert second.message_attributes == {}


def test_sqs_body_not_json_names_the_message() -> None:
    """A body that is not JSON raises naming the message and the field."""
    second = events.SqsEvent.decode(load("sqs.json")).records[1]
    with pytest.raises(InvalidEvent) as caught:
        second.json()
    assert str(caught.value).startswith(
        "SqsMessage 2e1424d4-f796-459a-8184-9c92662be6da: field 'body' is not JSON"
    )


def test_sqs_body_null() -> None:
    """A null body is a mistyped field, named with its record index."""
    event = load("sqs.json")
    event["Records"][1]["body"] = None
    with pytest.raises(InvalidEvent) as caught:
        events.SqsEvent.decode(event)
    assert str(caught.value) == "SqsEvent: field 'Records[1].body' must be a string, got null"


def test_seed_sqs_event() -> None:
    """The SQS example of the seed notes decodes."""
    record = {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": "Test message.",
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2",
    }
    batch = events.SqsEvent.decode({"Records": [record, record]})
    assert [m.body for m in batch.records] == ["Test message.", "Test message."]


# -- SNS, S3, EventBridge ------------------------------------------------------------


def test_sns_message() -> None:
    """An SNS record flattens ``Sns`` beside the subscription ARN."""
    (message,) = events.SnsEvent.decode(load("sns.json")).records
    assert message.topic_arn == "arn:aws:sns:us-east-1:123456789012:sns-lambda"
    assert message.subject is None
    assert message.json() == {"alarm": "HighCPU", "value": 97.5}
    assert message.message_attributes["Test"] == events.SnsMessageAttribute(
        type="String", value="TestString"
    )
    assert message.subscription_arn is not None
    assert message.subscription_arn.startswith("arn:aws:sns:us-east-1:123456789012:sns-lambda:")


def test_s3_records() -> None:
    """S3 keys are URL-decoded; deletions have no size."""
    created, removed = events.S3Event.decode(load("s3.json")).records
    assert created.key == "photos/2019/my cat(1).jpg"
    assert (created.bucket_name, created.size, created.event_name) == (
        "DOC-EXAMPLE-BUCKET",
        1305107,
        "ObjectCreated:Put",
    )
    assert (removed.key, removed.size, removed.etag) == ("tmp/report.csv", None, None)


def test_s3_size_must_be_an_integer() -> None:
    """A boolean size is not an integer."""
    event = load("s3.json")
    event["Records"][0]["s3"]["object"]["size"] = True
    with pytest.raises(InvalidEvent, match=r"'Records\[0\]\.s3\.object\.size' must be an integer"):
        events.S3Event.decode(event)


def test_eventbridge_event() -> None:
    """An EventBridge event keeps ``detail`` as sent."""
    event = events.EventBridgeEvent.decode(load("eventbridge.json"))
    assert event.detail_type == "EC2 Instance State-change Notification"
    assert event.detail == {"instance-id": "i-abcd1111", "state": "pending"}
    assert event.resources == ("arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111",)


def test_scheduled_event() -> None:
    """A scheduled event decodes as both a ScheduledEvent and an EventBridgeEvent."""
    event = events.ScheduledEvent.decode(load("scheduled_event.json"))
    assert isinstance(event, events.EventBridgeEvent)
    assert event.resources == ("arn:aws:events:us-east-2:123456789012:rule/my-schedule",)
    assert event.detail == {}


def test_scheduled_event_rejects_other_detail_types() -> None:
    """The scheduled-event decoder names the ``detail-type`` it did not expect."""
    with pytest.raises(InvalidEvent) as caught:
        events.ScheduledEvent.decode(load("eventbridge.json"))
    assert str(caught.value) == (
        "ScheduledEvent: field 'detail-type' is 'EC2 Instance State-change Notification', "
        "expected 'Scheduled Event'"
    )


# -- DynamoDB, Kinesis, CloudWatch Logs ---------------------------------------------------


def test_dynamodb_records() -> None:
    """Stream records flatten ``dynamodb``; images are present per event name."""
    inserted, modified, removed = events.DynamoDbStreamEvent.decode(load("dynamodb.json")).records
    assert (inserted.event_name, inserted.sequence_number) == ("INSERT", "111")
    assert inserted.keys == {"Id": {"N": "101"}}
    assert (inserted.old_image, inserted.size_bytes) == (None, 26)
    assert modified.approximate_creation_date_time == 1479499740.5
    assert modified.old_image == {"Message": {"S": "New item!"}, "Id": {"N": "101"}}
    assert removed.new_image is None
    assert removed.user_identity == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def test_dynamodb_huge_timestamp() -> None:
    """A number too large for a float is out of range, not an OverflowError."""
    event = load("dynamodb.json")
    event["Records"][0]["dynamodb"]["ApproximateCreationDateTime"] = 10**400
    with pytest.raises(InvalidEvent, match=r"ApproximateCreationDateTime' is out of range"):
        events.DynamoDbStreamEvent.decode(event)


def test_kinesis_records() -> None:
    """Kinesis data is base64-decoded up front; ``json()`` parses it."""
    text, reading = events.KinesisEvent.decode(load("kinesis.json")).records
    assert text.data == b"Hello, this is a test."
    assert text.partition_key == "1"
    assert text.approximate_arrival_timestamp == 1545084650.987
    assert reading.json() == {"temp": 21.5, "sensor": "a1"}
    with pytest.raises(InvalidEvent, match=r"^KinesisRecord shardId-000000000006:\d+: field"):
        text.json()


def test_kinesis_bad_base64() -> None:
    """Data that is not base64 is rejected at decode, naming the record."""
    event = load("kinesis.json")
    event["Records"][1]["kinesis"]["data"] = "%%%"
    with pytest.raises(InvalidEvent, match=r"'Records\[1\]\.kinesis\.data' is not valid base64"):
        events.KinesisEvent.decode(event)


def test_cloudwatch_logs_unpack() -> None:
    """``unpack()`` base64-decodes, gunzips and decodes the log events."""
    event = events.CloudWatchLogsEvent.decode(load("cloudwatch_logs.json"))
    logs = event.unpack()
    assert (logs.message_type, logs.log_group) == ("DATA_MESSAGE", "/aws/lambda/echo-nodejs")
    assert logs.subscription_filters == ("LambdaStream_cloudwatchlogs-node",)
    assert [e.timestamp for e in logs.log_events] == [1552518348220, 1552518348221]
    assert logs.log_events[1].message.startswith("END RequestId:")


def test_cloudwatch_logs_is_not_unpacked_eagerly() -> None:
    """Decoding does not touch the payload: a bad one fails only when unpacked."""
    event = events.CloudWatchLogsEvent.decode({"awslogs": {"data": "bm90IGd6aXA="}})
    with pytest.raises(
        InvalidEvent, match=r"^CloudWatchLogsEvent: field 'awslogs\.data' is not gzip"
    ):
        event.unpack()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("***", "is not valid base64"),
        (base64.b64encode(gzip.compress(b"{")[:-4]).decode(), "is not gzip data"),
        (base64.b64encode(gzip.compress(b"\xff")).decode(), "is not JSON"),
        (base64.b64encode(gzip.compress(b"[]")).decode(), "must be an object, got array"),
    ],
)
def test_cloudwatch_logs_bad_payloads(data: str, problem: str) -> None:
    """Each layer of a bad payload is reported against ``awslogs.data``."""
    event = events.CloudWatchLogsEvent.decode({"awslogs": {"data": data}})
    with pytest.raises(InvalidEvent, match=rf"field 'awslogs\.data' {problem}"):
        event.unpack()


def test_cloudwatch_logs_inner_field_path() -> None:
    """Fields inside the packed document are named below ``awslogs.data``."""
    document = cloudwatch_logs_document()
    del document["logEvents"][1]["timestamp"]
    event = events.CloudWatchLogsEvent.decode(cloudwatch_logs_event(document))
    with pytest.raises(InvalidEvent) as caught:
        event.unpack()
    assert str(caught.value) == (
        "CloudWatchLogsEvent: field 'awslogs.data.logEvents[1].timestamp' missing"
    )


# -- Every field of every fixture ------------------------------------------------------


def key_paths(value: object, prefix: str = "") -> Iterator[str]:
    """The dotted path of every key and list position below ``value``."""
    if isinstance(value, dict):
        items: list[tuple[str | int, object]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return
    for key, child in items:
        path = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}".lstrip(".")
        yield path
        yield from key_paths(child, path)


def rejection(decode: Callable[[], object]) -> str | None:
    """The InvalidEvent message ``decode`` raises, or ``None`` when it succeeds."""
    try:
        decode()
    except InvalidEvent as exc:
        return str(exc)
    return None


def locate(document: Any, path: str) -> tuple[Any, str | int]:
    """The container holding ``path`` and the key of ``path`` within it."""
    parts: list[str | int] = []
    for dotted in path.split("."):
        name, _, rest = dotted.partition("[")
        if name:
            parts.append(name)
        parts.extend(int(index) for index in rest.replace("]", "").split("[") if index)
    container = document
    for part in parts[:-1]:
        container = container[part]
    return container, parts[-1]


# What each fixture cannot do without: deleting any other key still decodes.
REQUIRED: dict[str, set[str]] = {
    "api_gateway_v1.json": {"httpMethod", "path"},
    "api_gateway_v2.json": {
        "rawPath",
        "requestContext",
        "requestContext.http",
        "requestContext.http.method",
    },
    "function_url.json": {
        "rawPath",
        "requestContext",
        "requestContext.http",
        "requestContext.http.method",
    },
    "alb.json": {"httpMethod", "path"},
    "alb_multi_value.json": {"httpMethod", "path"},
    "sqs.json": {"Records"}
    | {f"Records[{i}].{key}" for i in (0, 1) for key in ("messageId", "receiptHandle", "body")}
    | {f"Records[0].messageAttributes.{name}.dataType" for name in ("tenant", "signature")},
    "sns.json": {"Records", "Records[0].Sns"}
    | {f"Records[0].Sns.{key}" for key in ("MessageId", "TopicArn", "Message", "Timestamp")}
    | {
        f"Records[0].Sns.MessageAttributes.{name}.{key}"
        for name in ("Test", "TestBinary")
        for key in ("Type", "Value")
    },
    "s3.json": {"Records"}
    | {
        f"Records[{i}].{key}"
        for i in (0, 1)
        for key in (
            "eventName",
            "eventTime",
            "s3",
            "s3.bucket",
            "s3.bucket.name",
            "s3.object",
            "s3.object.key",
        )
    },
    "eventbridge.json": {"id", "detail-type", "source", "account", "time", "region"},
    "scheduled_event.json": {"id", "detail-type", "source", "account", "time", "region"},
    "dynamodb.json": {"Records"}
    | {
        f"Records[{i}].{key}"
        for i in (0, 1, 2)
        for key in ("eventID", "eventName", "dynamodb", "dynamodb.SequenceNumber")
    },
    "kinesis.json": {"Records"}
    | {
        f"Records[{i}].{key}"
        for i in (0, 1)
        for key in (
            "eventID",
            "kinesis",
            "kinesis.partitionKey",
            "kinesis.sequenceNumber",
            "kinesis.data",
        )
    },
    "cloudwatch_logs.json": {"awslogs", "awslogs.data"},
}


@pytest.mark.parametrize("fixture", sorted(ENVELOPE_OF))
def test_fixture_is_a_frozen_slotted_keyword_only_dataclass(fixture: str) -> None:
    """Every fixture decodes to a frozen, slotted, keyword-only dataclass."""
    decoded = ENVELOPE_OF[fixture].decode(load(fixture))
    assert not hasattr(decoded, "__dict__")
    assert all(f.kw_only for f in dataclasses.fields(decoded))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(decoded, dataclasses.fields(decoded)[0].name, None)


@pytest.mark.parametrize("fixture", sorted(ENVELOPE_OF))
def test_deleting_a_field_names_it_when_required(fixture: str) -> None:
    """Deleting any key either still decodes or raises '<field> missing' for exactly that key."""
    envelope = ENVELOPE_OF[fixture]
    missing = set()
    for path in key_paths(load(fixture)):
        event = load(fixture)
        container, key = locate(event, path)
        if isinstance(key, int):
            continue
        del container[key]
        message = rejection(lambda: envelope.decode(event))  # noqa: B023
        if message is not None:
            assert message == f"{envelope.__name__}: field '{path}' missing"
            missing.add(path)
    assert missing == REQUIRED[fixture]


@pytest.mark.parametrize("fixture", sorted(ENVELOPE_OF))
def test_mistyping_a_field_names_it(fixture: str) -> None:
    """Giving any field a value of another JSON type either decodes or names that field."""
    envelope = ENVELOPE_OF[fixture]
    for path in key_paths(load(fixture)):
        event = load(fixture)
        container, key = locate(event, path)
        container[key] = {} if isinstance(container[key], list) else [0]
        message = rejection(lambda: envelope.decode(event))  # noqa: B023
        if message is not None:
            assert message.startswith(f"{envelope.__name__}: field '{path}' must be "), message


def test_cloudwatch_logs_document_fields() -> None:
    """Deleting a key of the packed document either unpacks or names it below ``awslogs.data``."""
    missing = set()
    for path in key_paths(cloudwatch_logs_document()):
        document = cloudwatch_logs_document()
        container, key = locate(document, path)
        if isinstance(key, int):
            continue
        del container[key]
        event = events.CloudWatchLogsEvent.decode(cloudwatch_logs_event(document))
        message = rejection(event.unpack)
        if message is not None:
            assert message == f"CloudWatchLogsEvent: field 'awslogs.data.{path}' missing"
            missing.add(path)
    assert missing == {
        "messageType",
        "owner",
        "logGroup",
        "logStream",
        "logEvents",
        *(f"logEvents[{i}].{key}" for i in (0, 1) for key in ("id", "timestamp", "message")),
    }


@pytest.mark.parametrize("value", [None, [], "event", 3, 2.5, True])
@pytest.mark.parametrize("envelope", ENVELOPES)
def test_event_that_is_not_an_object(envelope: type[Any], value: object) -> None:
    """A top-level value that is not an object is named by its JSON type."""
    with pytest.raises(InvalidEvent, match=rf"^{envelope.__name__}: event must be a JSON object"):
        envelope.decode(value)


# -- Arbitrary JSON never escapes as anything but InvalidEvent -------------------------


def fixture_keys() -> list[str]:
    """Every key used anywhere in the fixtures, so random objects hit real fields."""
    keys: set[str] = set()
    for fixture in ENVELOPE_OF:
        for path in key_paths(load(fixture)):
            _, key = locate(load(fixture), path)
            if isinstance(key, str):
                keys.add(key)
    return sorted(keys)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(fixture_keys()) | st.text(max_size=8), children, max_size=5
        )
    ),
    max_leaves=25,
)
envelopes = st.sampled_from(ENVELOPES)


@settings(max_examples=300)
@given(envelope=envelopes, value=json_values)
def test_arbitrary_json_raises_only_invalid_event(envelope: type[Any], value: object) -> None:
    """Any JSON value given to any decoder decodes or raises InvalidEvent."""
    with contextlib.suppress(InvalidEvent):
        exercise(envelope.decode(value))


@settings(max_examples=300)
@given(
    fixture=st.sampled_from(sorted(ENVELOPE_OF)), choice=st.integers(min_value=0), value=json_values
)
def test_fixture_with_one_field_replaced_raises_only_invalid_event(
    fixture: str, choice: int, value: object
) -> None:
    """A real event with one field replaced by arbitrary JSON decodes or raises InvalidEvent."""
    event = load(fixture)
    paths = list(key_paths(event))
    container, key = locate(event, paths[choice % len(paths)])
    container[key] = copy.deepcopy(value)
    with contextlib.suppress(InvalidEvent):
        exercise(ENVELOPE_OF[fixture].decode(event))


@settings(max_examples=100)
@given(document=json_values)
def test_arbitrary_cloudwatch_document_raises_only_invalid_event(document: object) -> None:
    """Any JSON packed as CloudWatch Logs data unpacks or raises InvalidEvent."""
    with contextlib.suppress(InvalidEvent):
        events.CloudWatchLogsEvent.decode(cloudwatch_logs_event(document)).unpack()


# -- Shape of the module ------------------------------------------------------------------


def test_all_is_complete() -> None:
    """``__all__`` lists exactly the public classes the package's trigger modules
    define, each loaded on first use."""
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    public = set()
    triggers = [info for info in pkgutil.iter_modules(events.__path__) if info.name != "_decode"]
    for info in triggers:
        module = importlib.import_module(f"{events.__name__}.{info.name}")
        public |= {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and isinstance(value, type)
            and value.__module__ == module.__name__
        }
    assert set(events.__all__) == public
