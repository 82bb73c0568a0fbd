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
    written out per field (:mod:`lambda_bulkhead._decode`), which is what lets
    every error name its field.  The price is paid once, at import: CPython
    3.11 compiles each dataclass's generated methods, most of this module's
    import time (figures in ``docs/benchmarks.md``).

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

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

from lambda_bulkhead._decode import (
    JsonObject,
    decode_base64,
    encode_utf8,
    field_error,
    gunzip,
    parse_json,
    parse_query_string,
    url_unquote,
)

if TYPE_CHECKING:
    from lambda_bulkhead.responses import ResponseTarget

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


# -- HTTP ----------------------------------------------------------------------


class QueryParams(Mapping[str, str]):
    """Immutable query-string parameters, where a name may repeat.

    ``params[name]`` is the last value, as the single-value
    ``queryStringParameters`` of API Gateway REST and the ALB hold it;
    :meth:`get_all` gives every value in order.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str | Iterable[str]] | None = None) -> None:
        merged: dict[str, tuple[str, ...]] = {}
        for name, value in (values or {}).items():
            key = self._key(name)
            merged[key] = merged.get(key, ()) + (
                (value,) if isinstance(value, str) else tuple(value)
            )
        self._values = {key: items for key, items in merged.items() if items}

    @staticmethod
    def _key(name: str) -> str:
        return name

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of ``name`` in order; empty when absent."""
        return self._values.get(self._key(name), ())

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        return self._values[self._key(name)][-1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QueryParams):
            return type(other) is type(self) and self._values == other._values
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"


class Headers(QueryParams):
    """Immutable, case-insensitive HTTP headers; names iterate lower-cased.

    ``headers[name]`` is the last value; :meth:`get_all` gives every value.
    HTTP API (payload 2.0) and function URLs join repeated headers with commas
    into one value before Lambda sees them.
    """

    __slots__ = ()

    @staticmethod
    def _key(name: str) -> str:
        return name.lower()


