"""Amazon EventBridge events, scheduled events included.  Part of :mod:`lambda_bulkhead.events`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from lambda_bulkhead.events._decode import (
    JsonObject,
)

__all__ = [
    "EventBridgeEvent",
    "ScheduledEvent",
]


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
