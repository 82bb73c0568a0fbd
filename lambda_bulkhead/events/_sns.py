"""Amazon SNS notifications.  Part of :mod:`lambda_bulkhead.events`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from lambda_bulkhead.events._decode import (
    JsonObject,
    parse_json,
)

__all__ = [
    "SnsEvent",
    "SnsMessage",
    "SnsMessageAttribute",
]


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
