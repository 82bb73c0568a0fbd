"""The template: the process that imports the handler once and forks workers.

The supervisor forks it at start-up.  It loads the handler (an import that
raises is reported as :class:`TemplateFailed`; one that crashes the process is
seen by the supervisor as the template's death), then serves :class:`Spawn`
requests: each carries the worker's five pipe ends (SCM_RIGHTS) and is answered
with :class:`Spawned`.  A worker is therefore a ``fork()`` of an
already-imported interpreter, not a fresh import.  The template reaps its
workers and reports each death as :class:`WorkerExited` on the events pipe.

It stays single-threaded (``fork`` from a threaded process can deadlock the
child) and exits when the supervisor closes the control socket or dies.
"""

from __future__ import annotations

import _socket
import contextlib
import gc
import os
import select
import sys
from collections.abc import Callable

from lambda_bulkhead import _signals
from lambda_bulkhead._context import FunctionMeta
from lambda_bulkhead._errors import InitError
from lambda_bulkhead._handler import CoreHandler, HandlerSource, load_handler, official_handler
from lambda_bulkhead._pipes import read_available, receive_with_fds, write_parts
from lambda_bulkhead._procfs import current_rss
from lambda_bulkhead._wire import (
    FrameDecoder,
    Spawn,
    Spawned,
    TemplateFailed,
    TemplateReady,
    WireError,
    WorkerExited,
    encode,
)
from lambda_bulkhead.worker._native import line_buffer_c_stdout, set_parent_death_signal
from lambda_bulkhead.worker._worker import CurrentInvocation, WorkerFds, run_worker

__all__ = ["EXIT_LOAD_FAILED", "run_template"]

#: The template's exit status when the handler could not be loaded (reported first).
EXIT_LOAD_FAILED = 3
#: The worker's exit status when its own set-up failed before serving anything.
EXIT_WORKER_BOOT_FAILED = 4



def _load(source: HandlerSource, task_root: str) -> CoreHandler:
    if isinstance(source, str):
        return official_handler(load_handler(source, task_root))
    return source


def _send(ctl: _socket.socket, message: TemplateReady | TemplateFailed | Spawned) -> None:
    ctl.sendall(b"".join(encode(message)))


def run_template(
    ctl: _socket.socket,
    events_fd: int,
    source: HandlerSource,
    task_root: str,
    meta: FunctionMeta,
    install_logging: Callable[[CurrentInvocation], None] | None = None,
) -> int:
    """The template's main loop; returns its exit status."""
    workers: set[int] = set()

    def abandon(*_: object) -> None:
        """The supervisor is gone: take every worker's process group down with us,
        so nothing a handler started outlives the runtime."""
        for pid in workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, _signals.SIGKILL)
        os._exit(0)

    # SIGTERM when the supervisor dies (even by SIGKILL), handled by abandon().
    _signals.signal(_signals.SIGTERM, abandon)
    _signals.signal(_signals.SIGINT, _signals.SIG_IGN)
    set_parent_death_signal(_signals.SIGTERM)
    line_buffer_c_stdout()
    current = CurrentInvocation()
    if install_logging is not None:
        install_logging(current)
    try:
        handler = _load(source, task_root)
    except InitError as error:
        _send(ctl, TemplateFailed(
            error_type=error.error_type,
            error_message=error.error_message,
            stack_trace=error.stack_trace,
        ))
        return EXIT_LOAD_FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    # Objects that exist now are shared copy-on-write with every worker; keep the
    # collector from touching (and so copying) their pages in each worker.
    gc.freeze()
    _send(ctl, TemplateReady(rss=current_rss()))

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signals.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    _signals.signal(_signals.SIGCHLD, lambda *_: None)
    decoder = FrameDecoder()
    while True:
        readable, _, _ = select.select([ctl.fileno(), wake_r], [], [])
        if wake_r in readable:
            while read_available(wake_r, 512):
                pass
            workers.difference_update(_reap(events_fd))
        if ctl.fileno() not in readable:
            continue
        data, fds = receive_with_fds(ctl, 4096, 5)
        if not data:
            abandon()
        try:
            requests = decoder.feed(data)
        except WireError:
            return 70
        spawn = requests[0] if len(requests) == 1 else None
        if not isinstance(spawn, Spawn) or len(fds) != 5:
            for fd in fds:
                os.close(fd)
            return 70
        worker_fds = WorkerFds(*fds)
        pid = os.fork()
        if pid == 0:
            status = EXIT_WORKER_BOOT_FAILED
            try:
                _signals.set_wakeup_fd(-1)
                _signals.signal(_signals.SIGCHLD, _signals.SIG_DFL)
                _signals.signal(_signals.SIGTERM, _signals.SIG_DFL)
                for fd in (ctl.fileno(), events_fd, wake_r, wake_w):
                    os.close(fd)
                status = run_worker(
                    worker_fds, handler, meta, spawn.memory_limit_bytes, current
                )
            finally:
                os._exit(status)
        for fd in fds:
            os.close(fd)
        workers.add(pid)
        _send(ctl, Spawned(pid=pid))
        workers.difference_update(_reap(events_fd))


def _reap(events_fd: int) -> list[int]:
    """Report every worker that has exited (``waitpid`` status as is); their pids."""
    reaped: list[int] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)
        write_parts(events_fd, encode(WorkerExited(pid=pid, status=status)))
