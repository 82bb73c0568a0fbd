"""Amazon CloudWatch Logs subscription events.  Part of :mod:`lambda_bulkhead.events`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from lambda_bulkhead.events._decode import (
    JsonObject,
    decode_base64,
    gunzip,
    parse_json,
)

__all__ = [
    "CloudWatchLogEvent",
    "CloudWatchLogsData",
    "CloudWatchLogsEvent",
]


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
