"""The few readings of ``/proc`` kept where psutil is measured not to serve.

``benchmarks/procfs_vs_psutil.py`` has the figures (docs/benchmarks.md, "/proc
readers or psutil"); psutil costs 28 ms to import and every process of the
runtime reaches its first ``/next`` without it (tests/test_imports.py):

* :func:`current_rss`: each process's own RSS, read before its first ``/next``.
* :class:`RssReader`: a worker's RSS at every sample of the memory cap, which
  must hold from the first invocation, before the supervisor imports psutil
  (one ``pread`` of an fd kept open: 2 µs against psutil's 16 µs).
* :func:`parent_map` and :func:`descendants_of`: the orphan sweep, which also
  runs in workers and templates (inside signal handlers, possibly at their
  memory limit) where psutil is never imported; psutil's
  ``children(recursive=True)`` scans ``/proc`` the same way, no faster.

psutil serves the rest: a worker's descendants for the memory cap
(``supervisor/_memory.py``) and the stop-signal sender's ancestry
(``supervisor/_stopsignals.py``)."""

from __future__ import annotations

import os

__all__ = [
    "PAGE_SIZE",
    "RssReader",
    "current_rss",
    "descendants_of",
    "parent_map",
]

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


def _parent_of(pid: int) -> int | None:
    """``pid``'s parent process id (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def parent_map() -> dict[int, int]:
    """Every process's parent, from one scan of /proc (about 1 ms with 70
    processes)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            parent = _parent_of(int(name))
            if parent is not None:
                parents[int(name)] = parent
    return parents


def descendants_of(pid: int, parents: dict[int, int]) -> list[int]:
    """``pid``'s descendants in ``parents`` (a :func:`parent_map`), parents first."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, ())]
        found += frontier
    return found
