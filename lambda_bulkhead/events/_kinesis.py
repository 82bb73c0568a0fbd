"""Amazon Kinesis Data Streams batches.  Part of :mod:`lambda_bulkhead.events`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from lambda_bulkhead.events._decode import (
    JsonObject,
    decode_base64,
    parse_json,
)

__all__ = [
    "KinesisEvent",
    "KinesisRecord",
]


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
