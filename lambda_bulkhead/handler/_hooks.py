"""The user's lifecycle hooks: per-worker start and end, SnapStart, ``atexit``.

A worker forked from the template inherits what the handler's import made.
Most of it survives (objects, loaded libraries); some does not: a database
connection that cannot tell it is shared, a client that holds a thread.  A
function registered with :func:`on_worker_start` runs once in each worker,
after the handler's import and before the worker's first invocation, to make
those afresh; one registered with :func:`on_worker_end` runs once when a worker
ends normally (recycled, retired, or the runtime shuts down), not when it
crashed or was killed (docs/supervision.md, "Lifecycle").  With
``--isolation none`` they run in the runtime's process, before the first
invocation and at shutdown.

SnapStart hooks are the official ``snapshot-restore-py`` library's
(``register_before_snapshot`` / ``register_after_restore``), run in the order
the official runtime runs them: before-snapshot ones last registered first,
after-restore ones in registration order.  The library is only read when the
handler's code imported it (it holds the registrations).

Registering happens at import time, in the handler's module; the lists are not
touched per invocation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    #: What ``snapshot_restore_py`` keeps per hook: (function, args, kwargs).
    _Registered: TypeAlias = tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]

__all__ = [
    "EXIT_AFTER_RESTORE_FAILED",
    "EXIT_BEFORE_SNAPSHOT_FAILED",
    "on_worker_end",
    "on_worker_start",
    "run_after_restore_hooks",
    "run_before_snapshot_hooks",
    "run_exit_functions",
    "run_worker_end_hooks",
    "run_worker_start_hooks",
]

#: The exit status of a runtime whose before-snapshot or after-restore hook failed
#: (the official runtime's own).
EXIT_BEFORE_SNAPSHOT_FAILED = 64
EXIT_AFTER_RESTORE_FAILED = 65

_START_HOOKS: list[Callable[[], object]] = []
_END_HOOKS: list[Callable[[], object]] = []


def on_worker_start(hook: Callable[[], object]) -> Callable[[], object]:
    """Run ``hook()`` at the start of each worker (usable as a decorator).

    An exception from it means the worker cannot serve: the worker exits, its
    traceback is logged, and the runtime stops (as for an error at import).
    """
    _START_HOOKS.append(hook)
    return hook


def on_worker_end(hook: Callable[[], object]) -> Callable[[], object]:
    """Run ``hook()`` when each worker ends normally (usable as a decorator):
    recycled, retired, or at shutdown, after the ``SIGTERM`` handler and before
    ``atexit`` functions.  Not after a crash, a timeout or a memory kill.

    An exception from it is written to the worker's stderr; the other end hooks
    still run.
    """
    _END_HOOKS.append(hook)
    return hook


def run_worker_start_hooks() -> None:
    """Call the registered start hooks, in the order they were registered."""
    for hook in _START_HOOKS:
        hook()


def run_worker_end_hooks() -> None:
    """Call the registered end hooks, last registered first (as ``atexit``);
    one that raises is reported on stderr and does not stop the others."""
    for hook in reversed(_END_HOOKS):
        try:
            hook()
        except Exception:  # the process is ending: say it, go on
            _print_exception(f"on_worker_end hook {_name(hook)} failed")


def _snapshot_hooks(getter: str) -> list[_Registered]:
    """The library's own list (popped from, as the official runtime does)."""
    library = sys.modules.get("snapshot_restore_py")
    if library is None:  # the handler's code registered none
        return []
    hooks: list[_Registered] = getattr(library, getter)()
    return hooks


def run_before_snapshot_hooks() -> None:
    """The before-snapshot hooks, last registered first; the first exception
    stops them and is raised (the official runtime's order and behaviour)."""
    hooks = _snapshot_hooks("get_before_snapshot")
    while hooks:
        function, args, kwargs = hooks.pop()
        function(*args, **kwargs)


def run_after_restore_hooks() -> None:
    """The after-restore hooks, in registration order; an exception is raised."""
    for function, args, kwargs in _snapshot_hooks("get_after_restore"):
        function(*args, **kwargs)


def run_exit_functions() -> None:
    """Run the ``atexit`` functions now, as the interpreter does at its exit.

    A process the runtime forked ends with ``os._exit`` (unwinding the frames
    it inherited from the supervisor would run the supervisor's code), which
    skips them; ``atexit._run_exitfuncs`` is the interpreter's own call for
    this, present since Python 2 (multiprocessing's forked children skip it,
    the best-known complaint about fork).  Each function runs once.
    """
    import atexit  # noqa: PLC0415 - at exit only

    atexit._run_exitfuncs()  # see the docstring


def _name(hook: Callable[[], object]) -> str:
    return getattr(hook, "__qualname__", repr(hook))


def _print_exception(what: str) -> None:
    import traceback  # noqa: PLC0415 - failures only

    print(f"lambda-bulkhead: {what}:", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()
