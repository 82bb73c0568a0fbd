"""Memory readings from ``/proc``: cheaper than psutil on the invocation path
(one ``pread`` of an fd kept open, no 30 ms import), and enough for a worker's
own RSS; its descendants are psutil's (see ``supervisor/_memory.py``)."""

from __future__ import annotations

import os

__all__ = ["PAGE_SIZE", "RssReader", "current_rss"]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class RssReader:
    """Reads another process's RSS through an fd opened once."""

    __slots__ = ("_fd",)

    def __init__(self, pid: int) -> None:
        self._fd: int | None = os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> int | None:
        """The RSS in bytes, or None once the process is gone."""
        if self._fd is None:
            return None
        try:
            fields = os.pread(self._fd, 128, 0).split()
        except OSError:
            return None
        if len(fields) < 2:
            return None
        return int(fields[1]) * PAGE_SIZE

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

