"""The template: the process that imports the handler once and forks workers.

The supervisor forks it at start-up.  It loads the handler (an import that
raises is reported as :class:`TemplateFailed`; one that crashes the process is
seen by the supervisor as the template's death), says how many threads and
connections the import left (:class:`TemplateReady`, :class:`TemplateNotes`),
then serves :class:`Spawn` requests: each carries the worker's seven pipe ends
(SCM_RIGHTS) and is answered with :class:`Spawned`.  A worker is therefore a
``fork()`` of an already-imported interpreter, not a fresh import.  The
template reaps its workers and reports each death as :class:`WorkerExited` on
the events pipe.

The first worker is forked as soon as the handler is loaded (``standby``,
where the supervisor will fork workers from this template and the import left
no thread): it waits for the first Spawn's pipes, which the template passes on
to it, so the fork is off the way to the first invocation.

Connections the import opened stay live in the first worker forked only; the
template then puts closed sockets in their place (:mod:`._forksafe`), so every
later worker opens its own.

Where forking the imported handler is not safe (its import started threads),
the supervisor asks the template to :class:`BecomeWorker` itself, and forks a
second template with ``load=False`` (a *zygote*): its workers import the
handler themselves after the fork, in a process that never had those threads.

It stays single-threaded (``fork`` from a threaded process can deadlock the
child) and exits when the supervisor closes the control socket or dies.

SIGTERM (the supervisor's, at shutdown) ends it normally: its workers get
SIGTERM at once, then its own SIGTERM handler runs (the one the handler's
import installed, if any), it waits up to :data:`WORKERS_END_S` for its
workers, kills what is left and runs its ``atexit`` functions.  A worker ends
the same way (:func:`~._worker.end_on_sigterm`), with its ``on_worker_end``
hooks first.

SnapStart (``snap_start``): the before-snapshot hooks run right after the
import, before :class:`TemplateReady`; the after-restore hooks when the first
worker is asked for (the supervisor asks only once ``restore/next`` returned),
and the connections the import opened are then retired for every worker, the
first included (they belong to the environment the snapshot was taken in).
A failing hook is answered :class:`TemplateFailed` and the template exits
:data:`EXIT_BEFORE_SNAPSHOT_FAILED` or :data:`EXIT_AFTER_RESTORE_FAILED`.
"""

from __future__ import annotations

import _socket
import contextlib
import gc
import os
import select
import sys
import time
from collections.abc import Callable

