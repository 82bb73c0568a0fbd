"""The slot's decisions, with no I/O: from what was observed of a worker and the
invocation it runs, to what is answered, what becomes of the worker, and what
is reported.

The slot (:mod:`lambda_bulkhead.supervisor._slot`) is the shell around this
core: it waits on the worker's fds, reads its frames, kills and reaps it and
forwards its output; each time it has observed something it asks a function
here what follows, and applies the answer.  The wording of each error is in
:mod:`lambda_bulkhead.supervisor._policy`.

What an invocation gets (a :class:`Verdict`), by what was observed::

    observed                             outcome  answered                        worker
    1. Result in turn                    success  the response                    kept*
    2. Failure in turn                   error    its error (Runtime.ExitError    kept*; replaced
                                                  for sys.exit, KeyboardInterrupt) if fatal
    3. Failure Runtime.OutOfMemory       oom      that error                      as 2
    4. Declined in turn                  -        run on another worker           replaced
    5. in turn for another request id,   crash    Runtime.ExitError "worker       killed
       or a malformed frame                       protocol violation (...)"
    6. died: a signal, an exit status    crash    Runtime.ExitError, Lambda's     replaced
       (segfault, abort, os._exit(n))             words: "signal: segmentation
                                                  fault", "exit status 3"
    7. died of SIGKILL, the kernel       oom      Runtime.OutOfMemory             replaced
       recorded an OOM kill                       "signal: killed"
    8. died just after answering         as its answer                            replaced
    9. its kill time (deadline - margin) timeout  Sandbox.Timedout                killed
    10. memory above the cap             oom      Runtime.OutOfMemory             killed
    11. the shutdown grace ran out       crash    Runtime.ExitError               killed
    12. event came at its kill time      timeout  Sandbox.Timedout, not run       kept
    13. no frame can carry the event     error    Runtime.UnmarshalError, not run kept
    14. StreamStart, Chunks, StreamEnd   success  the stream, each chunk written  kept*
        in turn                                   before the next is read
    15. a stream's frames out of order,  crash    as row 5                        killed
        or past the 200 MiB limit

After a stream's first byte, rows 2-11 give the same verdict; the loop sends
its error as the stream's trailers instead of posting ``/error``.

\\* kept unless (:func:`dispose`) it wrote a frame out of turn (blamed on it,
replaced after the answer in flight), closed its stdout or stderr, or reached
its recycling count.  A worker found dead, out of turn or retiring while idle
is replaced before it is given an event (:func:`idle_replacement`).

Crash counting (the restart-storm guard, :class:`CrashCounter`): a crash (5,
6, 11) counts one; an answer (1, 2) resets the count; timeouts and running out
of memory (3, 7, 9, 10) leave it alone: a handler that times out because a
dependency is down must not make the runtime back off or give up.
"""

from __future__ import annotations

import enum
import threading

from lambda_bulkhead._errors import InvocationError, RestartStorm, runtime_exited
from lambda_bulkhead._record import NamedTuple
from lambda_bulkhead.handler._handler import Answer
from lambda_bulkhead.supervisor._policy import (
    RestartPolicy,
    crash_error,
    killed_for_memory_error,
    oom_error,
    signal_name,
    timeout_error,
)
from lambda_bulkhead.wire._frames import (
    RETIRE_OUTPUT_LOST,
    RETIRE_REASONS,
    Chunk,
    Declined,
    Failure,
    Result,
    StreamEnd,
    StreamStart,
)

__all__ = [
    "CHANGED_FOR_GOOD",
    "DIED_WHILE_IDLE",
    "OUTPUT_LOST",
    "WROTE_OUT_OF_TURN",
    "CrashCounter",
    "Disposal",
    "IdleReplacement",
    "InvocationReport",
    "Outcome",
    "Rerun",
    "Verdict",
    "answer_verdict",
    "deadline_verdict",
    "death_verdict",
    "dispose",
    "idle_replacement",
    "late_verdict",
    "may_be_oom_kill",
    "memory_verdict",
    "out_of_turn_reason",
    "over_memory_cap",
    "restart_storm",
    "shutdown_verdict",
    "shutting_down_error",
    "stream_frame_violation",
    "unframable_verdict",
    "violation_verdict",
]

