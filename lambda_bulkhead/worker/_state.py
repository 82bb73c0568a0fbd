"""What one invocation may change in its worker's process, put back before the next.

A handler runs in a process that serves many invocations.  Whatever it changes
about that process, beyond its own objects, the next invocation would inherit:

* resource limits (``resource.setrlimit``: a lower ``RLIMIT_NOFILE``, a CPU limit);
* signal dispositions set from Python (``signal.signal(SIGTERM, SIG_IGN)``) and
  the main thread's signal mask;
* the main thread's CPU affinity (put back by the worker loop itself, see
  :mod:`lambda_bulkhead.process._affinity`).

:class:`ProcessState` takes their values once the worker is set up and, after
each invocation, puts back what changed.  What cannot be put back (a hard limit
lowered below its value: only privileged processes may raise one again) makes
the worker decline the next event (it goes to another worker).  It costs
about 11 µs per invocation (16 ``getrlimit`` calls, 4.5 µs; a look at 60
Python-level dispositions, 2 µs; one ``pthread_sigmask``; the comparisons),
spent after the answer is written, while the supervisor posts it; dispositions set by native code
through ``sigaction`` are not seen.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable

from lambda_bulkhead.process import _signals

__all__ = ["ProcessState"]

_LIMITS = tuple(
    getattr(resource, name) for name in sorted(dir(resource)) if name.startswith("RLIMIT_")
)


class ProcessState:
    """The worker's process-wide settings as they were when it was set up."""

    __slots__ = ("_dispositions", "_limits", "_mask", "_rearm", "_signals")

    def __init__(self, rearm: Callable[[], None] = lambda: None) -> None:
        """``rearm``: what sets up the signal handlers Python does not see again
        (faulthandler's), called after any disposition was put back."""
        self._rearm = rearm
        self._limits = self._read_limits()
        self._signals = _signals.catchable()
        self._dispositions = self._read_dispositions()
        self._mask = _signals.blocked()

    @staticmethod
    def _read_limits() -> list[tuple[int, int]]:
        return list(map(resource.getrlimit, _LIMITS))

    def _read_dispositions(self) -> list[object]:
        return list(map(_signals.getsignal, self._signals))

    def restore(self) -> bool:
        """Put back whatever the last invocation changed; False if something could
        not be (the worker should then be replaced)."""
        intact = True
        limits = self._read_limits()
        if limits != self._limits:
            for which, now, then in zip(_LIMITS, limits, self._limits, strict=True):
                if now != then:
                    try:
                        resource.setrlimit(which, then)
                    except (ValueError, OSError):
                        intact = False  # a hard limit lowered: no way back up
        dispositions = self._read_dispositions()
        if dispositions != self._dispositions:
            for signum, current, original in zip(
                self._signals, dispositions, self._dispositions, strict=True
            ):
                if current != original and original is not None:
                    with contextlib.suppress(OSError, ValueError, TypeError):
                        _signals.signal(signum, original)  # type: ignore[arg-type]
            self._rearm()
            intact = intact and self._read_dispositions() == self._dispositions
        if _signals.blocked() != self._mask:
            _signals.set_blocked(self._mask)
        return intact