from lambda_bulkhead._context import FunctionMeta
from lambda_bulkhead._errors import InitError, handler_stack
from lambda_bulkhead.handler._handler import (
    CoreHandler,
    HandlerSource,
    exit_code,
    load_handler,
    official_handler,
)
from lambda_bulkhead.handler._hooks import (
    EXIT_AFTER_RESTORE_FAILED,
    EXIT_BEFORE_SNAPSHOT_FAILED,
    run_after_restore_hooks,
    run_before_snapshot_hooks,
    run_exit_functions,
    run_worker_end_hooks,
)
from lambda_bulkhead.process import _signals
from lambda_bulkhead.process._native import (
    become_subreaper,
    line_buffer_c_stdout,
    set_dumpable,
    set_parent_death_signal,
)
from lambda_bulkhead.process._orphans import kill_orphans, reap_children
from lambda_bulkhead.process._procfs import current_rss
from lambda_bulkhead.wire._frames import (
    BecomeWorker,
    FrameDecoder,
    Spawn,
    Spawned,
    TemplateFailed,
    TemplateNotes,
    TemplateReady,
    WireError,
    WorkerExited,
    encode,
)
from lambda_bulkhead.wire._pipes import (
    read_available,
    receive_with_fds,
    send_with_fds,
    write_parts,
)
from lambda_bulkhead.worker._forksafe import (
    Connection,
    inherited_connections,
    retire_connections,
    thread_count,
    threads_surviving_fork,
)
from lambda_bulkhead.worker._worker import (
    EXIT_DECLINED,
    CurrentInvocation,
    Ending,
    WorkerFds,
    become_worker_process,
    end_on_sigterm,
    run_worker,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lambda_bulkhead.wire._frames import Message

__all__ = ["EXIT_LOAD_FAILED", "WORKERS_END_S", "run_template"]

#: The template's exit status when the handler could not be loaded (reported first).
EXIT_LOAD_FAILED = 3
#: The worker's exit status when its own set-up failed before serving anything.
EXIT_WORKER_BOOT_FAILED = 4
#: How long a template stopped by SIGTERM waits for its workers to end (their
#: SIGTERM handlers, end hooks and atexit functions) before it kills them:
#: with the supervisor's grace for in-flight invocations, inside the ~500 ms
#: Lambda leaves between SIGTERM and SIGKILL.
WORKERS_END_S = 0.2


def _load(source: HandlerSource, task_root: str) -> CoreHandler:
    if isinstance(source, str):
        return official_handler(load_handler(source, task_root))
    return source


def _send(ctl: _socket.socket, *messages: Message) -> None:
    """Send ``messages`` as one packet (the supervisor reads them with one recv)."""
    ctl.sendall(b"".join(part for message in messages for part in encode(message)))


def run_template(
    ctl: _socket.socket,
    events_fd: int,
    fault_fd: int,
    source: HandlerSource,
    task_root: str,
    meta: FunctionMeta,
    install_logging: Callable[[CurrentInvocation], None] | None = None,
    *,
    load: bool = True,
    snap_start: bool = False,
    standby: bool = False,
) -> int:
    """The template's main loop; returns its exit status.

    ``load``: import the handler here, before serving (the template); else
    each worker imports it after its fork (the zygote).  ``snap_start``: run
    the SnapStart hooks (see the module's docstring).  ``standby``: fork the
    first worker as soon as the handler is loaded, if its import left no
    thread (see the module's docstring).
    """
    workers: set[int] = set()

    def abandon(*_: object) -> None:
        """The supervisor is gone: take every worker down with everything it
        started, so nothing a handler started outlives the runtime."""
        kill_orphans(set())  # every child is one now: its workers and what they left
        os._exit(0)

    def stop_workers() -> None:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _signals.SIGTERM)

    # PARENT_DIED when the supervisor dies (even by SIGKILL), handled by abandon();
    # SIGTERM is the handler's to take, and the supervisor's way to stop us.
    _signals.signal(_signals.PARENT_DIED, abandon)
    _signals.signal(_signals.SIGTERM, _signals.SIG_DFL)
    _signals.signal(_signals.SIGINT, _signals.SIG_IGN)
    set_parent_death_signal(_signals.PARENT_DIED)
    become_subreaper()
    # Unreachable through /proc, ptrace or pidfd_getfd by the handler's code (its
    # workers inherit this, and turn it back on only while they set up).
    set_dumpable(False)
    line_buffer_c_stdout()
    current = CurrentInvocation()
    if install_logging is not None:
        install_logging(current)
    handler: CoreHandler | None = None
    connections = []
    if load:
        try:
            handler = _load(source, task_root)
        except InitError as error:
            _send(ctl, TemplateFailed(
                error_type=error.error_type,
                error_message=error.error_message,
                stack_trace=error.stack_trace,
            ))
            return EXIT_LOAD_FAILED
        if snap_start:
            try:
                run_before_snapshot_hooks()
            except Exception as exc:  # any failure of the hook is the function's
                _send(ctl, _failed(exc))
                return EXIT_BEFORE_SNAPSHOT_FAILED
        sys.stdout.flush()
        sys.stderr.flush()
        # Objects that exist now are shared copy-on-write with every worker; keep
        # the collector from touching (and so copying) their pages in each worker.
        gc.freeze()
        connections = inherited_connections({ctl.fileno(), events_fd, fault_fd})
    threads = thread_count()
    ready = TemplateReady(
        rss=current_rss(), threads=threads,
        threads_surviving_fork=threads_surviving_fork() if threads > 1 else 0,
    )
    if connections:
        _send(ctl, ready, TemplateNotes(tuple(c.peer for c in connections)))
    else:
        _send(ctl, ready)

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signals.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    _signals.signal(_signals.SIGCHLD, lambda *_: None)
    end_on_sigterm(before=stop_workers)
    try:
        first: _Standby | None = None
        if standby and handler is not None and threads == 1:
            with contextlib.suppress(OSError):  # no fork now (EAGAIN, ENOMEM): when asked
                first = _Standby.fork(ctl, (events_fd, fault_fd, wake_r, wake_w), handler, meta,
                                      current)
        if first is not None:
            workers.add(first.pid)
            # The first worker keeps the live connections; no one else may use them.
            retire_connections(connections)
            connections = []
        return _serve(ctl, events_fd, fault_fd, (wake_r, wake_w), workers, handler, connections,
                      source, task_root, meta, current, abandon, restored=not snap_start,
                      first=first)
    except (Ending, SystemExit) as exc:  # SIGTERM: see the module's docstring
        return _end_template(workers, 0 if isinstance(exc, Ending) else exit_code(exc))