def _parse_cookies(pairs: Iterable[str]) -> dict[str, str]:
    """``name=value`` pairs from Cookie headers or HTTP API's ``cookies``.

    The first of two same-named cookies wins: browsers send the one with the
    most specific path first.
    """
    cookies: dict[str, str] = {}
    for header in pairs:
        for pair in header.split(";"):
            name, equals, value = pair.partition("=")
            if equals and name.strip():
                cookies.setdefault(name.strip(), value.strip())
    return cookies


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest(ABC):
    """What every HTTP trigger carries; the base of the four request envelopes.

    ``path`` is the request path as the client sent it (``rawPath`` in payload
    2.0).  ``body`` is the string the integration delivered; use
    :meth:`decoded_body` for the bytes whatever ``is_base64_encoded`` says.
    """

    method: str
    path: str
    headers: Headers = field(default_factory=Headers)
    query_params: QueryParams = field(default_factory=QueryParams)
    cookies: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    is_base64_encoded: bool = False
    request_context: Mapping[str, Any] = field(default_factory=dict)

    @property
    @abstractmethod
    def response_target(self) -> ResponseTarget:
        """The ``target`` to give :meth:`ProxyResponse.to_dict` when answering this request."""

    def decoded_body(self) -> bytes:
        """The body as bytes, base64-decoded when flagged so; ``b""`` when there is none."""
        if self.body is None:
            return b""
        if self.is_base64_encoded:
            return decode_base64(self.body, type(self).__name__, "body")
        return encode_utf8(self.body, type(self).__name__, "body")

    def json(self) -> Any:
        """The body parsed as JSON."""
        if self.body is None:
            raise field_error(type(self).__name__, "body", "missing")
        document = self.decoded_body() if self.is_base64_encoded else self.body
        return parse_json(document, type(self).__name__, "body")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiGatewayV1Request(HttpRequest):
    """An API Gateway REST API proxy event (payload format 1.0).

    Headers and query parameters come from ``multiValueHeaders`` and
    ``multiValueQueryStringParameters`` when present (they hold every value),
    else from their single-value forms.  Cookies are parsed from the Cookie
    header.  Required: ``httpMethod``, ``path``.
    """

    resource: str | None = None
    path_params: Mapping[str, str] = field(default_factory=dict)
    stage_variables: Mapping[str, str] = field(default_factory=dict)
    request_id: str | None = None
    stage: str | None = None
    source_ip: str | None = None

    @property
    def response_target(self) -> ResponseTarget:
        """Always ``"api-gateway-v1"``."""
        return "api-gateway-v1"

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode a REST API proxy event."""
        obj = JsonObject(cls.__name__, event)
        single_headers = obj.text_map("headers")
        multi_headers = obj.text_list_map("multiValueHeaders")
        headers = Headers(multi_headers or single_headers)
        single_query = obj.text_map("queryStringParameters")
        multi_query = obj.text_list_map("multiValueQueryStringParameters")
        context = obj.optional_child("requestContext")
        identity = context.optional_child("identity") if context else None
        return cls(
            method=obj.text("httpMethod"),
            path=obj.text("path"),
            headers=headers,
            query_params=QueryParams(multi_query or single_query),
            cookies=_parse_cookies(headers.get_all("cookie")),
            body=obj.optional_text("body"),
            is_base64_encoded=obj.flag("isBase64Encoded"),
            request_context=context.fields if context else {},
            resource=obj.optional_text("resource"),
            path_params=obj.text_map("pathParameters"),
            stage_variables=obj.text_map("stageVariables"),
            request_id=context.optional_text("requestId") if context else None,
            stage=context.optional_text("stage") if context else None,
            source_ip=identity.optional_text("sourceIp") if identity else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiGatewayV2Request(HttpRequest):
    """An API Gateway HTTP API event (payload format 2.0).

    ``query_params`` is parsed from ``rawQueryString`` so repeated parameters
    keep every value (``queryStringParameters`` joins them with commas); it
    falls back to ``queryStringParameters`` when the raw string is empty.
    Required: ``rawPath``, ``requestContext.http.method``.
    """

    route_key: str | None = None
    raw_query_string: str = ""
    path_params: Mapping[str, str] = field(default_factory=dict)
    stage_variables: Mapping[str, str] = field(default_factory=dict)
    request_id: str | None = None
    stage: str | None = None
    source_ip: str | None = None

    @property
    def response_target(self) -> ResponseTarget:
        """Always ``"api-gateway-v2"``."""
        return "api-gateway-v2"

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode a payload format 2.0 event."""
        obj = JsonObject(cls.__name__, event)
        context = obj.child("requestContext")
        http = context.child("http")
        raw_query = obj.optional_text("rawQueryString") or ""
        single_query = obj.text_map("queryStringParameters")
        return cls(
            method=http.text("method"),
            path=obj.text("rawPath"),
            headers=Headers(obj.text_map("headers")),
            query_params=QueryParams(parse_query_string(raw_query) if raw_query else single_query),
            cookies=_parse_cookies(obj.text_list("cookies")),
            body=obj.optional_text("body"),
            is_base64_encoded=obj.flag("isBase64Encoded"),
            request_context=context.fields,
            route_key=obj.optional_text("routeKey"),
            raw_query_string=raw_query,
            path_params=obj.text_map("pathParameters"),
            stage_variables=obj.text_map("stageVariables"),
            request_id=context.optional_text("requestId"),
            stage=context.optional_text("stage"),
            source_ip=http.optional_text("sourceIp"),
        )


