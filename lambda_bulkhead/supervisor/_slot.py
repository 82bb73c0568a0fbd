"""One slot: the supervised executor that runs invocations on its own worker.

The slot is the I/O shell around the decision core
(:mod:`lambda_bulkhead.supervisor._decisions`): it waits on the worker's fds,
reads its frames, sends the Invoke, kills and reaps the worker, forwards its
output, and applies what the core decides from what it observed (the
:class:`~lambda_bulkhead.supervisor._decisions.Verdict` on the invocation, the
:class:`~lambda_bulkhead.supervisor._decisions.Disposal` of the worker).

For each invocation it writes an Invoke frame (the :class:`Invocation`) to the
worker and waits,
with one ``poll`` over the worker's pipes and its pidfd, for the first of:

* a :class:`Result` or :class:`Failure` frame: the answer;
* for a streaming handler, :class:`StreamStart` and :class:`Chunk` frames: each
  chunk a frame announces is moved from the worker's stream pipe to the
  invocation's ``ResponseStream`` (``os.splice``: the bytes never enter the
  supervisor) before the worker's result pipe is read again (back-pressure: a
  worker whose chunks wait blocks in its write; a stream pipe that does not
  hold the bytes announced is a protocol violation, and one that still holds
  bytes when the stream ended gets the worker replaced), while the Runtime
  API takes it the checks below go on every
  ``STREAM_TICK_S``; :class:`StreamEnd` ends it (a failure after the first
  byte leaves as the stream's trailers, see :mod:`lambda_bulkhead.runtime_api._loop`);
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
from lambda_bulkhead._errors import InvocationError
from lambda_bulkhead._record import NamedTuple
from lambda_bulkhead.handler._handler import Answer
from lambda_bulkhead.process import _signals
from lambda_bulkhead.process._affinity import pin_thread
from lambda_bulkhead.supervisor._decisions import (
    DIED_WHILE_IDLE,
    OUTPUT_LOST,
    WROTE_OUT_OF_TURN,
    CrashCounter,
    InvocationReport,
    Rerun,
    Verdict,
    abandoned_verdict,
    answer_verdict,
    deadline_verdict,
    death_verdict,
    dispose,
    idle_replacement,
    late_verdict,
    may_be_oom_kill,
    memory_verdict,
    out_of_turn_reason,
    over_memory_cap,
    report_after_stream,
    restart_storm,
    shutdown_verdict,
    shutting_down_error,
    stream_frame_violation,
    unframable_verdict,
    violation_verdict,
)
from lambda_bulkhead.supervisor._memory import OomKills
from lambda_bulkhead.supervisor._output import OutputSink
from lambda_bulkhead.supervisor._policy import (
    fault_stack,
    function_timeout,
    kill_time,
    recycle_after,
    signal_name,
    suspected_cause,
)
from lambda_bulkhead.supervisor._pool import ExitRegistry, WorkerHandle, WorkerPool, WorkerState
from lambda_bulkhead.wire._frames import (
    RETIRE_REASONS,
    TURN_MASK,
    Chunk,
    Declined,
    Failure,
    Result,
    StreamEnd,
    StreamStart,
    WaitOn,
    WireError,
    encode_invoke,
)
from lambda_bulkhead.wire._pipes import (
    pipe_holds,
    read_available,
    read_size,
    send_message,
    write_parts,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lambda_bulkhead._config import Config
    from lambda_bulkhead.runtime_api._stream import ResponseStream
    from lambda_bulkhead.supervisor._output import Stream
    from lambda_bulkhead.wire._frames import Message

__all__ = ["Shutdown", "Slot", "SlotSettings", "Supervision"]

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
_IN_TURN = (Result, Failure, Declined, StreamEnd)
#: The frames of a streamed answer that carry its bytes, forwarded as they come.
_STREAMED = (StreamStart, Chunk)
#: The ``worker replaced`` reason of a worker whose streamed answer ended with
#: bytes on a stream pipe no Chunk announced (a piece it did not finish writing:
#: the next stream would start with them).
LEFT_STREAM_BYTES = "left bytes on a stream pipe"


class _Watch:
    """What one invocation's wait watches, kept across the waits for the worker
    and for the Runtime API to take a chunk."""

    __slots__ = ("next_sample", "peak")

    def __init__(self, peak: int, next_sample: float) -> None:
        self.peak = peak
        self.next_sample = next_sample


class _Stopped(Exception):
    """The worker was stopped (deadline, memory, shutdown) while a chunk waited
    for the Runtime API."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome)
        self.verdict = verdict


