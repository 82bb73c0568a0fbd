"""Readings from ``/proc`` for the template and the invocation path, where
psutil's 30 ms import (and its memory, in every worker forked afterwards) is
not worth it: a worker's own RSS (one ``pread`` of an fd kept open), and a
process's parent and children.  The supervisor's memory watch uses psutil for
a worker's descendants (``supervisor/_memory.py``)."""

from __future__ import annotations

import os

__all__ = [
    "PAGE_SIZE",
    "RssReader",
    "current_rss",
    "descendants_of",
    "descends_from",
    "parent_map",
    "parent_of",
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



def parent_of(pid: int) -> int | None:
    """``pid``'s parent process id (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def parent_map() -> dict[int, int]:
    """Every process's parent, from one scan of /proc (about 1 ms with 80
    processes; psutil would do the same after a 30 ms import)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            parent = parent_of(int(name))
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


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether ``pid`` is ``ancestor``'s descendant (False once it is gone)."""
    for _ in range(64):  # deeper than any real process tree; no loop forever
        parent = parent_of(pid)
        if parent is None or parent <= 1:
            return False
        if parent == ancestor:
            return True
        pid = parent
    return False