#: The ``worker replaced`` reason of a worker that declined an event (see
#: :class:`~lambda_bulkhead.wire._frames.Declined`).
CHANGED_FOR_GOOD = "changed its process state for good"
#: The ``worker replaced`` reason of a worker that wrote a frame out of turn.
WROTE_OUT_OF_TURN = "wrote out of turn"
#: The ``worker replaced`` reason of a worker found dead before an Invoke.
DIED_WHILE_IDLE = "died while idle"
#: Why a worker that closed its fd 1 or 2 is replaced: every later line would be lost.
OUTPUT_LOST = RETIRE_REASONS[RETIRE_OUTPUT_LOST]


class Outcome(enum.StrEnum):
    """What the summary record says happened (its ``outcome``).  A ``str``: the
    value is what the record shows."""

    SUCCESS = "success"
    ERROR = "error"
    CRASH = "crash"
    TIMEOUT = "timeout"
    OOM = "oom"


class InvocationReport(NamedTuple):
    """What the per-invocation summary record says."""

    request_id: str
    tenant_id: str | None
    outcome: Outcome
    duration_ms: float
    max_memory_mb: float
    worker_pid: int
    worker_replaced: bool
    error_type: str | None = None
    signal: str | None = None
    stack: tuple[str, ...] = ()
    error_message: str | None = None


class Verdict(NamedTuple):
    """What one invocation gets, once it is decided."""

    outcome: Outcome
    #: The response (for a success).
    answer: Answer | None = None
    #: The error posted (for every other outcome).
    error: InvocationError | None = None
    #: The worker goes after this answer: it died, was killed, or cannot be trusted.
    replace: bool = False
    #: The signal that ended the worker, for the report.
    signal: str | None = None
    #: The peak RSS the worker's answer reported (0: none).
    peak: int = 0
    #: A protocol violation: the worker is to be killed now, and this logged.
    violation: str | None = None


class Rerun(NamedTuple):
    """The worker declined the event without running it: replace it (for
    ``reason``) and run the event on another worker."""

    reason: str = CHANGED_FOR_GOOD


_RERUN = Rerun()


# -- an answer read from the worker ----------------------------------------------------


def answer_verdict(
    message: Result | Failure | Declined | StreamEnd, request_id: str, *, streaming: bool = False
) -> Verdict | Rerun:
    """The verdict on the frame that came back in turn for the Invoke of
    ``request_id`` (rows 1-5, 14-15); ``streaming``: a StreamStart came first."""
    kind = type(message)
    if streaming and kind is not StreamEnd and kind is not Failure:
        return violation_verdict(request_id, f"a {kind.__name__} ends a streamed answer")
    if kind is StreamEnd:
        if not streaming:
            return violation_verdict(request_id, "a StreamEnd with no stream begun")
        assert isinstance(message, StreamEnd)  # (for the type checker)
        return Verdict(Outcome.SUCCESS, answer=_STREAMED_ANSWER, peak=message.peak_rss)
    if kind is Declined:
        return _RERUN
    assert not isinstance(message, Declined | StreamEnd)  # (for the type checker)
    if message.request_id != request_id:
        # In turn, so written by this invocation's own code.
        return violation_verdict(
            request_id, f"unexpected answer for request id {message.request_id!r:.80}"
        )
    if type(message) is Result:
        return Verdict(Outcome.SUCCESS, answer=Answer(message.body, message.content_type),
                       peak=message.peak_rss)
    assert isinstance(message, Failure)  # (for the type checker)
    causes = tuple(_cause(c) for c in message.causes)
    error = InvocationError(
        message.error_type, message.error_message, message.stack_trace, causes
    )
    # A native allocation failure is reported as out of memory.
    outcome = Outcome.OOM if message.error_type == "Runtime.OutOfMemory" else Outcome.ERROR
    return Verdict(outcome, error=error, replace=message.fatal, peak=message.peak_rss)


#: The answer of a streamed success (its bytes went out with the chunks).
_STREAMED_ANSWER = Answer(b"", "")


def stream_frame_violation(
    frame: StreamStart | Chunk, request_id: str, *, streaming: bool
) -> str | None:
    """Why a StreamStart or Chunk in turn breaks the stream's order (row 15), or
    None: one StreamStart, for this request id, before any Chunk."""
    if type(frame) is StreamStart:
        if streaming:
            return "a second StreamStart"
        assert isinstance(frame, StreamStart)  # (for the type checker)
        if frame.request_id != request_id:
            return f"a stream for request id {frame.request_id!r:.80}"
        return None
    return None if streaming else "a Chunk before its StreamStart"


def violation_verdict(request_id: str, why: str) -> Verdict:
    """A worker that wrote what is no valid answer: killed, ``Runtime.ExitError`` (row 5)."""
    error = InvocationError(
        "Runtime.ExitError", runtime_exited(f"worker protocol violation ({why})", request_id)
    )
    return Verdict(Outcome.CRASH, error=error, replace=True, violation=why)


