"""SIGTERM and SIGINT, from whoever may stop the runtime, and from nobody else.

A handler runs as the runtime's own user, so it can ``kill`` the supervisor
like anything else of that user.  A stop signal is only obeyed when it comes
from outside the runtime's process tree (Lambda, a container runtime, the
terminal: sender pid 0 or a process that is not our descendant); one sent by
a worker, or anything a worker started, is logged and ignored.

The sender's ancestry is read with psutil (about 1 ms), which checks each
parent's start time, so a recycled pid is not taken for one of ours.  psutil
is imported on the first signal if the supervisor's first answer has not
imported it yet (28 ms), never on the way to the first ``/next``.  A sender
that has exited by the time the runtime looks cannot be placed, and is obeyed.

Python's signal handlers are not told the sender, so the two signals are
blocked in every thread of the supervisor (before its threads start; they
inherit the mask) and one thread takes them with ``sigwaitinfo``, whose answer
names the sender.  Processes forked afterwards unblock them first thing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from lambda_bulkhead.process import _signals

__all__ = ["STOP_SIGNALS", "StopSignals"]

STOP_SIGNALS = frozenset({_signals.SIGTERM, _signals.SIGINT})


class StopSignals:
    """Collects the stop signals to obey in :attr:`received`, waking the main
    thread through ``wake_fd``; ``ignored(signum, sender)`` is told of the others.

    ``obeyed()`` is called on this thread for each signal obeyed, before the
    main thread is woken: the shutdown's clock starts there, even while the
    main thread is busy (importing the log's machinery, say).
    """

    def __init__(
        self, wake_fd: int, ignored: Callable[[int, int], None],
        obeyed: Callable[[], None] = lambda: None,
    ) -> None:
        self.received: list[int] = []
        self._wake_fd = wake_fd
        self._ignored = ignored
        self._obeyed = obeyed
        self._supervisor = os.getpid()

    def start(self) -> None:
        """Block the signals in this thread (and so in every thread it starts from
        now on), and start taking them."""
        _signals.block(STOP_SIGNALS)
        threading.Thread(target=self._take, name="stop-signals", daemon=True).start()

    def _take(self) -> None:
        while True:
            signum, sender = _signals.wait_for(STOP_SIGNALS)
            if sender > 0 and self._from_our_tree(sender):
                self._ignored(signum, sender)
                continue
            self._obeyed()
            self.received.append(signum)
            try:  # noqa: SIM105 - a full pipe means the main thread is awake already
                os.write(self._wake_fd, b"t")
            except BlockingIOError:
                pass

    def _from_our_tree(self, sender: int) -> bool:
        """Whether ``sender`` descends from the supervisor (False once it is gone)."""
        import psutil  # noqa: PLC0415 - off the cold start (tests/test_imports.py)

        try:
            ancestors = psutil.Process(sender).parents()
        except psutil.Error:
            return False
        return any(parent.pid == self._supervisor for parent in ancestors)
