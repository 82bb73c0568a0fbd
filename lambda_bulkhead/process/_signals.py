"""The signal calls and numbers the runtime uses, from the C module.

:mod:`signal` turns every signal number and handler into an enum member when
it is imported (with :mod:`enum`, about 2 ms of a cold start here); the
runtime only needs the numbers, so it takes them from ``_signal``, which the
interpreter has loaded at start-up anyway.  Names for messages still come
from :mod:`signal` (imported then): see ``supervisor/_policy.signal_name``.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub: the C half of signal
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

    Handler = Callable[[int, FrameType | None], Any] | int

__all__ = [
    "PARENT_DIED",
    "SIGCHLD",
    "SIGINT",
    "SIGKILL",
    "SIGSTOP",
    "SIGTERM",
    "SIGUSR1",
    "SIG_DFL",
    "SIG_IGN",
    "block",
    "blocked",
    "catchable",
    "default_int_handler",
    "getsignal",
    "set_blocked",
    "set_wakeup_fd",
    "signal",
    "wait_for",
]

SIGCHLD: int = _signal.SIGCHLD
SIGINT: int = _signal.SIGINT
SIGKILL: int = _signal.SIGKILL
SIGSTOP: int = _signal.SIGSTOP
SIGTERM: int = _signal.SIGTERM
SIGUSR1: int = _signal.SIGUSR1
SIG_DFL: int = _signal.SIG_DFL
#: A worker's parent-death signal: a real-time one no library uses, whose
#: handler stops everything the worker started before the worker itself.
PARENT_DIED: int = _signal.SIGRTMIN + 2
SIG_IGN: int = _signal.SIG_IGN
default_int_handler: Handler = _signal.default_int_handler


def signal(signum: int, handler: Handler) -> None:
    """``signal.signal`` (main thread only)."""
    _signal.signal(signum, handler)


def set_wakeup_fd(fd: int, *, warn_on_full_buffer: bool = True) -> None:
    """``signal.set_wakeup_fd``."""
    _signal.set_wakeup_fd(fd, warn_on_full_buffer=warn_on_full_buffer)


#: ``signal.getsignal``: the Python-level disposition (None: set by C code).
#: The C function itself: the worker calls it for every signal per invocation.
getsignal: Callable[[int], object] = _signal.getsignal


def catchable() -> tuple[int, ...]:
    """Every signal number whose disposition a process may change."""
    return tuple(
        signum for signum in sorted(_signal.valid_signals())
        if signum not in (_signal.SIGKILL, _signal.SIGSTOP)
    )


def blocked() -> frozenset[int]:
    """The calling thread's signal mask."""
    return frozenset(_signal.pthread_sigmask(_signal.SIG_BLOCK, ()))


def set_blocked(mask: frozenset[int]) -> None:
    """Make ``mask`` the calling thread's signal mask."""
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


def block(signals: frozenset[int]) -> None:
    """Add ``signals`` to the calling thread's mask."""
    _signal.pthread_sigmask(_signal.SIG_BLOCK, signals)


def wait_for(signals: frozenset[int]) -> tuple[int, int]:
    """Wait for one of ``signals`` (blocked in every thread); it and its sender's pid
    (0 when the kernel sent it)."""
    info = _signal.sigwaitinfo(signals)
    return int(info.si_signo), int(info.si_pid)