def out_of_turn_reason(message: object) -> str:
    """The ``worker protocol violation`` reason for a frame (or ``a partial
    frame``) that answers no invocation in flight: blamed on its sender."""
    request_id = getattr(message, "request_id", None)
    return f"out of turn: {type(message).__name__} for request id {request_id!r:.80}"


# -- the worker's end --------------------------------------------------------------------


def may_be_oom_kill(status: int) -> bool:
    """Whether a worker that died by itself with ``status`` may have been the
    kernel's OOM kill (SIGKILL, not ours): ask the OOM record then."""
    return signal_name(status) == "SIGKILL"


def death_verdict(
    request_id: str,
    status: int | None,
    stack: list[str],
    *,
    oom_killed: bool = False,
    answered: Verdict | None = None,
) -> Verdict:
    """A worker that died during the invocation (rows 6-8): ``status`` from
    ``waitpid`` (None: not known in time), ``stack`` its faulthandler lines,
    ``oom_killed`` the kernel reported an OOM kill of it, ``answered`` what it
    answered just before it died."""
    if answered is not None:
        return answered._replace(replace=True)
    if oom_killed:
        return Verdict(Outcome.OOM, error=killed_for_memory_error(request_id, stack),
                       replace=True, signal="SIGKILL")
    return Verdict(
        Outcome.CRASH, error=crash_error(request_id, status, stack), replace=True,
        signal=signal_name(status) if status is not None else None,
    )


def deadline_verdict(timeout_s: float, stack: list[str]) -> Verdict:
    """The worker was stopped at its kill time (row 9)."""
    return Verdict(Outcome.TIMEOUT, error=timeout_error(timeout_s, stack), replace=True)


def over_memory_cap(rss: int, baseline: int, cap_bytes: int) -> bool:
    """Whether a worker using ``rss`` bytes is past its cap (0: none) over its baseline."""
    return bool(cap_bytes) and rss - baseline > cap_bytes


def memory_verdict(cap_bytes: int, above_baseline: int) -> Verdict:
    """The worker was stopped past its memory cap (row 10)."""
    mb = 1024 * 1024
    return Verdict(Outcome.OOM, error=oom_error(cap_bytes / mb, above_baseline / mb), replace=True)


def abandoned_verdict(error: InvocationError) -> Verdict:
    """A stream the Runtime API stopped taking, or whose connection failed: its
    worker is replaced; the error is only reported (the summary record), since
    nothing more can be sent for the invocation."""
    return Verdict(Outcome.ERROR, error=error, replace=True)


def report_after_stream(
    report: InvocationReport, abandoned: InvocationError | None
) -> InvocationReport:
    """The summary of an invocation whose stream was given up (``abandoned``:
    the error it was given up with) after its worker had answered: a success
    on the worker's side, but the caller's stream was cut short."""
    if abandoned is None or report.outcome is not Outcome.SUCCESS:
        return report
    return report._replace(
        outcome=Outcome.ERROR, error_type=abandoned.error_type,
        error_message=abandoned.error_message,
    )


def shutdown_verdict(request_id: str) -> Verdict:
    """The shutdown grace ran out with the invocation in flight (row 11)."""
    error = InvocationError(
        "Runtime.ExitError",
        runtime_exited("runtime shut down (SIGTERM) before the invocation finished", request_id),
    )
    return Verdict(Outcome.CRASH, error=error, replace=True)


# -- events not run ------------------------------------------------------------------------


def shutting_down_error(request_id: str) -> InvocationError:
    """For an event received once the shutdown began (it is not run, nor reported)."""
    return InvocationError(
        "Runtime.ExitError", runtime_exited("runtime shutting down (SIGTERM)", request_id)
    )


def late_verdict(timeout_s: float) -> Verdict:
    """An event that arrived at or past its kill time: not run (row 12)."""
    return Verdict(Outcome.TIMEOUT, error=timeout_error(timeout_s, []))


def unframable_verdict(why: str) -> Verdict:
    """An event no frame can carry (over ``MAX_FRAME``): not run (row 13)."""
    error = InvocationError(
        "Runtime.UnmarshalError", f"Unable to hand the event to a worker: {why}"
    )
    return Verdict(Outcome.ERROR, error=error)


# -- what becomes of the worker --------------------------------------------------------