class FunctionUrlRequest(ApiGatewayV2Request):
    """A Lambda function URL event: payload format 2.0 under its own name.

    ``route_key`` and ``stage`` are ``"$default"``; there are no path
    parameters or stage variables.
    """

    # Still a frozen, slotted dataclass through its base; it adds no field, and
    # decorating it again would only cost import time.
    __slots__ = ()

    @property
    def response_target(self) -> ResponseTarget:
        """Always ``"function-url"``."""
        return "function-url"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlbRequest(HttpRequest):
    """An Application Load Balancer event, in either headers mode.

    ``multi_value`` says whether the target group has multi-value headers on
    (the event has ``multiValueHeaders``); the response must then use the
    ``"alb-multi-value"`` target, which :attr:`response_target` picks.  The ALB
    passes query parameters as the client encoded them; they are URL-decoded
    here like every other trigger's.  Required: ``httpMethod``, ``path``.
    """

    multi_value: bool = False
    target_group_arn: str | None = None

    @property
    def response_target(self) -> ResponseTarget:
        """``"alb-multi-value"`` or ``"alb"``, following the event's headers mode."""
        return "alb-multi-value" if self.multi_value else "alb"

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode an ALB target group event."""
        obj = JsonObject(cls.__name__, event)
        multi_value = obj.fields.get("multiValueHeaders") is not None
        single_headers = obj.text_map("headers")
        multi_headers = obj.text_list_map("multiValueHeaders")
        headers = Headers(multi_headers if multi_value else single_headers)
        single_query = obj.text_map("queryStringParameters")
        multi_query = obj.text_list_map("multiValueQueryStringParameters")
        query: Mapping[str, str | Iterable[str]] = multi_query if multi_value else single_query
        context = obj.optional_child("requestContext")
        elb = context.optional_child("elb") if context else None
        return cls(
            method=obj.text("httpMethod"),
            path=obj.text("path"),
            headers=headers,
            query_params=QueryParams(_unquote_query(query)),
            cookies=_parse_cookies(headers.get_all("cookie")),
            body=obj.optional_text("body"),
            is_base64_encoded=obj.flag("isBase64Encoded"),
            request_context=context.fields if context else {},
            multi_value=multi_value,
            target_group_arn=elb.optional_text("targetGroupArn") if elb else None,
        )


def _unquote_query(query: Mapping[str, str | Iterable[str]]) -> dict[str, list[str]]:
    unquoted: dict[str, list[str]] = {}
    for name, values in query.items():
        items = [values] if isinstance(values, str) else values
        unquoted.setdefault(url_unquote(name), []).extend(url_unquote(v) for v in items)
    return unquoted


# -- SQS -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SqsMessageAttribute:
    """One SQS message attribute; ``binary_value`` is base64-decoded."""

    data_type: str
    string_value: str | None = None
    binary_value: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SqsMessage:
    """One SQS message.  Required: ``messageId``, ``receiptHandle``, ``body``.

    ``attributes`` are the system attributes (``ApproximateReceiveCount``,
    ``MessageGroupId`` on FIFO queues, ...).  Report a failed message to a
    partial batch response by its ``message_id``.
    """

    message_id: str
    receipt_handle: str
    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    message_attributes: Mapping[str, SqsMessageAttribute] = field(default_factory=dict)
    md5_of_body: str | None = None
    event_source_arn: str | None = None
    aws_region: str | None = None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return parse_json(self.body, f"SqsMessage {self.message_id}", "body")


@dataclass(frozen=True, slots=True, kw_only=True)
class SqsEvent:
    """A batch of SQS messages."""

    records: tuple[SqsMessage, ...]

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode an SQS event."""
        obj = JsonObject(cls.__name__, event)
        return cls(records=tuple(_sqs_message(record) for record in obj.objects("Records")))


def _sqs_message(record: JsonObject) -> SqsMessage:
    attributes = record.optional_child("messageAttributes")
    return SqsMessage(
        message_id=record.text("messageId"),
        receipt_handle=record.text("receiptHandle"),
        body=record.text("body"),
        attributes=record.text_map("attributes"),
        message_attributes={
            name: _sqs_attribute(attributes.child(name)) for name in attributes.fields
        }
        if attributes
        else {},
        md5_of_body=record.optional_text("md5OfBody"),
        event_source_arn=record.optional_text("eventSourceARN"),
        aws_region=record.optional_text("awsRegion"),
    )


