"""Amazon DynamoDB Streams batches.  Part of :mod:`lambda_bulkhead.events`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from lambda_bulkhead.events._decode import (
    JsonObject,
)

__all__ = [
    "DynamoDbStreamEvent",
    "DynamoDbStreamRecord",
]


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
