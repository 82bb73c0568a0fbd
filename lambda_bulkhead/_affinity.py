"""Where a slot and its worker wait: one CPU for both (``BULKHEAD_COLOCATE``).

A slot's thread in the supervisor and its worker wake each other twice per
invocation (the Invoke frame, the answer).  Woken on another CPU, an idle
one, the sleeper waits for that CPU to leave its idle state: on a virtual
machine (Lambda's Firecracker included) tens of µs per hand-off, against a
few on the waker's own CPU, which the waker gives up at once by blocking.
So each slot's thread runs on one CPU of the runtime's, round robin, and its
worker's main thread waits for events on the same one; the worker widens its
affinity back to every CPU before it runs the handler, so the handler and the
threads it starts are never confined.
"""

from __future__ import annotations

import os

__all__ = ["pin_thread", "slot_cpus"]


def slot_cpus(slots: int) -> list[int | None]:
    """The CPU each of ``slots`` slots waits on (None for all when this process
    may run on fewer than two CPUs: there is nothing to choose)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [None] * slots
    return [cpus[index % len(cpus)] for index in range(slots)]


def pin_thread(cpus: set[int]) -> bool:
    """Confine the calling thread to ``cpus``; False if the kernel refuses
    (a CPU taken away by the container's cpuset, say)."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:
        return False
    return True
