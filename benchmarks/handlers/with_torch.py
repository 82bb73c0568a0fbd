"""Imports torch and runs a 256x256 matmul at import, as a model handler's
warm-up does: that starts GNU OpenMP's thread pool in the importing process.

Events: ``{"crash": true}`` segfaults the worker; ``{"matmul": true}`` runs
a 256x256 matmul (a parallel region: it hangs in a worker forked from the
template, issue 13); anything else runs a small op that stays on the calling
thread, so that forked workers answer too.  Answers carry ``{"t": <handler
start, time.monotonic_ns()>}``, as ``crash.py``'s do.
"""

import time

import torch

_A = torch.randn(256, 256)
_B = torch.randn(256, 256)
_WARM = _A @ _B
_SMALL = torch.arange(64, dtype=torch.float32)


def handler(event: dict[str, object], context: object) -> dict[str, object]:
    started = time.monotonic_ns()
    if event.get("crash"):
        import ctypes  # noqa: PLC0415  (only when crashing: not in the import cost)

        ctypes.string_at(0)  # SIGSEGV
    if event.get("matmul"):
        return {"t": started, "sum": float((_A @ _B).sum())}
    total = float((_SMALL * 2).sum())
    return {"t": started, "op_ns": time.monotonic_ns() - started, "sum": total}
