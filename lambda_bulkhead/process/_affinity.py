"""Where a slot and its worker wait: one CPU for both (``BULKHEAD_COLOCATE``).

A slot's thread in the supervisor and its worker wake each other twice per
invocation (the Invoke frame, the answer).  Woken on another CPU, an idle
one, the sleeper waits for that CPU to leave its idle state: on a virtual
machine (Lambda's Firecracker included) tens of µs per hand-off, against a
few on the waker's own CPU, which the waker gives up at once by blocking.
So each slot's thread runs on a CPU of its own, and its worker's main thread
waits for events on the same one; the worker widens its affinity back to
every CPU before it runs the handler, so the handler and the threads it
starts are never confined.  With more slots than CPUs nothing is pinned:
slots would then share CPUs with each other's busy workers, and a pinned
thread could not move to a free CPU (3 and 4 slots pinned round robin on 2
CPUs served 3 to 6 % fewer events per second, docs/benchmarks.md).
"""

from __future__ import annotations

import os

__all__ = ["pin_thread", "slot_cpus"]


def slot_cpus(slots: int) -> list[int | None]:
    """The CPU each of ``slots`` slots waits on: one each, in order; None for
    all when this process may run on fewer than two CPUs (nothing to choose)
    or on fewer CPUs than there are slots."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or slots > len(cpus):
        return [None] * slots
    return list(cpus[:slots])


def pin_thread(cpus: set[int]) -> bool:
    """Confine the calling thread to ``cpus``; False if the kernel refuses
    (a CPU taken away by the container's cpuset, say)."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:
        return False
    return True
