"""The supervisor half of lambda-bulkhead: the only process that talks to the
Runtime API.  It forks the template once, hands each invocation to a worker,
and posts exactly one answer per invocation whatever the worker does.
"""

from __future__ import annotations

import gc
import os
import time

from lambda_bulkhead._config import native_pool_environ, take_telemetry_fd
from lambda_bulkhead._errors import NotRunningInLambda

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lambda_bulkhead._config import Config
    from lambda_bulkhead.handler._handler import HandlerSource

__all__ = ["run_supervised"]


def run_supervised(config: Config, source: HandlerSource) -> int:
    """Run the supervised runtime until shutdown or a fatal error; the exit status.

    The template is forked before the supervisor imports the rest of itself,
    so the two processes import their sides in parallel.

    The cyclic garbage collector is off while the runtime imports its own
    modules, in the supervisor until its start-up record is made, in the
    template until the handler's import: at start-up it found almost nothing
    to collect, and its runs cost the cold start about 2 ms.  The handler's
    code sees it as the caller left it (on, unless ``start()`` was called
    with it off).
    """
    started = time.monotonic()
    # A missing endpoint fails here, before anything is forked.
    if config.endpoint is None:
        raise NotRunningInLambda
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _supervise(config, source, started, collecting)
    finally:
        if collecting:
            gc.enable()  # the caller's again, however the runtime ended


def _supervise(config: Config, source: HandlerSource, started: float, collecting: bool) -> int:
    from lambda_bulkhead.supervisor._fork import fork_template  # noqa: PLC0415

    # Managed runtimes: logs go to the telemetry fd, framed.  The variable leaves
    # the process environment before anything is forked, so no worker sees it.
    telemetry_fd = take_telemetry_fd(os.environ)
    # Native thread pools size themselves when the handler's import loads them:
    # several workers must share the CPUs, not start a thread per CPU each.
    os.environ.update(
        native_pool_environ(os.environ, config.workers, len(os.sched_getaffinity(0)))
    )
    # What this process holds before the runtime opens anything: later forks
    # (a zygote, a template re-created) keep these and close the rest.
    own_fds = frozenset(int(name) for name in os.listdir("/proc/self/fd"))
    # The first worker forked by the template as soon as it is ready, unless
    # workers are to import the handler themselves, or SnapStart's hooks must
    # run before it.
    standby = config.worker_start != "import" and not config.snap_start
    template = fork_template(source, config.task_root, config.function, config.log, telemetry_fd,
                             snap_start=config.snap_start, collecting=collecting,
                             standby=standby)
    from lambda_bulkhead.supervisor._supervisor import supervise  # noqa: PLC0415

    return supervise(config, source, template, telemetry_fd, started, own_fds,
                     collecting=collecting)
