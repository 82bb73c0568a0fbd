"""Amazon S3 event notifications.  Part of :mod:`lambda_bulkhead.events`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from lambda_bulkhead.events._decode import (
    JsonObject,
    url_unquote,
)

__all__ = [
    "S3Event",
    "S3Record",
]


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
