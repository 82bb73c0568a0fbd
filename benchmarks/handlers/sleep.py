"""Sleeps 10 ms: the concurrency benchmark's handler."""

import time


def handler(event: dict[str, object], context: object) -> dict[str, object]:
    time.sleep(0.01)
    return {"ok": True}
