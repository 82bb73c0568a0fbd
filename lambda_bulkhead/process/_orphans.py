"""Processes a handler left behind, found and stopped by their subreaper.

The supervisor, the template and every worker are subreapers
(``PR_SET_CHILD_SUBREAPER``): a process whose parent dies becomes the child
of its nearest subreaper ancestor instead of init's, so a double-forked
``setsid()`` daemon stays inside the runtime's tree, where it can be found.
Each subreaper knows its own legitimate children (the template its workers,
the supervisor its template); any other child is an orphan a handler left,
and is killed with its process group.
"""

from __future__ import annotations

import contextlib
import os

from lambda_bulkhead.process import _signals
from lambda_bulkhead.process._procfs import descendants_of, parent_map

__all__ = ["kill_orphans", "kill_tree", "reap_children"]


def reap_children() -> list[tuple[int, int]]:
    """Collect every child that has exited: ``(pid, waitpid status)`` each."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def kill_orphans(legitimate: set[int]) -> None:
    """SIGKILL every child of this process but ``legitimate`` ones, with all
    they started."""
    parents = parent_map()
    me = os.getpid()
    for pid in [pid for pid, parent in parents.items() if parent == me]:
        if pid not in legitimate:
            _kill([pid, *descendants_of(pid, parents)])


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything it started, its process group included.

    The group is stopped first (``SIGSTOP``), so that nothing in it forks or
    hands its children on to a subreaper while the tree is read."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, _signals.SIGSTOP)
        else:
            os.kill(pid, _signals.SIGSTOP)
    _kill([pid, *descendants_of(pid, parent_map())])


def _kill(pids: list[int]) -> None:
    """SIGKILL ``pids`` and their process groups (never this process's own)."""
    ours = os.getpgrp()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != ours:
                os.killpg(group, _signals.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, _signals.SIGKILL)
