"""Per-worker start hooks: code to run in each worker before its first invocation.

A worker forked from the template inherits what the handler's import made.
Most of it survives (objects, loaded libraries); some does not: a database
connection that cannot tell it is shared, a client that holds a thread.  A
function registered with :func:`on_worker_start` runs once in each worker,
after the handler's import and before the worker's first invocation, to make
those afresh (docs/supervision.md).  With ``--isolation none`` it runs once in
the runtime's process, before the first invocation.

Registering happens at import time, in the handler's module; the list is not
touched per invocation.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["on_worker_start", "run_worker_start_hooks"]

_START_HOOKS: list[Callable[[], object]] = []


def on_worker_start(hook: Callable[[], object]) -> Callable[[], object]:
    """Run ``hook()`` at the start of each worker (usable as a decorator).

    An exception from it means the worker cannot serve: the worker exits, its
    traceback is logged, and the runtime stops (as for an error at import).
    """
    _START_HOOKS.append(hook)
    return hook


def run_worker_start_hooks() -> None:
    """Call the registered start hooks, in the order they were registered."""
    for hook in _START_HOOKS:
        hook()
