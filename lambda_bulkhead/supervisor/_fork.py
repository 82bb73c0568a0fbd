"""Forking the template: first thing, from a supervisor that has imported
almost nothing yet; later, a zygote or a template re-created, from one that
is serving.

The template then imports the worker's modules and the handler while the
supervisor imports its own, in parallel, which takes the larger of the two
import times off the cold start instead of their sum.  What both sides run
(the OS edge, the wire's frames and pipes) is imported here, before the fork,
once for both: on Lambda a function under 1,769 MB has less than one vCPU, so
the two imports share a CPU and what both would import costs twice.  The
child imports the worker's own modules after the fork.
"""

from __future__ import annotations

import _socket
import contextlib
import enum  # noqa: F401 (both sides': see above)
import gc
import os
import sys

from lambda_bulkhead._record import NamedTuple

# Both sides' (see above): imported for their cost before the fork, not for names.
from lambda_bulkhead.handler import _hooks  # noqa: F401
from lambda_bulkhead.process import _affinity, _native, _orphans, _signals  # noqa: F401
from lambda_bulkhead.wire import _frames, _pipes  # noqa: F401

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lambda_bulkhead._config import FunctionMeta, LogSettings
    from lambda_bulkhead.handler._handler import CurrentInvocation, HandlerSource

__all__ = ["TemplateHandles", "fork_template"]


class TemplateHandles(NamedTuple):
    """The supervisor's ends of the template: its control socket, events and fault
    pipes, and its stdout and stderr pipes (non-blocking read ends)."""

    pid: int
    ctl: _socket.socket
    events_r: int
    fault_r: int
    stdout_r: int
    stderr_r: int


def fork_template(
    source: HandlerSource,
    task_root: str,
    meta: FunctionMeta,
    log: LogSettings,
    log_fd: int | None,
    *,
    load: bool = True,
    keep_fds: frozenset[int] | None = None,
    snap_start: bool = False,
    collecting: bool = True,
    standby: bool = False,
) -> TemplateHandles:
    """Fork the template process that loads ``source`` and forks workers.

    The template does not keep ``log_fd`` (the telemetry fd): only the
    supervisor writes to it, and the workers, forked from the template, never
    see it.  ``load=False`` forks a zygote, whose workers import the handler
    themselves.  ``keep_fds``: forked from a supervisor already serving (a
    zygote, a template re-created), the child closes every fd but these (the
    process's own from before the supervisor started) and its pipes, so that
    no worker holds the supervisor's Runtime API connections or another
    worker's pipes.  ``snap_start``: the template runs the SnapStart hooks.
    ``collecting``: the cyclic garbage collector is turned on in the template
    (it inherits the supervisor's, off at start-up) once the worker's modules
    are imported, before the handler's.  ``standby``: the template forks the
    first worker as soon as the handler is loaded (if its import left no
    thread), and gives it the first Spawn's pipes.
    """
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    events_r, events_w = os.pipe2(os.O_CLOEXEC)
    fault_r, fault_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    os.set_blocking(out_w, True)
    os.set_blocking(err_w, True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        status = 70
        try:
            # Forked from a supervisor that may take its stop signals on a thread
            # of its own (they are blocked in its other threads): not here.
            _signals.set_blocked(frozenset())
            ours.close()
            for fd in (events_r, fault_r, out_r, err_r, *([] if log_fd is None else [log_fd])):
                os.close(fd)
            if keep_fds is not None:
                _close_fds_except(keep_fds | {theirs.fileno(), events_w, fault_w, out_w, err_w})
            import faulthandler  # noqa: PLC0415

            faulthandler.enable(file=fault_w, all_threads=True)
            from lambda_bulkhead.worker._child import take_output_pipes  # noqa: PLC0415

            take_output_pipes(out_w, err_w)
            status = _template_main(theirs, events_w, fault_w, source, task_root, meta, log,
                                    load, snap_start, collecting, standby)
        finally:
            os._exit(status)
    theirs.close()
    for fd in (events_w, fault_w, out_w, err_w):
        os.close(fd)
    return TemplateHandles(pid, ours, events_r, fault_r, out_r, err_r)


def _close_fds_except(keep: frozenset[int] | set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:  # 0, 1 and 2 are set up by the caller
            with contextlib.suppress(OSError):  # the listing's own fd, closed already
                os.close(fd)


def _template_main(
    ctl: _socket.socket,
    events_w: int,
    fault_w: int,
    source: HandlerSource,
    task_root: str,
    meta: FunctionMeta,
    log: LogSettings,
    load: bool,
    snap_start: bool,
    collecting: bool,
    standby: bool,
) -> int:
    # Imported here, in the template, while the supervisor imports its own side.
    from lambda_bulkhead._lazy import when_imported  # noqa: PLC0415
    from lambda_bulkhead.worker import run_template  # noqa: PLC0415

    if collecting:
        gc.enable()

    def install_logging(current: CurrentInvocation) -> None:
        def install(_: object) -> None:
            from lambda_bulkhead.logs._stdlib import install_worker_logging  # noqa: PLC0415

            install_worker_logging(
                1, log.format, log.level,
                lambda: current.request_id, lambda: current.tenant_id,
            )

        # Only once something imports logging (the handler's module, usually):
        # a handler that never logs does not pay for it on the cold start.
        when_imported("logging", install)

    return run_template(ctl, events_w, fault_w, source, task_root, meta, install_logging,
                        load=load, snap_start=snap_start, standby=standby)
