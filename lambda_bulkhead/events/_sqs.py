"""Amazon SQS batches.  Part of :mod:`lambda_bulkhead.events`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from lambda_bulkhead.events._decode import (
    JsonObject,
    decode_base64,
    parse_json,
)

__all__ = [
    "SqsEvent",
    "SqsMessage",
    "SqsMessageAttribute",
]


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
