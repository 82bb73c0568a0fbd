"""The smallest handler: written for the official runtime, unchanged here."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Greet whoever the event names, with a few context attributes."""
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    return {
        "message": f"hello, {name}",
        "requestId": context.aws_request_id,
        "function": context.function_name,
        "remainingMs": context.get_remaining_time_in_millis(),
    }
