"""One slot: the supervised executor that runs invocations on its own worker.

For each invocation it writes an Invoke frame (the :class:`Invocation`) to the
worker and waits,
with one ``poll`` over the worker's pipes and its pidfd, for the first of:

* a :class:`Result` or :class:`Failure` frame: the answer;
* the worker's death (pidfd): ``Runtime.ExitError`` with the signal or status
  and faulthandler's stack;
* the kill time ahead of the deadline: ``SIGUSR1`` (faulthandler dumps the
  stack), then ``SIGKILL`` to the group: ``Sandbox.Timedout``;
* memory past the cap (RSS sampled every ``memory_poll_ms``): ``SIGKILL``:
  ``Runtime.OutOfMemory``;
* shutdown grace running out: ``Runtime.ExitError``;

while forwarding the worker's stdout/stderr to the log as it arrives.  The
worker's bytes are untrusted: a malformed frame, or an answer in turn for
another request id, gets the worker killed and the invocation a
``Runtime.ExitError``.  A frame out of turn (not carrying the turn of the
Invoke in flight, see :mod:`lambda_bulkhead.wire._frames`) answers nothing: it is
logged against the worker, which is replaced once the invocation in flight
has its own answer.

Before each Invoke one ``poll`` checks the idle worker: what it wrote since its
last answer is forwarded with that answer's request id (a thread the handler
left running), and a worker that wrote on its result pipe, closed its output
or died meanwhile is replaced before it is given the invocation.

An event that arrives at or past its kill time is answered ``Sandbox.Timedout``
without being run (the worker is kept).  A worker killed for its deadline or
memory is answered for first and reaped after (:meth:`Slot.prepare`, before the
next ``/next``): the kernel frees its memory before reporting its exit, which
takes longer than the margin for a big worker.  The peak memory reported is
the one the worker's answer carries (its ``ru_maxrss``, restarted after each
answer), else the highest RSS sampled, never below the worker's baseline.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable

from lambda_bulkhead._context import Invocation
from lambda_bulkhead._errors import InvocationError, RestartStorm
from lambda_bulkhead._record import NamedTuple
from lambda_bulkhead.handler._handler import Answer
from lambda_bulkhead.process import _signals
from lambda_bulkhead.process._affinity import pin_thread
from lambda_bulkhead.supervisor._memory import OomKills
from lambda_bulkhead.supervisor._output import OutputSink
from lambda_bulkhead.supervisor._policy import (
    RestartPolicy,
    crash_error,
    fault_stack,
    function_timeout,
    kill_time,
    killed_for_memory_error,
    oom_error,
    recycle_after,
    signal_name,
    suspected_cause,
    timeout_error,
)
from lambda_bulkhead.supervisor._pool import ExitRegistry, WorkerHandle, WorkerPool, WorkerState
from lambda_bulkhead.wire._frames import (
    RETIRE_OUTPUT_LOST,
    RETIRE_REASONS,
    TURN_MASK,
    Declined,
    Failure,
    Result,
    WaitOn,
    WireError,
    encode_invoke,
)
from lambda_bulkhead.wire._pipes import read_available, read_size, send_message, write_parts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lambda_bulkhead.supervisor._output import Stream

__all__ = ["CrashCounter", "InvocationReport", "Shutdown", "Slot"]

_RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: How long a worker stopped for its deadline gets to write its stack.
STACK_GRACE_S = 0.01
#: How long to wait for a killed worker's exit to be reported.
REAP_TIMEOUT_S = 2.0
#: How long a healthy worker retired after its answer may take to end by itself
#: (its SIGTERM handler, ``on_worker_end`` hooks, ``atexit`` functions).
END_GRACE_S = 0.2
#: At most this many reads (of up to 64 KiB) per pipe of an idle worker before
#: an Invoke: what it wrote since its answer, logged as that answer's output.
IDLE_READS = 16
#: How often a slot with no memory cap wakes during an invocation (shutdown
#: noticed within this, well inside the supervisor's shutdown grace).
UNCAPPED_TICK_S = 0.05
_MB = 1024 * 1024
#: What may come back for an Invoke, carrying its turn (a tuple: a union would
#: build a union object at each check, once per invocation).
_IN_TURN = (Result, Failure, Declined)
#: The ``worker replaced`` reason of a worker that declined an event (see
#: :class:`~lambda_bulkhead.wire._frames.Declined`).
CHANGED_FOR_GOOD = "changed its process state for good"
#: The ``worker replaced`` reason of a worker that wrote a frame out of turn.
WROTE_OUT_OF_TURN = "wrote out of turn"


class InvocationReport(NamedTuple):
    """What the per-invocation summary record says."""

    request_id: str
    tenant_id: str | None
    outcome: str  # success | error | crash | timeout | oom
    duration_ms: float
    max_memory_mb: float
    worker_pid: int
    worker_replaced: bool
    error_type: str | None = None
    signal: str | None = None
    stack: tuple[str, ...] = ()
    error_message: str | None = None


class Shutdown:
    """Set once by the main thread; read by the slots."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.requested = threading.Event()

    def begin(self, grace_s: float) -> None:
        self.deadline = time.monotonic() + grace_s
        self.requested.set()


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

    def delay(self) -> float | None:
        with self._lock:
            return self._policy.delay(self._count)

    @property
    def count(self) -> int:
        return self._count