class Disposal(NamedTuple):
    """What becomes of the worker once its invocation has a verdict."""

    #: Replace it (else it takes the next event).
    replace: bool
    #: The ``worker replaced`` reason (None: kept).
    reason: str | None
    #: Answer first, end it before the next ``/next``: SIGKILLed already (the
    #: kernel frees a big worker's memory before it reports the exit), or
    #: healthy and retired (it ends gently, after the answer).
    reap_later: bool
    #: A crash: one more for the restart-storm guard.
    crashed: bool
    #: It answered: the crash count restarts, and the invocation counts towards
    #: the worker's recycling.  (Neither, for a timeout or a memory kill.)
    completed: bool
    #: Healthy and retired (recycled, ...): ended with SIGTERM, so that its
    #: SIGTERM handler, ``on_worker_end`` hooks and ``atexit`` functions run.
    gently: bool = False


#: The common case: it answered and takes the next event.
_KEPT = Disposal(False, None, False, crashed=False, completed=True)


def dispose(
    verdict: Verdict, invocations: int, recycle_at: int | None, retire_reason: str | None
) -> Disposal:
    """The worker's fate after ``verdict``: it had completed ``invocations``
    before this one, is recycled at ``recycle_at`` (None: never), and has a
    ``retire_reason`` (closed its output, changed its process for good, wrote
    out of turn) or none."""
    outcome = verdict.outcome
    if outcome is Outcome.SUCCESS or outcome is Outcome.ERROR:
        if (
            verdict.replace
            or retire_reason is not None
            or (recycle_at is not None and invocations + 1 >= recycle_at)
        ):
            if verdict.replace:
                return Disposal(True, outcome.value, False, crashed=False, completed=True)
            reason = retire_reason or "recycled"
            return Disposal(True, reason, True, crashed=False, completed=True, gently=True)
        return _KEPT
    crashed = outcome is Outcome.CRASH
    if not verdict.replace:
        return Disposal(False, None, False, crashed=crashed, completed=False)
    # A timeout or memory kill is ours, not the worker failing to run (see the
    # module docstring); the worker was SIGKILLed and is reaped after the answer.
    return Disposal(True, outcome.value, not crashed, crashed=crashed, completed=False)


class IdleReplacement(NamedTuple):
    """An idle worker to replace before it is given an event."""

    reason: str
    #: A protocol violation to log against it (None: none).
    violation: str | None = None


def idle_replacement(
    *, spoke: bool, died: bool, retire_reason: str | None
) -> IdleReplacement | None:
    """Whether an idle worker found readable before an Invoke is replaced:
    it ``died``, ``spoke`` on its result pipe with no invocation in flight (a
    frame out of turn), or has a ``retire_reason``.  None: it takes the event."""
    if died:
        return IdleReplacement(DIED_WHILE_IDLE, _SPOKE_IDLE if spoke else None)
    if spoke:
        return IdleReplacement(WROTE_OUT_OF_TURN, _SPOKE_IDLE)
    if retire_reason is not None:
        return IdleReplacement(retire_reason)
    return None


_SPOKE_IDLE = "wrote on its result pipe with no invocation in flight"


# -- the restart-storm guard ---------------------------------------------------------------


class CrashCounter:
    """Consecutive worker deaths without a completed invocation, across slots."""

    def __init__(self, policy: RestartPolicy) -> None:
        self._policy = policy
        self._lock = threading.Lock()
        self._count = 0

    def crashed(self) -> None:
        with self._lock:
            self._count += 1

    def completed(self) -> None:
        if self._count:
            with self._lock:
                self._count = 0

    def count_in(self, disposal: Disposal) -> None:
        """Apply what one invocation did to the count."""
        if disposal.crashed:
            self.crashed()
        elif disposal.completed:
            self.completed()

    def delay(self) -> float | None:
        """Seconds to wait before replacing a worker; None: give up (:func:`restart_storm`)."""
        with self._lock:
            return self._policy.delay(self._count)

    @property
    def count(self) -> int:
        return self._count


def restart_storm(count: int) -> RestartStorm:
    """The runtime's exit when workers keep dying: Lambda re-initialises the environment."""
    return RestartStorm(
        f"{count} workers in a row died without completing an invocation; exiting so "
        "that Lambda re-initialises the environment"
    )


def _cause(raw: dict[str, object]) -> InvocationError:
    stack = raw.get("stackTrace")
    return InvocationError(
        str(raw.get("errorType", "")),
        str(raw.get("errorMessage", "")),
        [str(line) for line in stack] if isinstance(stack, list) else [],
    )