def _sqs_attribute(attribute: JsonObject) -> SqsMessageAttribute:
    binary = attribute.optional_text("binaryValue")
    return SqsMessageAttribute(
        data_type=attribute.text("dataType"),
        string_value=attribute.optional_text("stringValue"),
        binary_value=None
        if binary is None
        else decode_base64(binary, attribute.envelope, attribute.path_of("binaryValue")),
    )


# -- SNS -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SnsMessageAttribute:
    """One SNS message attribute: ``type`` is ``String``, ``Number``, ``Binary``, ..."""

    type: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SnsMessage:
    """One SNS notification (a record's ``Sns`` object beside its subscription ARN).

    Required: ``Sns.MessageId``, ``Sns.TopicArn``, ``Sns.Message``, ``Sns.Timestamp``.
    """

    message_id: str
    topic_arn: str
    message: str
    timestamp: str
    subject: str | None = None
    type: str | None = None
    message_attributes: Mapping[str, SnsMessageAttribute] = field(default_factory=dict)
    subscription_arn: str | None = None
    signature_version: str | None = None
    signature: str | None = None
    signing_cert_url: str | None = None
    unsubscribe_url: str | None = None

    def json(self) -> Any:
        """The message parsed as JSON."""
        return parse_json(self.message, f"SnsMessage {self.message_id}", "Sns.Message")


@dataclass(frozen=True, slots=True, kw_only=True)
class SnsEvent:
    """A batch of SNS notifications (Lambda delivers one per event)."""

    records: tuple[SnsMessage, ...]

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode an SNS event."""
        obj = JsonObject(cls.__name__, event)
        return cls(records=tuple(_sns_message(record) for record in obj.objects("Records")))


def _sns_message(record: JsonObject) -> SnsMessage:
    sns = record.child("Sns")
    attributes = sns.optional_child("MessageAttributes")
    return SnsMessage(
        message_id=sns.text("MessageId"),
        topic_arn=sns.text("TopicArn"),
        message=sns.text("Message"),
        timestamp=sns.text("Timestamp"),
        subject=sns.optional_text("Subject"),
        type=sns.optional_text("Type"),
        message_attributes={
            name: _sns_attribute(attributes.child(name)) for name in attributes.fields
        }
        if attributes
        else {},
        subscription_arn=record.optional_text("EventSubscriptionArn"),
        signature_version=sns.optional_text("SignatureVersion"),
        signature=sns.optional_text("Signature"),
        signing_cert_url=sns.optional_text("SigningCertUrl"),
        unsubscribe_url=sns.optional_text("UnsubscribeUrl"),
    )


def _sns_attribute(attribute: JsonObject) -> SnsMessageAttribute:
    return SnsMessageAttribute(type=attribute.text("Type"), value=attribute.text("Value"))


# -- S3 ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Record:
    """One S3 event notification, ``s3.bucket`` and ``s3.object`` flattened.

    ``key`` is URL-decoded (S3 sends ``my+photo%281%29.jpg`` for
    ``my photo(1).jpg``).  ``size`` and ``etag`` are absent on deletions.
    Required: ``eventName``, ``eventTime``, ``s3.bucket.name``, ``s3.object.key``.
    """

    event_name: str
    event_time: str
    bucket_name: str
    key: str
    aws_region: str | None = None
    bucket_arn: str | None = None
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Event:
    """A batch of S3 event notifications."""

    records: tuple[S3Record, ...]

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode an S3 event notification."""
        obj = JsonObject(cls.__name__, event)
        return cls(records=tuple(_s3_record(record) for record in obj.objects("Records")))


def _s3_record(record: JsonObject) -> S3Record:
    s3 = record.child("s3")
    bucket = s3.child("bucket")
    s3_object = s3.child("object")
    return S3Record(
        event_name=record.text("eventName"),
        event_time=record.text("eventTime"),
        bucket_name=bucket.text("name"),
        key=url_unquote(s3_object.text("key")),
        aws_region=record.optional_text("awsRegion"),
        bucket_arn=bucket.optional_text("arn"),
        size=s3_object.optional_integer("size"),
        etag=s3_object.optional_text("eTag"),
        version_id=s3_object.optional_text("versionId"),
        sequencer=s3_object.optional_text("sequencer"),
    )


