"""The supervisor's decisions as pure functions: no processes, no clocks read here.

* :func:`describe_exit` / :func:`crash_error`: a ``waitpid`` status in Lambda's words.
* :func:`kill_time`: when a worker is stopped ahead of the invocation's deadline.
* :func:`timeout_error`, :func:`oom_error`: what is posted when it is;
  :func:`function_timeout`: the configured timeout the first one names.
* :class:`RestartPolicy`: the restart-storm guard.
* :func:`recycle_after`: max-invocations recycling with jitter.
* :func:`fault_stack`: faulthandler's text as ``stackTrace`` lines.
* :func:`choose_worker_start`: fork workers from the template, or have them import.
"""

from __future__ import annotations

import functools
import math
import os

from lambda_bulkhead._errors import InvocationError, runtime_exited
from lambda_bulkhead._record import NamedTuple

__all__ = [
    "RestartPolicy",
    "WorkerStart",
    "choose_worker_start",
    "crash_error",
    "describe_exit",
    "fault_stack",
    "function_timeout",
    "kill_time",
    "killed_for_memory_error",
    "name_of_signal",
    "oom_error",
    "recycle_after",
    "suspected_cause",
    "timeout_error",
]

@functools.cache
def _signal_words() -> dict[int, str]:
    """The words Lambda's (Go) platform uses for each signal, so a crash reads as
    it does when a runtime dies on Lambda: "Runtime exited with error: signal:
    killed".  Built on the first crash: :mod:`signal` stays off the cold start."""
    import signal  # noqa: PLC0415

    return {
        signal.SIGABRT: "aborted",
        signal.SIGALRM: "alarm clock",
        signal.SIGBUS: "bus error",
        signal.SIGFPE: "floating point exception",
        signal.SIGHUP: "hangup",
        signal.SIGILL: "illegal instruction",
        signal.SIGINT: "interrupt",
        signal.SIGKILL: "killed",
        signal.SIGPIPE: "broken pipe",
        signal.SIGQUIT: "quit",
        signal.SIGSEGV: "segmentation fault",
        signal.SIGSYS: "bad system call",
        signal.SIGTERM: "terminated",
        signal.SIGTRAP: "trace/breakpoint trap",
        signal.SIGUSR1: "user defined signal 1",
        signal.SIGUSR2: "user defined signal 2",
        signal.SIGXCPU: "CPU time limit exceeded",
        signal.SIGXFSZ: "file size limit exceeded",
    }


