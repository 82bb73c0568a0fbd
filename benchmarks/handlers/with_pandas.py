"""Imports pandas and warms it up at import, as a data handler would.

Events: ``{"crash": true}`` segfaults the worker; anything else runs a small
groupby and returns ``{"t": <handler start, time.monotonic_ns()>}`` (the clock
the stand-in stamps with), as ``crash.py`` does.
"""

import time

import pandas as pd

_FRAME = pd.DataFrame({"key": [i % 7 for i in range(1000)], "value": range(1000)})
_WARM = _FRAME.groupby("key")["value"].sum()


def handler(event: dict[str, object], context: object) -> dict[str, object]:
    started = time.monotonic_ns()
    if event.get("crash"):
        import ctypes  # noqa: PLC0415  (only when crashing: not in the import cost)

        ctypes.string_at(0)  # SIGSEGV
    total = int(_FRAME.groupby("key")["value"].sum().iloc[0])
    return {"t": started, "op_ns": time.monotonic_ns() - started, "sum": total}
