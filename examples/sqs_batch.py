"""An SQS batch handler that reports partial batch failures.

A message fails when its body is not JSON or says ``"fail": true``; only the
failed messages go back to the queue (and on to its dead-letter queue after
``maxReceiveCount``), the others are deleted.  The event source mapping needs
``FunctionResponseTypes: ["ReportBatchItemFailures"]``.

Try it::

    lambda-bulkhead invoke examples.sqs_batch.handler --event examples/events/sqs_batch.json
"""

from __future__ import annotations

import logging

from lambda_bulkhead import events, responses
from lambda_bulkhead._errors import InvalidEvent

logger = logging.getLogger(__name__)


class OrderRejected(Exception):
    """An order that must be retried (or dead-lettered)."""


def handler(event: object, context: object) -> dict[str, list[dict[str, str]]]:
    """Process every message; name the ones that failed."""
    batch = events.SqsEvent.decode(event)
    failed: list[str] = []
    for message in batch.records:
        try:
            process(message)
        except (InvalidEvent, OrderRejected) as exc:
            logger.warning("message %s failed: %s", message.message_id, exc)
            failed.append(message.message_id)
    return responses.batch_item_failures(failed)


def process(message: events.SqsMessage) -> None:
    """Handle one order message."""
    order = message.json()
    if not isinstance(order, dict):
        raise OrderRejected(f"expected a JSON object, got {type(order).__name__}")
    if order.get("fail") is True:
        raise OrderRejected("the order asked to fail")
    logger.info("order %s accepted", order.get("orderId"))