def describe_exit(status: int) -> str:
    """``signal: segmentation fault`` or ``exit status 3`` for a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        return f"signal: {_signal_words().get(signum, f'signal {signum}')}"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"status {status}"


def signal_name(status: int) -> str | None:
    """``SIGSEGV`` for a status that is a death by that signal, else None."""
    if not os.WIFSIGNALED(status):
        return None
    return name_of_signal(os.WTERMSIG(status))


def name_of_signal(signum: int) -> str:
    """``SIGTERM`` for 15 (:mod:`signal` imported then, not at start)."""
    import signal  # noqa: PLC0415

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


_NATIVE_FAULTS = frozenset({"SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"})


def suspected_cause(status: int | None) -> str | None:
    """What most likely ended a worker that died by itself (the supervisor did
    not kill it), for the ``worker died`` record; None when nothing is suspected."""
    if status is None:
        return None
    name = signal_name(status)
    if name == "SIGKILL":
        return "memory: killed from outside the runtime, as the kernel's OOM killer does"
    if name in _NATIVE_FAULTS:
        return "native code: a C extension or ctypes call faulted"
    if name is None:
        return "the process exited: sys.exit, os._exit or a C exit() in the handler"
    return None


def crash_error(request_id: str, status: int | None, stack: list[str]) -> InvocationError:
    """``Runtime.ExitError`` for a worker that died during an invocation."""
    reason = describe_exit(status) if status is not None else "exit status unknown"
    return InvocationError("Runtime.ExitError", runtime_exited(reason, request_id), stack)


def kill_time(
    deadline_ms: int, margin_ms: int, now_wall: float, now_monotonic: float
) -> float | None:
    """The ``time.monotonic()`` value at which to stop the worker, or None when
    the invocation has no deadline.  A deadline already past gives ``now``."""
    if deadline_ms <= 0:
        return None
    remaining = (deadline_ms - margin_ms) / 1000.0 - now_wall
    return now_monotonic + max(0.0, remaining)


def function_timeout(configured_s: float | None, deadline_ms: int, received_wall: float) -> float:
    """The function's configured timeout in seconds, as Lambda's timeout line names it.

    ``configured_s`` is ``AWS_LAMBDA_FUNCTION_TIMEOUT`` where it is set (the RIE and
    the project's emulator set it).  Lambda does not tell a runtime its timeout, so
    otherwise it is the time from receiving the event (``received_wall``, epoch s)
    to its deadline, rounded up to whole seconds: Lambda timeouts are whole seconds
    (at least 1) and the event arrives a little after the deadline was set.
    """
    if configured_s:
        return configured_s
    remaining_s = deadline_ms / 1000.0 - received_wall
    return float(max(1, math.ceil(remaining_s)))


def timeout_error(timeout_s: float, stack: list[str]) -> InvocationError:
    """``Sandbox.Timedout``, worded as Lambda's own timeout line: the function's
    timeout (:func:`function_timeout`), not the time the handler had, which the
    margin shortened."""
    message = f"Task timed out after {timeout_s:.2f} seconds"
    return InvocationError("Sandbox.Timedout", message, stack)


def oom_error(cap_mb: float, peak_mb: float) -> InvocationError:
    """``Runtime.OutOfMemory`` for a worker stopped past its cap.  The peak is
    rounded up: one a little past a 256 MB cap reads 257 MB, never 256."""
    return InvocationError(
        "Runtime.OutOfMemory",
        runtime_exited(
            f"worker memory exceeded the per-invocation cap of {cap_mb:.0f} MB "
            f"(peak seen {math.ceil(peak_mb)} MB above the worker's baseline)"
        ),
    )


def killed_for_memory_error(request_id: str, stack: list[str]) -> InvocationError:
    """``Runtime.OutOfMemory`` for a worker the kernel's OOM killer stopped, in
    the words Lambda uses when it stops a runtime for memory."""
    message = runtime_exited("signal: killed", request_id)
    return InvocationError("Runtime.OutOfMemory", message, stack)


def fault_stack(text: str, runtime_dir: str) -> list[str]:
    """faulthandler output as ``stackTrace`` lines: the frame lines, the runtime's
    own frames left out, each thread's header kept so threads stay apart."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("Fatal Python error"):
            continue
        if stripped.startswith("File ") and (
            runtime_dir in stripped or '"<frozen runpy>"' in stripped
        ):
            continue  # the runtime's frames, and `python -m`'s that started it
        if stripped.startswith(("Extension modules:", "<no Python frame>")):
            continue
        lines.append(line.rstrip() + "\n")
    return lines


class RestartPolicy(NamedTuple):
    """The restart-storm guard, in the spirit of an OTP supervisor's intensity.

    A worker that dies without completing an invocation counts one crash; a
    worker that completes an invocation resets the count.  The first
    ``free_restarts`` replacements are immediate; then each waits
    ``base_delay_s`` doubled per crash, at most ``max_delay_s``; past
    ``give_up_after`` consecutive crashes the runtime exits non-zero so that
    Lambda re-initialises the environment.
    """

    free_restarts: int = 3
    base_delay_s: float = 0.01
    max_delay_s: float = 1.0
    give_up_after: int = 20

    def delay(self, consecutive_crashes: int) -> float | None:
        """Seconds to wait before replacing a worker; None: give up."""
        if consecutive_crashes >= self.give_up_after:
            return None
        if consecutive_crashes <= self.free_restarts:
            return 0.0
        exponent = consecutive_crashes - self.free_restarts - 1
        return min(self.max_delay_s, self.base_delay_s * float(2**exponent))


def recycle_after(max_invocations: int, jitter: float) -> int | None:
    """Invocations before a worker is recycled: ``max_invocations`` plus up to 10 %
    (``jitter`` in [0, 1)), so workers started together do not all recycle at once."""
    if max_invocations <= 0:
        return None
    return max_invocations + int(max_invocations * 0.1 * jitter)


class WorkerStart(NamedTuple):
    """How workers get the handler, and why (the ``worker start`` record)."""

    #: ``fork``: forked from the template that imported the handler;
    #: ``import``: the template serves as the first worker and every other
    #: worker imports the handler itself, forked from a zygote that never did.
    mode: str
    reason: str


def choose_worker_start(
    setting: str, threads: int, by_name: bool, surviving_fork: int = 0
) -> WorkerStart:
    """The worker start for ``BULKHEAD_WORKER_START=setting``, given the threads
    the template has after importing the handler, ``surviving_fork`` of them in
    pools known to survive fork (``by_name``: the handler is a
    ``module.function`` a fresh process can import)."""
    if not by_name:
        return WorkerStart("fork", "the handler is a function, not a module a worker could import")
    if setting == "import":
        return WorkerStart("import", "BULKHEAD_WORKER_START=import")
    at_risk = threads - surviving_fork
    if setting == "fork":
        if at_risk > 1:
            return WorkerStart(
                "fork",
                f"BULKHEAD_WORKER_START=fork, although the handler's import left {threads} "
                "threads: a native pool that does not survive fork (GNU OpenMP) will hang",
            )
        return WorkerStart("fork", "BULKHEAD_WORKER_START=fork")
    if at_risk > 1:
        return WorkerStart(
            "import",
            f"the handler's import left {threads} threads running, and a forked copy of "
            "a thread pool can hang: each worker imports the handler itself "
            "(BULKHEAD_WORKER_START=fork forks anyway)",
        )
    if surviving_fork:
        return WorkerStart(
            "fork",
            f"the handler's import left {threads} threads, all but the main one "
            "OpenBLAS's pool, which survives fork",
        )
    return WorkerStart("fork", "the handler's import left no thread running")
