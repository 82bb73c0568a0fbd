"""The few libc calls Python does not expose, through ctypes.

Loaded once per process (workers inherit the template's); each call degrades
to a no-op where the C library does not have it.
"""

from __future__ import annotations

import ctypes
import functools
import os

__all__ = [
    "become_subreaper",
    "flush_c_stdio",
    "keep_heap",
    "line_buffer_c_stdout",
    "set_dumpable",
    "set_parent_death_signal",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_IOLBF = 1
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations below this come from the heap, not from a fresh mmap: a 6 MB
#: event, its copies and the text parsed from it all fit.
MMAP_THRESHOLD = 8 * 1024 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies."""
    libc = _libc()
    parent = os.getppid()
    if libc is not None and hasattr(libc, "prctl"):
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signum)


def set_dumpable(dumpable: bool) -> None:
    """``PR_SET_DUMPABLE``: while off, no other process of the same user may open
    this one's ``/proc/<pid>/fd``, ``ptrace`` it or take its fds with
    ``pidfd_getfd`` (so a handler cannot reach another worker's pipes or the
    supervisor's sockets).  Its ``/proc/<pid>`` files then belong to root: a
    process that must write its own ``/proc/self`` files does so first."""
    libc = _libc()
    if libc is not None and hasattr(libc, "prctl"):
        libc.prctl(_PR_SET_DUMPABLE, int(dumpable), 0, 0, 0)


def become_subreaper() -> bool:
    """``PR_SET_CHILD_SUBREAPER``: orphans among this process's descendants (a
    handler's double-forked daemon) become its children instead of init's, so it
    can find and stop them; whether the kernel agreed."""
    libc = _libc()
    if libc is None or not hasattr(libc, "prctl"):
        return False
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def keep_heap(trim_bytes: int) -> None:
    """Fix glibc's malloc thresholds: large buffers come from the heap, and up to
    ``trim_bytes`` of free heap stays with the process instead of going back to
    the kernel.

    Left dynamic, glibc returns the heap top after each large event and the
    next event's buffers page-fault in afresh: a few hundred faults per 1 MiB
    event, which in this VM cost more than the copies themselves
    (docs/benchmarks.md).  The memory kept counts in the worker's RSS, so the
    caller keeps ``trim_bytes`` well under its memory cap.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, trim_bytes)


def line_buffer_c_stdout() -> None:
    """Make C's ``stdout`` line-buffered, so a native ``printf`` reaches the pipe
    at each newline instead of dying in a buffer when the process crashes."""
    libc = _libc()
    if libc is None or not hasattr(libc, "setvbuf"):
        return
    try:
        stdout = ctypes.c_void_p.in_dll(libc, "stdout")
    except ValueError:
        return
    libc.setvbuf(stdout, None, _IOLBF, 0)


def flush_c_stdio() -> None:
    """``fflush(NULL)``: push out whatever native code left in C stdio buffers."""
    libc = _libc()
    if libc is not None and hasattr(libc, "fflush"):
        libc.fflush(None)