# -- EventBridge -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EventBridgeEvent:
    """An EventBridge (CloudWatch Events) event; ``detail`` is its JSON object as sent.

    Required: ``id``, ``detail-type``, ``source``, ``account``, ``time``, ``region``.
    """

    id: str
    detail_type: str
    source: str
    account: str
    time: str
    region: str
    resources: tuple[str, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    version: str | None = None

    #: When set, ``decode`` rejects events of any other ``detail-type``.
    required_detail_type: ClassVar[str | None] = None

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode an EventBridge event."""
        obj = JsonObject(cls.__name__, event)
        detail_type = obj.text("detail-type")
        if cls.required_detail_type is not None and detail_type != cls.required_detail_type:
            raise obj.error(
                "detail-type", f"is {detail_type!r}, expected {cls.required_detail_type!r}"
            )
        return cls(
            id=obj.text("id"),
            detail_type=detail_type,
            source=obj.text("source"),
            account=obj.text("account"),
            time=obj.text("time"),
            region=obj.text("region"),
            resources=obj.text_list("resources"),
            detail=obj.raw_object("detail") or {},
            version=obj.optional_text("version"),
        )


class ScheduledEvent(EventBridgeEvent):
    """An EventBridge rule's scheduled event: ``detail-type`` is ``"Scheduled Event"``.

    ``resources`` holds the rule's ARN; ``detail`` is empty.
    """

    # Not decorated again, like FunctionUrlRequest: it only narrows decode.
    __slots__ = ()

    required_detail_type: ClassVar[str | None] = "Scheduled Event"


# -- DynamoDB Streams ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DynamoDbStreamRecord:
    """One DynamoDB stream record, its ``dynamodb`` object flattened.

    ``keys``, ``new_image`` and ``old_image`` stay in DynamoDB's attribute-value
    JSON (``{"id": {"S": "42"}}``).  Which images exist follows the stream's
    view type and the ``event_name`` (``INSERT``, ``MODIFY``, ``REMOVE``).
    Report a failed record to a partial batch response by its
    ``sequence_number``.  Required: ``eventID``, ``eventName``,
    ``dynamodb.SequenceNumber``.
    """

    event_id: str
    event_name: str
    sequence_number: str
    keys: Mapping[str, Any] = field(default_factory=dict)
    new_image: Mapping[str, Any] | None = None
    old_image: Mapping[str, Any] | None = None
    size_bytes: int | None = None
    stream_view_type: str | None = None
    approximate_creation_date_time: float | None = None
    event_source_arn: str | None = None
    aws_region: str | None = None
    user_identity: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DynamoDbStreamEvent:
    """A batch of DynamoDB stream records."""

    records: tuple[DynamoDbStreamRecord, ...]

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode a DynamoDB Streams event."""
        obj = JsonObject(cls.__name__, event)
        return cls(records=tuple(_dynamodb_record(record) for record in obj.objects("Records")))


def _dynamodb_record(record: JsonObject) -> DynamoDbStreamRecord:
    dynamodb = record.child("dynamodb")
    return DynamoDbStreamRecord(
        event_id=record.text("eventID"),
        event_name=record.text("eventName"),
        sequence_number=dynamodb.text("SequenceNumber"),
        keys=dynamodb.raw_object("Keys") or {},
        new_image=dynamodb.raw_object("NewImage"),
        old_image=dynamodb.raw_object("OldImage"),
        size_bytes=dynamodb.optional_integer("SizeBytes"),
        stream_view_type=dynamodb.optional_text("StreamViewType"),
        approximate_creation_date_time=dynamodb.optional_number("ApproximateCreationDateTime"),
        event_source_arn=record.optional_text("eventSourceARN"),
        aws_region=record.optional_text("awsRegion"),
        user_identity=record.raw_object("userIdentity"),
    )


# -- Kinesis -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KinesisRecord:
    """One Kinesis Data Streams record, its ``kinesis`` object flattened.

    ``data`` is base64-decoded.  Report a failed record to a partial batch
    response by its ``sequence_number``.  Required: ``eventID``,
    ``kinesis.partitionKey``, ``kinesis.sequenceNumber``, ``kinesis.data``.
    """

    event_id: str
    partition_key: str
    sequence_number: str
    data: bytes
    approximate_arrival_timestamp: float | None = None
    schema_version: str | None = None
    event_name: str | None = None
    event_source_arn: str | None = None
    aws_region: str | None = None
    invoke_identity_arn: str | None = None

    def json(self) -> Any:
        """The data parsed as JSON."""
        return parse_json(self.data, f"KinesisRecord {self.event_id}", "kinesis.data")


@dataclass(frozen=True, slots=True, kw_only=True)
class KinesisEvent:
    """A batch of Kinesis Data Streams records."""

    records: tuple[KinesisRecord, ...]

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode a Kinesis event."""
        obj = JsonObject(cls.__name__, event)
        return cls(records=tuple(_kinesis_record(record) for record in obj.objects("Records")))


def _kinesis_record(record: JsonObject) -> KinesisRecord:
    kinesis = record.child("kinesis")
    return KinesisRecord(
        event_id=record.text("eventID"),
        partition_key=kinesis.text("partitionKey"),
        sequence_number=kinesis.text("sequenceNumber"),
        data=decode_base64(kinesis.text("data"), kinesis.envelope, kinesis.path_of("data")),
        approximate_arrival_timestamp=kinesis.optional_number("approximateArrivalTimestamp"),
        schema_version=kinesis.optional_text("kinesisSchemaVersion"),
        event_name=record.optional_text("eventName"),
        event_source_arn=record.optional_text("eventSourceARN"),
        aws_region=record.optional_text("awsRegion"),
        invoke_identity_arn=record.optional_text("invokeIdentityArn"),
    )


# -- CloudWatch Logs -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudWatchLogEvent:
    """One log event; ``timestamp`` is in epoch milliseconds."""

    id: str
    timestamp: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudWatchLogsData:
    """The unpacked contents of a subscription delivery.

    ``message_type`` is ``DATA_MESSAGE``, or ``CONTROL_MESSAGE`` for the
    reachability checks CloudWatch Logs sends (skip those).
    """

    message_type: str
    owner: str
    log_group: str
    log_stream: str
    subscription_filters: tuple[str, ...]
    log_events: tuple[CloudWatchLogEvent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudWatchLogsEvent:
    """A CloudWatch Logs subscription delivery: ``data`` is ``awslogs.data`` as sent.

    ``data`` is base64 of gzip of JSON; :meth:`unpack` decodes it when asked.
    """

    data: str

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode a CloudWatch Logs subscription event (without unpacking it)."""
        obj = JsonObject(cls.__name__, event)
        return cls(data=obj.child("awslogs").text("data"))

    def unpack(self) -> CloudWatchLogsData:
        """Base64-decode, gunzip and decode ``awslogs.data``."""
        envelope, path = type(self).__name__, "awslogs.data"
        compressed = decode_base64(self.data, envelope, path)
        document = parse_json(gunzip(compressed, envelope, path), envelope, path)
        obj = JsonObject(envelope, document, path)
        return CloudWatchLogsData(
            message_type=obj.text("messageType"),
            owner=obj.text("owner"),
            log_group=obj.text("logGroup"),
            log_stream=obj.text("logStream"),
            subscription_filters=obj.text_list("subscriptionFilters"),
            log_events=tuple(
                CloudWatchLogEvent(
                    id=log_event.text("id"),
                    timestamp=log_event.integer("timestamp"),
                    message=log_event.text("message"),
                )
                for log_event in obj.objects("logEvents")
            ),
        )