def _failed(exc: Exception) -> TemplateFailed:
    return TemplateFailed(
        error_type=type(exc).__name__, error_message=str(exc),
        stack_trace=tuple(handler_stack(exc)),
    )


def _serve(
    ctl: _socket.socket,
    events_fd: int,
    fault_fd: int,
    wake: tuple[int, int],
    workers: set[int],
    handler: CoreHandler | None,
    connections: list[Connection],
    source: HandlerSource,
    task_root: str,
    meta: FunctionMeta,
    current: CurrentInvocation,
    abandon: Callable[[], None],
    *,
    restored: bool,
    first: _Standby | None = None,
) -> int:
    """Serve Spawn and BecomeWorker requests; the exit status.  ``restored``:
    False until the after-restore hooks have run (SnapStart).  ``first``: a
    worker forked already, which the first Spawn gets."""
    wake_r, wake_w = wake
    decoder = FrameDecoder()
    while True:
        readable, _, _ = select.select([ctl.fileno(), wake_r], [], [])
        if wake_r in readable:
            while read_available(wake_r, 512):
                pass
            workers.difference_update(_reap(events_fd, workers))
            # What a dead worker's tree left (a daemon that left its group) came
            # to this process, its subreaper: it does not outlive its worker.
            kill_orphans(workers)
        if ctl.fileno() not in readable:
            continue
        data, fds = receive_with_fds(ctl, 4096, 7)
        if not data:
            abandon()
        try:
            requests = decoder.feed(data)
        except WireError:
            return 70
        request = requests[0] if len(requests) == 1 else None
        if not isinstance(request, Spawn | BecomeWorker) or len(fds) != 7:
            for fd in fds:
                os.close(fd)
            return 70
        worker_fds = WorkerFds.of(fds)
        if not restored:
            try:
                run_after_restore_hooks()
            except Exception as exc:  # any failure of the hook is the function's
                for fd in fds:
                    os.close(fd)
                _send(ctl, _failed(exc))
                return EXIT_AFTER_RESTORE_FAILED
            restored = True
            # Made before the snapshot: no worker may take them for its own.
            retire_connections(connections)
            connections = []
        if isinstance(request, Spawn) and first is not None:
            standby, first = first, None
            if standby.hand_over(data, fds):
                for fd in fds:
                    os.close(fd)
                _send(ctl, Spawned(pid=standby.pid))
                continue
        if isinstance(request, BecomeWorker):
            if handler is None or workers:
                return 70  # only a template that loaded and never forked may
            _send(ctl, Spawned(pid=os.getpid()))
            _leave_template(ctl, (events_fd, fault_fd, wake_r, wake_w))
            return _work(worker_fds, handler, meta, request.memory_limit_bytes, current)
        pid = os.fork()
        if pid == 0:
            status = EXIT_WORKER_BOOT_FAILED
            try:
                _leave_template(ctl, (events_fd, fault_fd, wake_r, wake_w))
                if handler is None:
                    # A worker already (its group, its fault pipe, its parent's
                    # death) while the handler's import runs in it.
                    become_worker_process(worker_fds)
                    handler = _load_in_worker(source, task_root)
                status = EXIT_LOAD_FAILED if handler is None else _work(
                    worker_fds, handler, meta, request.memory_limit_bytes, current
                )
            except Ending:  # SIGTERM before it served: it ends, nothing to say
                status = 0
            finally:
                os._exit(status)
        for fd in fds:
            os.close(fd)
        workers.add(pid)
        _send(ctl, Spawned(pid=pid))
        if connections:
            # The first worker keeps the live connections; no one else may use them.
            retire_connections(connections)
            connections = []
        workers.difference_update(_reap(events_fd, workers))


