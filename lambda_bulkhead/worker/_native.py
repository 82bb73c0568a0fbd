"""The few libc calls Python does not expose, through ctypes.

Loaded once in the template (so workers inherit the loaded library); each call
degrades to a no-op where the C library does not have it.
"""

from __future__ import annotations

import ctypes
import functools
import os

__all__ = ["flush_c_stdio", "line_buffer_c_stdout", "set_parent_death_signal"]

_PR_SET_PDEATHSIG = 1
_IOLBF = 1


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