class _Outcome:
    __slots__ = ("answer", "error", "kind", "peak", "replace", "signal")

    def __init__(
        self,
        answer: Answer | None = None,
        error: InvocationError | None = None,
        kind: str = "success",
        replace: bool = False,
        signal: str | None = None,
        peak: int = 0,
    ) -> None:
        self.answer = answer
        self.error = error
        self.kind = kind
        self.replace = replace
        self.signal = signal
        #: The peak RSS the worker's answer reported (0: none).
        self.peak = peak


class Slot:
    """Runs one invocation at a time on its own worker (an ``Executor``)."""

    def __init__(
        self,
        pool: WorkerPool,
        exits: ExitRegistry,
        crashes: CrashCounter,
        shutdown: Shutdown,
        output: OutputSink,
        report: Callable[[InvocationReport], None],
        on_worker_event: Callable[..., None],
        *,
        timeout_margin_ms: int,
        memory_poll_ms: int,
        max_invocations: int,
        cpu: int | None = None,
        oom: OomKills | None = None,
        function_timeout_s: float | None = None,
    ) -> None:
        self._pool = pool
        self._exits = exits
        self._crashes = crashes
        self._shutdown = shutdown
        self._output = output
        self._report = report
        self._event = on_worker_event
        self._margin_ms = timeout_margin_ms
        #: AWS_LAMBDA_FUNCTION_TIMEOUT, for the timeout message (None: derived).
        self._function_timeout_s = function_timeout_s
        self._poll_s = memory_poll_ms / 1000.0
        self._max_invocations = max_invocations
        #: The CPU this slot's thread and its worker wait on (None: anywhere).
        self._cpu = cpu
        #: The kernel's OOM kills, shared by every slot.
        self._oom = oom or OomKills()
        self._worker: WorkerHandle | None = None
        #: A worker killed for its deadline or memory, reaped after the answer is
        #: posted (with its reason), before this slot polls ``/next`` again.
        self._killed: tuple[WorkerHandle, str] | None = None
        self._cap_bytes = pool.memory_limit_bytes
        if not self._cap_bytes:
            # No cap: the samples only back up the worker's own peak and the wait
            # loop only has the shutdown to notice, so wake less often.
            self._poll_s = max(self._poll_s, UNCAPPED_TICK_S)
        #: True while an invocation is in this slot's hands (read by shutdown).
        self.busy = False
        #: The last invocation's summary, written by :meth:`flush_report` once
        #: its answer is written (while the Runtime API takes it), or else before
        #: the next one's: off the path of an answer and of the next dispatch.
        self._unreported: InvocationReport | None = None
        self._report_lock = threading.Lock()  # the main thread flushes at shutdown
        #: The last Invoke's turn: counted from a random start, so that no frame
        #: a worker writes without reading the count carries the next one.
        self._turn = int.from_bytes(os.urandom(8))

    # -- the worker this slot runs on ------------------------------------------

    @property
    def cpu(self) -> int | None:
        """The CPU this slot's thread and its workers wait on (None: anywhere)."""
        return self._cpu

    def bind_thread(self) -> None:
        """Pin the calling thread, the slot's, to the slot's CPU; if the kernel
        refuses, the slot goes without (and its workers are not told one)."""
        if self._cpu is not None and not pin_thread({self._cpu}):
            self._cpu = None

    def prepare(self) -> None:
        """Have a live, idle worker before the loop polls ``/next`` (back-pressure)."""
        if self._killed is not None:
            # Its memory is freed by the time its exit is reported (a 3 GB worker
            # takes ~0.4 s): only then does this slot take another event.
            killed, reason = self._killed
            self._killed = None
            self._discard(killed, reason=reason, gently=reason not in ("timeout", "oom"))
        worker = self._worker
        if worker is not None and worker.is_alive():
            return
        if worker is not None:
            self._discard(worker, reason="died while idle")
        delay = self._crashes.delay()
        if delay is None:
            raise RestartStorm(
                f"{self._crashes.count} workers in a row died without completing an "
                "invocation; exiting so that Lambda re-initialises the environment"
            )
        if delay:
            self._event(
                "restart back-off", level="warning", delaySeconds=delay,
                crashes=self._crashes.count,
            )
            time.sleep(delay)
        self._worker = self._take()

    def ready_for_next(self) -> bool:
        """Whether the next event can be taken with no :meth:`prepare`: the worker
        that just answered is kept, idle, and no shutdown began."""
        worker = self._worker
        return (
            worker is not None
            and worker.state is WorkerState.IDLE
            and self._killed is None
            and not self._shutdown.requested.is_set()
        )

    def _take(self) -> WorkerHandle:
        worker = self._pool.take()
        # A status reaped for an earlier process of this pid (an orphan the
        # supervisor reaped, nobody waited for) is not this worker's.
        self._exits.forget(worker.pid)
        if self._cpu is not None:
            # A worker dead already is found out by the Invoke frame's write.
            with contextlib.suppress(BrokenPipeError):
                send_message(worker.invoke_fd, WaitOn(self._cpu))
        if self._max_invocations:
            import random  # noqa: PLC0415 - recycling only: it costs the cold start ~2 ms

            worker.recycle_at = recycle_after(self._max_invocations, random.random())  # noqa: S311
        return worker

    def _discard(self, worker: WorkerHandle, *, reason: str, gently: bool = False) -> None:
        status = self._end_gently(worker) if gently else None
        if status is None:
            status = self._finish(worker)
        else:
            worker.move("died")
            worker.close()
        self._event("worker replaced", pid=worker.pid, reason=reason, status=status)
        if self._worker is worker:
            self._worker = None

    def _end_gently(self, worker: WorkerHandle) -> int | None:
        """A healthy worker retired after its answer ends as at shutdown: SIGTERM
        (its SIGTERM handler, ``on_worker_end`` hooks, ``atexit`` functions);
        its exit status, or None if it took more than :data:`END_GRACE_S`."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, _signals.SIGTERM)
        status = self._exits.wait(worker.pid, END_GRACE_S)
        self._drain_output(worker)
        return status

    def _finish(self, worker: WorkerHandle, *, wait: bool = True) -> int | None:
        """Kill ``worker``'s group unless already dead, collect its exit status
        (when ``wait``), close its pipes."""
        status = None
        if worker.state is not WorkerState.DEAD:
            worker.kill()
            status = self._exits.wait(worker.pid, REAP_TIMEOUT_S) if wait else None
            worker.move("died")
        worker.close()
        return status

    def flush_report(self) -> None:
        """Write the summary record of the last invocation, if not written yet."""
        with self._report_lock:
            report, self._unreported = self._unreported, None
            if report is not None:
                self._report(report)

    def retire(self) -> None:
        """Kill this slot's worker at shutdown (the template reaps it)."""
        self.flush_report()
        if self._killed is not None:
            self._finish(self._killed[0], wait=False)
            self._killed = None
        if self._worker is not None:
            self._drain_output(self._worker)  # what it wrote as it ended (SIGTERM)
            self._finish(self._worker, wait=False)
            self._worker = None

    # -- one invocation -----------------------------------------------------------

    def __call__(self, invocation: Invocation) -> Answer:
        self.busy = True
        try:
            if self._shutdown.requested.is_set():
                raise InvocationError(
                    "Runtime.ExitError",
                    f"RequestId: {invocation.request_id} Error: Runtime exited with error: "
                    "runtime shutting down (SIGTERM)",
                )
            return self._run(invocation)
        finally:
            self.busy = False

    def _run(self, invocation: Invocation) -> Answer:
        if self._worker is None or self._killed is not None:
            self.prepare()
        worker = self._worker
        assert worker is not None
        # One poll tells whether it wrote, closed its output or died (its pidfd is
        # among the polled fds) since its last answer.
        polled = worker.poller.poll(0)
        if polled:
            worker = self._settle(worker, polled)
        started, received = time.monotonic(), time.time()
        kill_at = kill_time(invocation.deadline_ms, self._margin_ms, received, started)
        if kill_at is not None and kill_at <= started:
            # Delivered at (or past) its kill time: answer without running it,
            # and keep the worker, which was never touched.
            late = timeout_error(
                function_timeout(self._function_timeout_s, invocation.deadline_ms, received), []
            )
            raise self._not_run(worker, invocation, "timeout", late)
        turn = self._turn = (self._turn + 1) & TURN_MASK
        try:
            frame = encode_invoke(turn, invocation)
        except WireError as exc:  # an event no frame can carry (over MAX_FRAME)
            unframed = InvocationError(
                "Runtime.UnmarshalError", f"Unable to hand the event to a worker: {exc}"
            )
            raise self._not_run(worker, invocation, "error", unframed) from None
        worker.move("invoke")
        worker.memory.start(started)
        self._output.begin(invocation.request_id, invocation.tenant_id)
        try:
            write_parts(worker.invoke_fd, frame, kill_at)
        except TimeoutError:  # still full at the kill time: it stopped reading
            outcome = self._stop_for_deadline(worker, invocation, started)
            peak: int = worker.baseline_rss
        except BrokenPipeError:
            outcome = self._died(worker, invocation, turn, b"")
            peak = worker.baseline_rss
        else:
            outcome, peak = self._wait(worker, invocation, turn, started, kill_at)
            peak = max(peak, outcome.peak)
        self._output.end()
        if outcome.kind == "declined":  # not run: another worker takes it
            self._discard(worker, reason=CHANGED_FOR_GOOD)
            return self._run(invocation)
        replaced = outcome.replace
        if outcome.kind == "crash":
            self._crashes.crashed()
        elif outcome.kind not in ("timeout", "oom"):
            # (Timeouts and OOM kills are ours, not a worker failing to run: a
            # handler that keeps timing out because a dependency is down must not
            # make the runtime back off or give up; they leave the count alone.)
            self._crashes.completed()
            worker.invocations += 1
            if worker.recycle_at is not None and worker.invocations >= worker.recycle_at:
                replaced = True
            # It closed its fd 1 or 2 (every later line would be lost), changed its
            # process in a way the next invocation would inherit, or wrote out of
            # turn (not trusted with another event).
            replaced = replaced or worker.retire_reason is not None
        if replaced:
            if worker.state is not WorkerState.DEAD:
                worker.move("retire")
            reason = outcome.kind if outcome.replace else (
                worker.retire_reason or "recycled"
            )
            if outcome.kind in ("timeout", "oom") or not outcome.replace:
                # Already SIGKILLed: answer first, reap in prepare().  Waiting here
                # for the exit status would put the kernel's teardown of the
                # worker's memory between the kill and the /error post.  A
                # healthy worker retired (recycled...) ends there too, gently.
                self._killed = (worker, reason)
                self._worker = None
            else:
                self._discard(worker, reason=reason)
        else:
            worker.move("answer")
        error = outcome.error
        self.flush_report()
        self._unreported = InvocationReport(
            request_id=invocation.request_id,
            tenant_id=invocation.tenant_id,
            outcome=outcome.kind,
            duration_ms=(time.monotonic() - started) * 1000,
            max_memory_mb=peak / _MB,
            worker_pid=worker.pid,
            worker_replaced=replaced,
            error_type=error.error_type if error else None,
            signal=outcome.signal,
            stack=tuple(error.stack_trace) if error else (),
            error_message=error.error_message if error else None,
        )
        if error is not None:
            raise error
        assert outcome.answer is not None
        return outcome.answer

    def _not_run(
        self, worker: WorkerHandle, invocation: Invocation, outcome: str, error: InvocationError
    ) -> InvocationError:
        """``error``, for an invocation answered without being run (the worker,
        never touched, is kept), with its summary."""
        self.flush_report()
        self._unreported = InvocationReport(
            request_id=invocation.request_id, tenant_id=invocation.tenant_id,
            outcome=outcome, duration_ms=0.0, max_memory_mb=worker.baseline_rss / _MB,
            worker_pid=worker.pid, worker_replaced=False,
            error_type=error.error_type, error_message=error.error_message,
        )
        return error

    def _settle(self, worker: WorkerHandle, polled: list[tuple[int, int]]) -> WorkerHandle:
        """The worker to give the next Invoke, once ``worker``, idle, was found
        readable (``polled``): what it wrote since its last answer is forwarded as
        that invocation's output (a fresh worker's as no invocation's); a worker
        that wrote on its result pipe, closed its output or died is replaced."""
        ready = [fd for fd, _ in polled]
        if not worker.invocations:
            self._output.begin(None, None)
        # Bounded: a thread printing without pause must not hold the event back
        # (what it writes past this goes with the invocation).
        self._drain_output(worker, ready, reads=IDLE_READS)
        self._output.end()
        for _ in range(IDLE_READS):
            if not read_available(worker.fault_fd):
                break  # (a stack written as it died: the death is what is reported)
        # Bytes, not the hang-up a dead worker's pipe reports.
        spoke = any(fd == worker.result_fd and mask & select.POLLIN for fd, mask in polled)
        died = worker.pidfd in ready
        if not (spoke or died or worker.retire_reason is not None):
            return worker
        if spoke:
            self._event(
                "worker protocol violation", level="error", pid=worker.pid,
                reason="wrote on its result pipe with no invocation in flight",
            )
        self._discard(worker, reason=(
            "died while idle" if died
            else WROTE_OUT_OF_TURN if spoke else worker.retire_reason or WROTE_OUT_OF_TURN
        ))
        self.prepare()
        assert self._worker is not None
        return self._worker

    def _wait(
        self,
        worker: WorkerHandle,
        invocation: Invocation,
        turn: int,
        started: float,
        kill_at: float | None,
    ) -> tuple[_Outcome, int]:
        peak: int = worker.baseline_rss
        fault = bytearray()
        next_sample = started + self._poll_s
        while True:
            now = time.monotonic()
            if kill_at is not None and now >= kill_at:
                return self._stop_for_deadline(worker, invocation, started), peak
            shutdown_at = self._shutdown.deadline
            if shutdown_at is not None and now >= shutdown_at:
                return self._stop_for_shutdown(worker, invocation), peak
            if now >= next_sample:
                rss = worker.memory.sample(now)
                if rss is not None:
                    peak = max(peak, rss)
                    if self._cap_bytes and rss - worker.baseline_rss > self._cap_bytes:
                        return self._stop_for_memory(worker, invocation, peak), peak
                next_sample = now + self._poll_s
            wake_at = next_sample
            if kill_at is not None and kill_at < wake_at:
                wake_at = kill_at
            if shutdown_at is not None and shutdown_at < wake_at:
                wake_at = shutdown_at
            events = worker.poller.poll(max(0, int((wake_at - now) * 1000) + 1))
            died = False
            for fd, _ in events:
                if fd == worker.result_fd:
                    outcome = self._read_answer(worker, invocation, turn)
                    if outcome is not None:
                        # Output written before the answer is already in its pipe,
                        # so poll reported that pipe in this same call.
                        self._drain_output(worker, [fd for fd, _ in events])
                        return outcome, peak
                elif fd == worker.pidfd:
                    died = True
                elif fd == worker.fault_fd:
                    fault += read_available(fd) or b""
                else:
                    self._forward(worker, fd)
            if died:
                return self._died(worker, invocation, turn, bytes(fault)), peak

    def _read_answer(
        self, worker: WorkerHandle, invocation: Invocation, turn: int
    ) -> _Outcome | None:
        """The outcome if the answer of ``turn`` is in, None to keep waiting."""
        data = read_available(worker.result_fd, read_size(worker.decoder))
        if data is None:
            return None
        if data == b"":
            # Closed: wait for the pidfd.  _died reads again after the EOF was seen.
            with contextlib.suppress(KeyError):
                worker.poller.unregister(worker.result_fd)
            return None
        try:
            messages = worker.decoder.feed(data)
        except WireError as exc:
            return self._violation(worker, invocation, str(exc))
        message: Result | Failure | Declined | None = None
        for frame in messages:
            if message is None and isinstance(frame, _IN_TURN) and frame.turn == turn:
                message = frame
            else:
                self._out_of_turn(worker, frame)
        if message is None:
            return None
        if worker.decoder.pending:
            # Bytes after the answer: the start of a frame out of turn, which
            # would swallow the next invocation's answer.
            self._out_of_turn(worker, "a partial frame")
        if isinstance(message, Declined):
            return _Outcome(kind="declined", replace=True)
        if message.request_id != invocation.request_id:
            # In turn, so written by this invocation's own code.
            return self._violation(
                worker, invocation, f"unexpected answer for request id {message.request_id!r:.80}"
            )
        if message.retire:
            worker.retire_reason = RETIRE_REASONS[message.retire]
        if isinstance(message, Result):
            return _Outcome(answer=Answer(message.body, message.content_type),
                            peak=message.peak_rss)
        causes = tuple(_cause(c) for c in message.causes)
        error = InvocationError(
            message.error_type, message.error_message, message.stack_trace, causes
        )
        # A native allocation failure is reported as out of memory.
        kind = "oom" if message.error_type == "Runtime.OutOfMemory" else "error"
        return _Outcome(error=error, kind=kind, replace=message.fatal, peak=message.peak_rss)

    def _out_of_turn(self, worker: WorkerHandle, frame: object) -> None:
        """A frame that answers no invocation in flight: blamed on ``worker``
        (logged once), which is replaced after the invocation in flight."""
        if worker.retire_reason != WROTE_OUT_OF_TURN:
            worker.retire_reason = WROTE_OUT_OF_TURN
            request_id = getattr(frame, "request_id", None)
            self._event(
                "worker protocol violation", level="error", pid=worker.pid,
                reason=f"out of turn: {type(frame).__name__} for request id {request_id!r:.80}",
            )

    def _violation(self, worker: WorkerHandle, invocation: Invocation, why: str) -> _Outcome:
        self._event("worker protocol violation", level="error", pid=worker.pid, reason=why)
        worker.kill()
        error = InvocationError(
            "Runtime.ExitError",
            f"RequestId: {invocation.request_id} Error: Runtime exited with error: "
            f"worker protocol violation ({why})",
        )
        return _Outcome(error=error, kind="crash", replace=True)

    def _forward(self, worker: WorkerHandle, fd: int) -> None:
        data = read_available(fd)
        if data:
            self._output.feed(_stream_of(worker, fd), data)
        elif data == b"":
            self._output_ended(worker, fd)

    def _drain_output(
        self, worker: WorkerHandle, ready: list[int] | None = None, reads: int | None = None
    ) -> None:
        """Forward what the worker wrote (already in the pipes); ``ready``: only
        those of its pipes poll reported readable; ``reads``: at most that many
        reads per pipe."""
        for fd in (worker.stdout_fd, worker.stderr_fd):
            if ready is not None and fd not in ready:
                continue
            stream = _stream_of(worker, fd)
            left = reads
            data = read_available(fd)
            while data:
                self._output.feed(stream, data)
                if left is not None:
                    left -= 1
                    if not left:
                        break
                data = read_available(fd)
            if data == b"":
                self._output_ended(worker, fd)

    @staticmethod
    def _output_ended(worker: WorkerHandle, fd: int) -> None:
        """End of file on fd 1 or 2: the handler closed it (or the worker is dying)."""
        worker.retire_reason = RETIRE_REASONS[RETIRE_OUTPUT_LOST]
        with contextlib.suppress(KeyError):
            worker.poller.unregister(fd)

    def _collect_death(self, worker: WorkerHandle, fault: bytes) -> tuple[int | None, list[str]]:
        stack = self._drain_dead(worker, fault)
        # Whatever it left in its group goes with it (what left the group went to
        # the template, its subreaper, which stops it).
        worker.kill_group()
        status = self._exits.wait(worker.pid, REAP_TIMEOUT_S)
        worker.move("died")
        self._event(
            "worker died", level="warning", pid=worker.pid, status=status,
            signal=signal_name(status) if status is not None else None,
            suspectedCause=suspected_cause(status),
        )
        return status, stack

    def _drain_dead(self, worker: WorkerHandle, fault: bytes) -> list[str]:
        """Forward what a dead (or just SIGKILLed) worker had written; its stack lines.

        Its exit status is not waited for here: for a worker we killed the slot
        reaps it after the answer is posted (see :meth:`prepare`), since the
        kernel frees a big worker's memory before reporting its exit, and that
        must not delay the answer.
        """
        self._drain_output(worker)
        while chunk := read_available(worker.fault_fd):
            fault += chunk
        return fault_stack(fault.decode("utf-8", "replace"), _RUNTIME_DIR)

    def _died(
        self, worker: WorkerHandle, invocation: Invocation, turn: int, fault: bytes
    ) -> _Outcome:
        # An answer may have been written just before the exit (a fatal Failure).
        outcome = self._read_answer(worker, invocation, turn)
        status, stack = self._collect_death(worker, fault)
        if outcome is not None:
            outcome.replace = True
            return outcome
        if status is not None and self._killed_for_memory(status):
            error = killed_for_memory_error(invocation.request_id, stack)
            return _Outcome(error=error, kind="oom", replace=True, signal="SIGKILL")
        error = crash_error(invocation.request_id, status, stack)
        return _Outcome(
            error=error, kind="crash", replace=True,
            signal=signal_name(status) if status is not None else None,
        )

    def _killed_for_memory(self, status: int) -> bool:
        """Whether a worker that died of SIGKILL (not ours) was an OOM kill."""
        return signal_name(status) == "SIGKILL" and self._oom.claim()

    def _stop_for_deadline(
        self, worker: WorkerHandle, invocation: Invocation, started: float
    ) -> _Outcome:
        received = time.time() - (time.monotonic() - started)  # the wall time at `started`
        timeout_s = function_timeout(self._function_timeout_s, invocation.deadline_ms, received)
        worker.kill(_signals.SIGUSR1)  # faulthandler: dump every thread's stack
        fault = self._read_fault(worker, STACK_GRACE_S)
        worker.kill()
        stack = self._drain_dead(worker, fault)
        return _Outcome(error=timeout_error(timeout_s, stack), kind="timeout", replace=True)

    def _stop_for_memory(self, worker: WorkerHandle, invocation: Invocation, peak: int) -> _Outcome:
        worker.kill()
        self._drain_dead(worker, b"")
        cap_mb = (self._cap_bytes or 0) / _MB
        error = oom_error(cap_mb, (peak - worker.baseline_rss) / _MB)
        return _Outcome(error=error, kind="oom", replace=True)

    def _stop_for_shutdown(self, worker: WorkerHandle, invocation: Invocation) -> _Outcome:
        worker.kill()
        # Not _collect_death: the main thread no longer reads exit statuses, so
        # waiting for this one (REAP_TIMEOUT_S) would outlast the shutdown and
        # the invocation would never be answered.
        self._drain_output(worker)
        worker.move("died")
        error = InvocationError(
            "Runtime.ExitError",
            f"RequestId: {invocation.request_id} Error: Runtime exited with error: "
            "runtime shut down (SIGTERM) before the invocation finished",
        )
        return _Outcome(error=error, kind="crash", replace=True)

    @staticmethod
    def _read_fault(worker: WorkerHandle, grace_s: float) -> bytes:
        fault = bytearray()
        end = time.monotonic() + grace_s
        while (remaining := end - time.monotonic()) > 0:
            ready, _, _ = select.select([worker.fault_fd], [], [], remaining)
            if not ready:
                break
            chunk = read_available(worker.fault_fd)
            if not chunk:
                break
            fault += chunk
        return bytes(fault)


def _stream_of(worker: WorkerHandle, fd: int) -> Stream:
    return "stdout" if fd == worker.stdout_fd else "stderr"


def _cause(raw: dict[str, object]) -> InvocationError:
    stack = raw.get("stackTrace")
    return InvocationError(
        str(raw.get("errorType", "")),
        str(raw.get("errorMessage", "")),
        [str(line) for line in stack] if isinstance(stack, list) else [],
    )
