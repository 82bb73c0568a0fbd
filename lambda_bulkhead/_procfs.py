"""Memory readings from ``/proc``: cheaper than psutil on the invocation path
(one ``pread`` of an fd kept open), and enough for the memory watch."""

from __future__ import annotations

import os

__all__ = ["PAGE_SIZE", "PeakMeter", "RssReader", "current_data_size", "current_rss"]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def current_data_size() -> int:
    """This process's private writable memory in bytes (what RLIMIT_DATA counts)."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmData:"):
                return int(line.split()[1]) * 1024
    return 0


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


class PeakMeter:
    """Another process's peak RSS since the last :meth:`reset`: its ``VmHWM``,
    reset by writing ``5`` to ``/proc/<pid>/clear_refs``.

    Exact where sampling is not: the kernel updates the high-water mark before
    memory is unmapped, so a 100 MB buffer that lives 1 ms between two samples
    still counts.  Both files stay open (a ``write`` and a ``pread`` per
    invocation, about 10 us together).  Where the kernel does not offer them,
    :attr:`available` is False and the caller falls back to sampling.
    """

    __slots__ = ("_clear_fd", "_status_fd", "pid")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._status_fd: int | None = None
        self._clear_fd: int | None = None
        try:
            self._status_fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
            self._clear_fd = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self.close()

    @property
    def available(self) -> bool:
        return self._clear_fd is not None

    def reset(self) -> bool:
        """Start a new peak at the current RSS; False if that failed."""
        if self._clear_fd is None:
            return False
        try:
            os.write(self._clear_fd, b"5")
        except OSError:
            return False
        return True

    def read(self) -> int | None:
        """The peak RSS in bytes since the last reset, or None (process gone)."""
        if self._status_fd is None:
            return None
        try:
            text = os.pread(self._status_fd, 4096, 0)
        except OSError:
            return None
        start = text.find(b"VmHWM:")
        if start < 0:
            return None
        fields = text[start + 6 : text.find(b"\n", start)].split()
        return int(fields[0]) * 1024 if fields else None

    def close(self) -> None:
        for fd in (self._status_fd, self._clear_fd):
            if fd is not None:
                os.close(fd)
        self._status_fd = self._clear_fd = None
