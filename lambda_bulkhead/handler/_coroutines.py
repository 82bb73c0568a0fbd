"""Coroutine handlers: one event loop per thread, kept for the life of the process.

A handler written ``async def handler(event, context)`` runs on an event loop
that this module creates on the thread's first invocation and never closes, so
what the handler keeps between invocations (an aiohttp or aioboto3 session, an
``httpx.AsyncClient``, tasks it left running) stays bound to a live loop and
keeps its connections.  In a worker the loop is created after the fork, on the
first invocation, so no two processes share its selector.

The loop runs only while an invocation runs: between invocations nothing of
it executes (Lambda freezes the environment then anyway).

On the deadline signal (see :func:`report_tasks_on`) a worker writes each
pending task's stack, following the chain of awaits, in faulthandler's format:
a coroutine suspended in ``await`` has no frame on the thread's stack, so
faulthandler alone shows only the loop waiting in ``select``.

Imported only once a coroutine handler is found (it imports :mod:`asyncio`).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import threading
from collections.abc import Awaitable

from lambda_bulkhead._errors import HandlerCrash
from lambda_bulkhead.process import _signals
from lambda_bulkhead.wire._pipes import write_parts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

__all__ = ["HANDLER_TASK", "MAX_DEPTH", "MAX_TASKS", "EventLoops", "report_tasks_on", "task_stacks"]

#: The name of the task an invocation runs in, as its stack is headed.
HANDLER_TASK = "handler"


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    """A coroutine for any awaitable, so that every invocation runs in a named task."""
    return await awaitable


class EventLoops(threading.local):
    """Each thread's event loop (in-process runtimes may serve from several threads)."""

    loop: asyncio.AbstractEventLoop | None = None

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """Run ``awaitable`` to completion on this thread's loop (made on first use)."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.new_event_loop()
            # As asyncio.Runner does: code that asks for "the" loop gets this one.
            asyncio.set_event_loop(loop)
        task = loop.create_task(_awaited(awaitable), name=HANDLER_TASK)
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError as exc:
            # A BaseException only so that `except Exception` lets cancellation
            # through: the invocation's task ending cancelled is that
            # invocation's failure, not a request to end the process.
            raise HandlerCrash.from_exception(exc) from exc


#: At most this many tasks' stacks are written (a handler gathering thousands of
#: requests would otherwise fill the error body), each at most this deep
#: (faulthandler's own limit per thread).
MAX_TASKS = 20
MAX_DEPTH = 100


def task_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """The pending tasks' stacks, the invocation's task first, most recent call first,
    in faulthandler's format (``File "path", line N in name``)."""
    tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name() != HANDLER_TASK)
    parts = []
    for task in tasks[:MAX_TASKS]:
        parts.append(f"Task {task.get_name()!r} (most recent call first):\n")
        frames = _await_chain(task.get_coro())
        parts.extend(
            f'  File "{frame.f_code.co_filename}", line {frame.f_lineno} in '
            f"{frame.f_code.co_name}\n"
            for frame in reversed(frames[-MAX_DEPTH:])
        )
        if len(frames) > MAX_DEPTH:
            parts.append("  ...\n")
    if len(tasks) > MAX_TASKS:
        parts.append(f"... and {len(tasks) - MAX_TASKS} more tasks\n")
    return "".join(parts)


def _await_chain(awaitable: object) -> list[FrameType]:
    """The frames of a coroutine and of what it awaits, outermost first.

    A suspended coroutine's frame has no caller (``f_back`` is None): the
    chain is followed through what each one awaits (``cr_await``, and
    ``gi_yieldfrom``/``ag_await`` for generator-based coroutines and async
    generators) until a future or an object with no frame.
    """
    frames: list[FrameType] = []
    current: object = awaitable
    while (frame := _first_attribute(current, ("cr_frame", "gi_frame", "ag_frame"))) is not None:
        frames.append(frame)
        current = _first_attribute(current, ("cr_await", "gi_yieldfrom", "ag_await"))
    return frames


def _first_attribute(value: object, names: tuple[str, ...]) -> Any:
    for name in names:
        attribute = getattr(value, name, None)
        if attribute is not None:
            return attribute
    return None


def report_tasks_on(signum: int, fd: int, loops: EventLoops) -> None:
    """On ``signum``, write this thread's tasks' stacks to ``fd`` after faulthandler's dump.

    faulthandler's handler (registered for ``signum`` with ``all_threads``)
    stays first: it runs in the signal itself, so a handler stuck in C still
    has its stack written.  It is registered again with ``chain=True`` on top of
    a Python-level handler, which runs as soon as the main thread is back in
    the interpreter: at once when the loop waits in ``select`` (interrupted by
    the signal, which the kernel gives the main thread of a process unless it
    blocks it).  Call it from the main thread, after faulthandler's registration.
    """

    def write_task_stacks(_signum: int, _frame: FrameType | None) -> None:
        loop = loops.loop
        if loop is not None:
            # The supervisor may be gone: the signal must not raise into the handler.
            with contextlib.suppress(OSError):
                write_parts(fd, [task_stacks(loop).encode("utf-8", "replace")])

    faulthandler.unregister(signum)
    _signals.signal(signum, write_task_stacks)
    faulthandler.register(signum, file=fd, all_threads=True, chain=True)