class _Standby:
    """The first worker, forked as soon as the handler is loaded: the template's
    fork (about 1 ms) is then off the first invocation's way.  It waits for the
    first Spawn's pipes, which the template hands over on a socket pair, and
    goes on as any worker."""

    def __init__(self, pid: int, sock: _socket.socket) -> None:
        self.pid = pid
        self._sock = sock

    @classmethod
    def fork(
        cls,
        ctl: _socket.socket,
        template_fds: tuple[int, ...],
        handler: CoreHandler,
        meta: FunctionMeta,
        current: CurrentInvocation,
    ) -> _Standby:
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            status = EXIT_WORKER_BOOT_FAILED
            try:
                ours.close()
                _leave_template(ctl, template_fds)
                data, fds = receive_with_fds(theirs, 4096, 7)
                theirs.close()
                requests = FrameDecoder().feed(data) if data else []
                if len(requests) != 1 or not isinstance(requests[0], Spawn) or len(fds) != 7:
                    status = 0  # not needed after all (the template ended)
                else:
                    status = _work(WorkerFds.of(fds), handler, meta,
                                   requests[0].memory_limit_bytes, current)
            except Ending:  # SIGTERM before it served: it ends, nothing to say
                status = 0
            finally:
                os._exit(status)
        theirs.close()
        return cls(pid, ours)

    def hand_over(self, spawn_frame: bytes, fds: list[int]) -> bool:
        """Give it the Spawn (its pipes attached); False if it died meanwhile."""
        try:
            send_with_fds(self._sock, spawn_frame, fds)
        except OSError:
            return False
        finally:
            self._sock.close()
        return True


def _work(
    fds: WorkerFds,
    handler: CoreHandler,
    meta: FunctionMeta,
    memory_limit_bytes: int | None,
    current: CurrentInvocation,
) -> int:
    """Serve as a worker until it ends; its exit status.

    Ending normally (the supervisor closed its pipe: recycled, retired or
    shut down; SIGTERM; a declined Invoke) runs the ``on_worker_end`` hooks;
    a crash does not.  The ``atexit`` functions run whenever the process ends
    on its own (not when killed), as they would at the interpreter's exit.
    """
    try:
        status = run_worker(fds, handler, meta, memory_limit_bytes, current)
        normal = status in (0, EXIT_DECLINED)
    except Ending:
        status, normal = 0, True
    except SystemExit as exc:  # the handler's SIGTERM handler exited, between invocations
        status, normal = exit_code(exc), True
    if normal:
        run_worker_end_hooks()
    run_exit_functions()
    _flush_stdio()
    # What the handler started does not outlive its worker.
    kill_orphans(set())
    return status


def _end_template(workers: set[int], status: int) -> int:
    """The end of a template stopped by SIGTERM (its workers were told already):
    wait for them, kill what is left, run its ``atexit`` functions."""
    end = time.monotonic() + WORKERS_END_S
    while workers and time.monotonic() < end:
        for pid, _status in reap_children():
            workers.discard(pid)
        time.sleep(0.002)
    kill_orphans(set())
    run_exit_functions()
    _flush_stdio()
    return status


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _leave_template(ctl: _socket.socket, fds: tuple[int, ...]) -> None:
    """Drop what only the template uses, in a process about to serve as a worker."""
    _signals.set_wakeup_fd(-1)
    _signals.signal(_signals.SIGCHLD, _signals.SIG_DFL)
    # SIGTERM no longer stops the template's workers, only this process.
    end_on_sigterm()
    ctl.close()
    for fd in fds:
        os.close(fd)


def _load_in_worker(source: HandlerSource, task_root: str) -> CoreHandler | None:
    """A zygote's worker imports the handler itself; None (said on stderr) if it fails.

    The template that imported it first succeeded, so a failure here is the
    import failing the second time, which is worth saying plainly.
    """
    try:
        return _load(source, task_root)
    except InitError as error:
        print(
            f"lambda-bulkhead: the worker could not import the handler: "
            f"{error.error_type}: {error.error_message}",
            file=sys.stderr, flush=True,
        )
        return None


def _reap(events_fd: int, workers: set[int]) -> list[int]:
    """Collect every exited child, report each worker's (``waitpid`` status as is)
    to the supervisor; the workers' pids."""
    reaped = []
    for pid, status in reap_children():
        if pid in workers:
            reaped.append(pid)
            write_parts(events_fd, encode(WorkerExited(pid=pid, status=status)))
    return reaped
