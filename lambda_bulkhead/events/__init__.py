"""Typed envelopes for the events AWS services send to Lambda.

Every envelope has one way in, the class method ``decode``, which takes the
already-parsed JSON value and returns the envelope::

    def handler(event, context):                      # a plain handler
        req = ApiGatewayV2Request.decode(event)
        ...

    start_json(ApiGatewayV2Request.decode, handle, ProxyResponse.to_dict)

A payload that does not fit raises
:class:`~lambda_bulkhead._errors.InvalidEvent` (``Runtime.InvalidEvent``)
naming the dotted path AWS documents for the field that is missing or
mistyped::

    ApiGatewayV2Request: field 'requestContext.http.method' missing
    SqsEvent: field 'Records[0].body' must be a string, got null

No other exception escapes a decoder, whatever JSON it is given.  Fields AWS
may leave out are optional (``None``, or an empty mapping or tuple); fields we
do not surface are ignored.  Raw sub-documents stay reachable where users
need more than we type (``request_context``, ``detail``, DynamoDB images).

Shape
    Frozen, slotted, keyword-only dataclasses: typed for mypy without a plugin,
    standard library only (a cold start pays for every module imported, so no
    pydantic), frozen so one part of a handler cannot change what another reads,
    slotted so a 10 000-record Kinesis batch stays small and attribute access
    fast, keyword-only so adding a field breaks no caller.  Validation is
    written out per field (:mod:`lambda_bulkhead.events._decode`), which is what lets
    every error name its field.  The price is paid at import: CPython 3.11
    compiles each dataclass's generated methods.  So each trigger's envelopes
    live in a private module imported on first use: a handler pays only for
    the triggers it names (figures in ``docs/benchmarks.md``).

Batches
    ``SqsEvent``, ``SnsEvent``, ``S3Event``, ``DynamoDbStreamEvent`` and
    ``KinesisEvent`` hold ``records``.  A record is flattened: the fields of
    the service's sub-object (``Sns``, ``s3``, ``dynamodb``, ``kinesis``) sit
    beside the record's own; error messages still use AWS's paths.

Decoded when asked
    ``decode`` checks shapes, not contents.  Contents that need decoding are
    decoded by methods that raise ``InvalidEvent`` too: ``decoded_body()`` and
    ``json()`` on HTTP requests, ``json()`` on SQS, SNS and Kinesis records,
    ``unpack()`` on CloudWatch Logs.  Fields that are always base64 binary
    (Kinesis ``data``, SQS binary attributes) are decoded to ``bytes`` up front,
    and S3 object keys are URL-decoded up front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lambda_bulkhead._lazy import lazy_exports

if TYPE_CHECKING:
    from lambda_bulkhead.events._cloudwatch import (
        CloudWatchLogEvent,
        CloudWatchLogsData,
        CloudWatchLogsEvent,
    )
    from lambda_bulkhead.events._dynamodb import DynamoDbStreamEvent, DynamoDbStreamRecord
    from lambda_bulkhead.events._eventbridge import EventBridgeEvent, ScheduledEvent
    from lambda_bulkhead.events._http import (
        AlbRequest,
        ApiGatewayV1Request,
        ApiGatewayV2Request,
        FunctionUrlRequest,
        Headers,
        HttpRequest,
        QueryParams,
    )
    from lambda_bulkhead.events._kinesis import KinesisEvent, KinesisRecord
    from lambda_bulkhead.events._s3 import S3Event, S3Record
    from lambda_bulkhead.events._sns import SnsEvent, SnsMessage, SnsMessageAttribute
    from lambda_bulkhead.events._sqs import SqsEvent, SqsMessage, SqsMessageAttribute

_LAZY = {
    "AlbRequest": "lambda_bulkhead.events._http",
    "ApiGatewayV1Request": "lambda_bulkhead.events._http",
    "ApiGatewayV2Request": "lambda_bulkhead.events._http",
    "CloudWatchLogEvent": "lambda_bulkhead.events._cloudwatch",
    "CloudWatchLogsData": "lambda_bulkhead.events._cloudwatch",
    "CloudWatchLogsEvent": "lambda_bulkhead.events._cloudwatch",
    "DynamoDbStreamEvent": "lambda_bulkhead.events._dynamodb",
    "DynamoDbStreamRecord": "lambda_bulkhead.events._dynamodb",
    "EventBridgeEvent": "lambda_bulkhead.events._eventbridge",
    "FunctionUrlRequest": "lambda_bulkhead.events._http",
    "Headers": "lambda_bulkhead.events._http",
    "HttpRequest": "lambda_bulkhead.events._http",
    "KinesisEvent": "lambda_bulkhead.events._kinesis",
    "KinesisRecord": "lambda_bulkhead.events._kinesis",
    "QueryParams": "lambda_bulkhead.events._http",
    "S3Event": "lambda_bulkhead.events._s3",
    "S3Record": "lambda_bulkhead.events._s3",
    "ScheduledEvent": "lambda_bulkhead.events._eventbridge",
    "SnsEvent": "lambda_bulkhead.events._sns",
    "SnsMessage": "lambda_bulkhead.events._sns",
    "SnsMessageAttribute": "lambda_bulkhead.events._sns",
    "SqsEvent": "lambda_bulkhead.events._sqs",
    "SqsMessage": "lambda_bulkhead.events._sqs",
    "SqsMessageAttribute": "lambda_bulkhead.events._sqs",
}

__all__ = [
    "AlbRequest",
    "ApiGatewayV1Request",
    "ApiGatewayV2Request",
    "CloudWatchLogEvent",
    "CloudWatchLogsData",
    "CloudWatchLogsEvent",
    "DynamoDbStreamEvent",
    "DynamoDbStreamRecord",
    "EventBridgeEvent",
    "FunctionUrlRequest",
    "Headers",
    "HttpRequest",
    "KinesisEvent",
    "KinesisRecord",
    "QueryParams",
    "S3Event",
    "S3Record",
    "ScheduledEvent",
    "SnsEvent",
    "SnsMessage",
    "SnsMessageAttribute",
    "SqsEvent",
    "SqsMessage",
    "SqsMessageAttribute",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