class Shutdown:
    """Set once by the main thread; read by the slots."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.requested = threading.Event()

    def begin(self, grace_s: float) -> None:
        self.deadline = time.monotonic() + grace_s
        self.requested.set()


class SlotSettings(NamedTuple):
    """The configuration every slot runs with."""

    #: How long before the deadline a worker is stopped.
    timeout_margin_ms: int
    #: How often the worker's memory is sampled during an invocation.
    memory_poll_ms: int
    #: Recycle a worker after about this many invocations (0: never).
    max_invocations: int
    #: ``AWS_LAMBDA_FUNCTION_TIMEOUT``, for the timeout message (None: derived).
    function_timeout_s: float | None = None

    @classmethod
    def from_config(cls, config: Config) -> SlotSettings:
        return cls(
            timeout_margin_ms=config.timeout_margin_ms,
            memory_poll_ms=config.memory_poll_ms,
            max_invocations=config.max_invocations,
            function_timeout_s=config.function.timeout_s,
        )


class Supervision(NamedTuple):
    """What every slot shares with the others and the main thread."""

    pool: WorkerPool
    exits: ExitRegistry
    crashes: CrashCounter
    shutdown: Shutdown
    #: The kernel's OOM kills.
    oom: OomKills
    #: Writes an invocation's summary record.
    report: Callable[[InvocationReport], None]
    #: Logs a worker's life event (``worker replaced``, ``worker died``...).
    on_worker_event: Callable[..., None]


class Slot:
    """Runs one invocation at a time on its own worker (an ``Executor``): the
    I/O shell around the decisions of :mod:`lambda_bulkhead.supervisor._decisions`."""

    def __init__(
        self,
        supervision: Supervision,
        settings: SlotSettings,
        output: OutputSink,
        cpu: int | None = None,
    ) -> None:
        self._pool = pool = supervision.pool
        self._exits = supervision.exits
        self._crashes = supervision.crashes
        self._shutdown = supervision.shutdown
        self._oom = supervision.oom
        self._report = supervision.report
        self._event = supervision.on_worker_event
        self._output = output
        self._margin_ms = settings.timeout_margin_ms
        self._function_timeout_s = settings.function_timeout_s
        self._poll_s = settings.memory_poll_ms / 1000.0
        self._max_invocations = settings.max_invocations
        #: The CPU this slot's thread and its worker wait on (None: anywhere).
        self._cpu = cpu
        self._worker: WorkerHandle | None = None
        #: A worker killed for its deadline or memory, reaped after the answer is
        #: posted (with its reason), before this slot polls ``/next`` again.
        self._killed: tuple[WorkerHandle, str, bool] | None = None
        self._cap_bytes = pool.memory_limit_bytes or 0
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
        #: The stream of the invocation of ``_unreported`` (given up after the
        #: worker answered, it changes what the report says).
        self._unreported_stream: ResponseStream | None = None
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
            killed, reason, gently = self._killed
            self._killed = None
            self._discard(killed, reason=reason, gently=gently)
        worker = self._worker
        if worker is not None and worker.is_alive():
            return
        if worker is not None:
            self._discard(worker, reason=DIED_WHILE_IDLE)
        delay = self._crashes.delay()
        if delay is None:
            raise restart_storm(self._crashes.count)
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
            stream, self._unreported_stream = self._unreported_stream, None
            if report is not None:
                self._report(
                    report if stream is None else report_after_stream(report, stream.abandoned)
                )

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

    def __call__(self, invocation: Invocation, stream: ResponseStream) -> Answer:
        self.busy = True
        try:
            if self._shutdown.requested.is_set():
                raise shutting_down_error(invocation.request_id)
            return self._run(invocation, stream)
        finally:
            self.busy = False

    def _run(self, invocation: Invocation, stream: ResponseStream) -> Answer:
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
            timeout_s = function_timeout(
                self._function_timeout_s, invocation.deadline_ms, received
            )
            raise self._not_run(worker, invocation, late_verdict(timeout_s))
        turn = self._turn = (self._turn + 1) & TURN_MASK
        try:
            frame = encode_invoke(turn, invocation)
        except WireError as exc:  # an event no frame can carry (over MAX_FRAME)
            raise self._not_run(worker, invocation, unframable_verdict(str(exc))) from None
        worker.move("invoke")
        worker.memory.start(started)
        self._output.begin(invocation.request_id, invocation.tenant_id)
        try:
            write_parts(worker.invoke_fd, frame, kill_at)
        except TimeoutError:  # still full at the kill time: it stopped reading
            verdict: Verdict | Rerun = self._stop_for_deadline(worker, invocation, started)
            peak: int = worker.baseline_rss
        except BrokenPipeError:
            verdict = self._died(worker, invocation, turn, b"", stream)
            peak = worker.baseline_rss
        else:
            verdict, peak = self._wait(worker, invocation, turn, started, kill_at, stream)
        self._output.end()
        if type(verdict) is Rerun:  # not run: another worker takes it
            self._discard(worker, reason=verdict.reason)
            return self._run(invocation, stream)
        assert isinstance(verdict, Verdict)  # (for the type checker)
        peak = max(peak, verdict.peak)
        disposal = dispose(verdict, worker.invocations, worker.recycle_at, worker.retire_reason)
        self._crashes.count_in(disposal)
        if disposal.completed:
            worker.invocations += 1
        if disposal.reason is not None:
            if worker.state is not WorkerState.DEAD:
                worker.move("retire")
            if disposal.reap_later:
                # Answer first, end it in prepare().  Waiting here for a killed
                # worker's exit status would put the kernel's teardown of its
                # memory between the kill and the /error post; a healthy worker
                # retired ends there too, gently.
                self._killed = (worker, disposal.reason, disposal.gently)
                self._worker = None
            else:
                self._discard(worker, reason=disposal.reason)
        else:
            worker.move("answer")
        error = verdict.error
        self.flush_report()
        self._unreported_stream = stream
        self._unreported = InvocationReport(
            request_id=invocation.request_id,
            tenant_id=invocation.tenant_id,
            outcome=verdict.outcome,
            duration_ms=(time.monotonic() - started) * 1000,
            max_memory_mb=peak / _MB,
            worker_pid=worker.pid,
            worker_replaced=disposal.replace,
            error_type=error.error_type if error else None,
            signal=verdict.signal,
            stack=tuple(error.stack_trace) if error else (),
            error_message=error.error_message if error else None,
        )
        if error is not None:
            raise error
        assert verdict.answer is not None
        return verdict.answer

    def _not_run(
        self, worker: WorkerHandle, invocation: Invocation, verdict: Verdict
    ) -> InvocationError:
        """The error of ``verdict``, for an invocation answered without being run
        (the worker, never touched, is kept), with its summary."""
        error = verdict.error
        assert error is not None
        self.flush_report()
        self._unreported = InvocationReport(
            request_id=invocation.request_id, tenant_id=invocation.tenant_id,
            outcome=verdict.outcome, duration_ms=0.0,
            max_memory_mb=worker.baseline_rss / _MB, worker_pid=worker.pid,
            worker_replaced=False, error_type=error.error_type,
            error_message=error.error_message,
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
        replacement = idle_replacement(
            # Bytes, not the hang-up a dead worker's pipe reports.
            spoke=any(fd == worker.result_fd and mask & select.POLLIN for fd, mask in polled),
            died=worker.pidfd in ready,
            retire_reason=worker.retire_reason,
        )
        if replacement is None:
            return worker
        if replacement.violation is not None:
            self._event(
                "worker protocol violation", level="error", pid=worker.pid,
                reason=replacement.violation,
            )
        self._discard(worker, reason=replacement.reason)
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
        stream: ResponseStream,
    ) -> tuple[Verdict | Rerun, int]:
        watch = _Watch(worker.baseline_rss, started + self._poll_s)
        fault = bytearray()

        def blocked() -> None:  # a chunk waits for the Runtime API: watch on
            stopped = self._check(worker, invocation, started, kill_at, watch, time.monotonic())
            if stopped is not None:
                raise _Stopped(stopped)

        try:
            while True:
                now = time.monotonic()
                stopped = self._check(worker, invocation, started, kill_at, watch, now)
                if stopped is not None:
                    return stopped, watch.peak
                wake_at = watch.next_sample
                if kill_at is not None and kill_at < wake_at:
                    wake_at = kill_at
                shutdown_at = self._shutdown.deadline
                if shutdown_at is not None and shutdown_at < wake_at:
                    wake_at = shutdown_at
                events = worker.poller.poll(max(0, int((wake_at - now) * 1000) + 1))
                died = False
                for fd, _ in events:
                    if fd == worker.result_fd:
                        verdict = self._read_answer(worker, invocation, turn, stream, blocked)
                        if verdict is not None:
                            # Output written before the answer is already in its
                            # pipe, so poll reported that pipe in this same call.
                            self._drain_output(worker, [fd for fd, _ in events])
                            return verdict, watch.peak
                    elif fd == worker.pidfd:
                        died = True
                    elif fd == worker.fault_fd:
                        fault += read_available(fd) or b""
                    else:
                        self._forward(worker, fd)
                if died:
                    return self._died(worker, invocation, turn, bytes(fault), stream), watch.peak
        except _Stopped as stopped_while_blocked:
            return stopped_while_blocked.verdict, watch.peak

    def _check(
        self,
        worker: WorkerHandle,
        invocation: Invocation,
        started: float,
        kill_at: float | None,
        watch: _Watch,
        now: float,
    ) -> Verdict | None:
        """The worker's deadline, the shutdown grace and its memory at ``now``:
        the verdict once the worker was stopped for one of them, else None."""
        if kill_at is not None and now >= kill_at:
            return self._stop_for_deadline(worker, invocation, started)
        shutdown_at = self._shutdown.deadline
        if shutdown_at is not None and now >= shutdown_at:
            return self._stop_for_shutdown(worker, invocation)
        if now >= watch.next_sample:
            rss = worker.memory.sample(now)
            if rss is not None:
                watch.peak = max(watch.peak, rss)
                if over_memory_cap(rss, worker.baseline_rss, self._cap_bytes):
                    return self._stop_for_memory(worker, watch.peak)
            watch.next_sample = now + self._poll_s
        return None

    def _read_answer(
        self,
        worker: WorkerHandle,
        invocation: Invocation,
        turn: int,
        stream: ResponseStream,
        blocked: Callable[[], None] | None = None,
    ) -> Verdict | Rerun | None:
        """The verdict if the answer of ``turn`` is in, None to keep waiting;
        the chunks of a streamed answer read meanwhile are forwarded to ``stream``
        (``blocked`` called while the Runtime API holds one back)."""
        try:
            messages = self._receive(worker)
        except EOFError:
            # Closed: wait for the pidfd.  _died reads again after the EOF was seen.
            with contextlib.suppress(KeyError):
                worker.poller.unregister(worker.result_fd)
            return None
        except WireError as exc:
            return self._violation(worker, violation_verdict(invocation.request_id, str(exc)))
        if messages is None:
            return None
        message: Result | Failure | Declined | StreamEnd | None = None
        for frame in messages:
            if message is None and isinstance(frame, _STREAMED) and frame.turn == turn:
                violated = self._forward_streamed(worker, invocation, frame, stream, blocked)
                if violated is not None:
                    return violated
            elif message is None and isinstance(frame, _IN_TURN) and frame.turn == turn:
                message = frame
            else:
                self._out_of_turn(worker, frame)
        if message is None:
            return None
        if worker.decoder.pending:
            # Bytes after the answer: the start of a frame out of turn, which
            # would swallow the next invocation's answer.
            self._out_of_turn(worker, "a partial frame")
        if stream.begun and any(pipe_holds(fd) for fd in worker.stream_fds):
            worker.retire_reason = LEFT_STREAM_BYTES
        verdict = answer_verdict(message, invocation.request_id, streaming=stream.begun)
        if type(verdict) is Verdict:
            if verdict.violation is not None:
                return self._violation(worker, verdict)
            assert not isinstance(message, Declined)  # (a Declined is a Rerun)
            if message.retire:
                worker.retire_reason = RETIRE_REASONS[message.retire]
        return verdict

    @staticmethod
    def _receive(worker: WorkerHandle) -> list[Message] | None:
        """The frames completed by what the result pipe holds now (None: nothing);
        ``EOFError`` once it is closed."""
        decoder = worker.decoder
        data = read_available(worker.result_fd, read_size(decoder))
        if data == b"":
            raise EOFError
        return None if data is None else decoder.feed(data)

    def _forward_streamed(
        self,
        worker: WorkerHandle,
        invocation: Invocation,
        frame: StreamStart | Chunk,
        stream: ResponseStream,
        blocked: Callable[[], None] | None,
    ) -> Verdict | None:
        """Begin the stream, or write a chunk to the Runtime API (returning once it
        took it); a verdict if the frame breaks the stream's rules."""
        why = stream_frame_violation(frame, invocation.request_id, streaming=stream.begun)
        if why is None and type(frame) is StreamStart:
            stream.begin(frame.content_type)
            return None
        if why is None:
            assert isinstance(frame, Chunk)  # (for the type checker)
            fd = worker.stream_fds[frame.pipe]
            # Announced bytes are all there before a byte of the chunk leaves:
            # a chunk is never cut short on the Runtime API connection.
            held = pipe_holds(fd)
            if held < frame.size:
                why = f"a Chunk of {frame.size} bytes with {held} on its stream pipe"
            else:
                try:
                    stream.send_from_pipe(fd, frame.size, blocked)
                except InvocationError as error:
                    if stream.abandoned:  # the Runtime API's side failed, not the worker
                        return self._stop_for_abandoned_stream(worker, error)
                    why = error.error_message  # the worker streamed past the limit
                else:
                    return None
        return self._violation(worker, violation_verdict(invocation.request_id, why))

    def _out_of_turn(self, worker: WorkerHandle, frame: object) -> None:
        """A frame that answers no invocation in flight: blamed on ``worker``
        (logged once), which is replaced after the invocation in flight."""
        if worker.retire_reason != WROTE_OUT_OF_TURN:
            worker.retire_reason = WROTE_OUT_OF_TURN
            self._event(
                "worker protocol violation", level="error", pid=worker.pid,
                reason=out_of_turn_reason(frame),
            )

    def _violation(self, worker: WorkerHandle, verdict: Verdict) -> Verdict:
        """Apply a protocol violation: logged against ``worker``, which is killed."""
        self._event(
            "worker protocol violation", level="error", pid=worker.pid, reason=verdict.violation
        )
        worker.kill()
        return verdict

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
        worker.retire_reason = OUTPUT_LOST
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
        self,
        worker: WorkerHandle,
        invocation: Invocation,
        turn: int,
        fault: bytes,
        stream: ResponseStream,
    ) -> Verdict | Rerun:
        # An answer may have been written just before the exit (a fatal Failure,
        # a StreamEnd), after Chunk frames still in the pipe: all of it is read
        # (each chunk forwarded, its bytes still in their stream pipe).
        answered = self._read_answer(worker, invocation, turn, stream)
        while answered is None and pipe_holds(worker.result_fd):
            answered = self._read_answer(worker, invocation, turn, stream)
        status, stack = self._collect_death(worker, fault)
        if type(answered) is Rerun:
            return answered
        assert answered is None or isinstance(answered, Verdict)  # (for the type checker)
        return death_verdict(
            invocation.request_id, status, stack,
            # The kernel's record of OOM kills is only asked about (and the kill
            # claimed) for a death that may be one.
            oom_killed=status is not None and may_be_oom_kill(status) and self._oom.claim(),
            answered=answered,
        )

    def _stop_for_deadline(
        self, worker: WorkerHandle, invocation: Invocation, started: float
    ) -> Verdict:
        received = time.time() - (time.monotonic() - started)  # the wall time at `started`
        timeout_s = function_timeout(self._function_timeout_s, invocation.deadline_ms, received)
        worker.kill(_signals.SIGUSR1)  # faulthandler: dump every thread's stack
        fault = self._read_fault(worker, STACK_GRACE_S)
        worker.kill()
        return deadline_verdict(timeout_s, self._drain_dead(worker, fault))

    def _stop_for_memory(self, worker: WorkerHandle, peak: int) -> Verdict:
        worker.kill()
        self._drain_dead(worker, b"")
        return memory_verdict(self._cap_bytes, peak - worker.baseline_rss)

    def _stop_for_abandoned_stream(self, worker: WorkerHandle, error: InvocationError) -> Verdict:
        """The stream's Runtime API connection failed or stalled mid-answer: the
        worker, which may be blocked on what no one will read, is killed and
        replaced; nothing more is sent for the invocation."""
        worker.kill()
        self._drain_dead(worker, b"")
        return abandoned_verdict(error)

    def _stop_for_shutdown(self, worker: WorkerHandle, invocation: Invocation) -> Verdict:
        worker.kill()
        # Not _collect_death: the main thread no longer reads exit statuses, so
        # waiting for this one (REAP_TIMEOUT_S) would outlast the shutdown and
        # the invocation would never be answered.
        self._drain_output(worker)
        worker.move("died")
        return shutdown_verdict(invocation.request_id)

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
