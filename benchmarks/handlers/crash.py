"""Segfaults on events with ``"crash": true``; otherwise returns when it started.

``t`` is ``time.monotonic_ns()`` at the handler's start (CLOCK_MONOTONIC, the
clock the stand-in stamps with), so the driver can time crash -> next
invocation running.
"""

import time


def handler(event: dict[str, object], context: object) -> dict[str, object]:
    started = time.monotonic_ns()
    if event.get("crash"):
        import ctypes  # noqa: PLC0415  (only when crashing: not in the import cost)

        ctypes.string_at(0)  # SIGSEGV
    return {"t": started}
