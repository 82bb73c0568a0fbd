"""A worker: one process, one invocation at a time, forked from the template.

Rules (the supervisor relies on each):

1. It runs in its own process group, so the supervisor can kill it with
   everything it started (``killpg``).
2. Its fd 1 and fd 2 are pipes to the supervisor; Python's and C's stdout are
   line-buffered, so output written just before a crash is already in the pipe.
   An answer says when the handler closed or replaced either (``retire``):
   a process it started may hold the pipe open, hiding the end from the
   supervisor, and every later line would be lost.
3. ``faulthandler`` writes the Python stack of a fatal signal, and of
   ``SIGUSR1`` (sent just before a deadline kill), to the fault pipe; for a
   coroutine handler, the stacks of its event loop's tasks follow.
4. It answers every :class:`Invoke` with exactly one :class:`Result` or
   :class:`Failure` carrying the Invoke's turn (a streaming handler's answer:
   :class:`StreamStart` with the first chunk, a :class:`Chunk` per yield, in
   pieces of at most what a stream pipe holds, each written whole on its
   stream pipe before its frame, then :class:`StreamEnd` or a
   :class:`Failure`; each write blocks until the supervisor has room, so the
   handler yields no faster than the Runtime API reads); after a fatal one
   (``SystemExit``, ``KeyboardInterrupt``, ``MemoryError``) it exits and is
   replaced.
5. End of stream on its invoke pipe (the supervisor is gone) makes it kill
   everything it started and exit 0.  It is the subreaper of everything it
   starts; at its parent's death (``PR_SET_PDEATHSIG``) it kills all of that
   and its group.
6. Told :class:`WaitOn` a CPU, its main thread waits for events (and writes
   its answers) on that CPU only, and runs the handler with the affinity it
   was forked with (see :mod:`lambda_bulkhead.process._affinity`).
7. No other process of the same user may reach into it (``PR_SET_DUMPABLE``
   off: its ``/proc/<pid>/fd``, ``ptrace``, ``pidfd_getfd``), nor into the
   template or the supervisor.
8. It is the kernel's first choice when memory runs out (``oom_score_adj``
   1000, inherited by whatever it starts), never the supervisor or template.
   Its memory is watched by the supervisor, which counts resident pages only;
   no resource limit caps what it may reserve.
9. After each answer it puts back the resource limits, signal dispositions
   and mask the handler changed (:mod:`._state`); if it cannot, it declines
   the next Invoke (:class:`Declined`) and exits, and the event goes to
   another worker.  A native library's allocation failure
   (torch's "can't allocate memory") is ``Runtime.OutOfMemory``, and it is
   replaced too.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import resource
import sys

from lambda_bulkhead._context import FunctionMeta, Invocation
from lambda_bulkhead._errors import (
    MAX_RESPONSE_BYTES,
    HandlerCrash,
    InvocationError,
    error_dict,
    runtime_exited,
    too_large_error,
)
from lambda_bulkhead._record import NamedTuple
from lambda_bulkhead.handler._handler import (
    CoreHandler,
    CoroutineHandler,
    CurrentInvocation,
    Streamed,
    exit_code,
    exit_error,
)
from lambda_bulkhead.handler._handler import execute as execute_in_process
from lambda_bulkhead.handler._hooks import run_worker_start_hooks
from lambda_bulkhead.process import _signals
from lambda_bulkhead.process._affinity import pin_thread
from lambda_bulkhead.process._native import (
    become_subreaper,
    flush_c_stdio,
    keep_heap,
    set_dumpable,
    set_parent_death_signal,
)
from lambda_bulkhead.process._orphans import kill_orphans
from lambda_bulkhead.process._procfs import current_rss
from lambda_bulkhead.wire._frames import (
    RETIRE_OUTPUT_LOST,
    Chunk,
    Declined,
    Failure,
    FrameDecoder,
    Invoke,
    Ready,
    Result,
    StreamEnd,
    StreamStart,
    WaitOn,
    encode,
)
from lambda_bulkhead.wire._pipes import enlarge_pipe, read_message, send_message, write_parts
from lambda_bulkhead.worker._child import take_output_pipes
from lambda_bulkhead.worker._state import ProcessState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from lambda_bulkhead.wire._frames import Message

__all__ = [
    "CurrentInvocation",
    "Ending",
    "WorkerFds",
    "become_worker_process",
    "end_on_sigterm",
    "run_worker",
]


class WorkerFds(NamedTuple):
    """The worker's ends of its seven pipes."""

    invoke: int
    result: int
    stdout: int
    stderr: int
    fault: int
    #: The two stream pipes (a streamed answer's bytes; see :class:`Chunk`).
    streams: tuple[int, int]

    @classmethod
    def of(cls, fds: list[int]) -> WorkerFds:
        """The seven, in the order a Spawn carries them."""
        invoke, result, stdout, stderr, fault, stream_a, stream_b = fds
        return cls(invoke, result, stdout, stderr, fault, (stream_a, stream_b))


#: A worker's exit status when an ``on_worker_start`` hook raised.
EXIT_START_HOOK_FAILED = 5
#: A worker's exit status after it declined an Invoke (see :class:`Declined`).
EXIT_DECLINED = 6
#: Free heap a worker keeps between events when its cap allows (keep_heap).
KEPT_HEAP_BYTES = 32 * 1024 * 1024


def become_worker_process(fds: WorkerFds) -> None:
    """What makes this process a worker before anything of the handler runs in
    it (a zygote's worker calls it before it imports the handler): its own
    process group, the subreaper of what it starts, taken down with its parent,
    the OOM killer's first victim, and faulthandler on its own fault pipe
    (the template's is closed).  Safe to call twice."""
    # Inherited off from the template; on again while this process writes its
    # own /proc/self files (root's while it is off), off again in run_worker.
    set_dumpable(True)
    os.setpgid(0, 0)
    # What the handler starts and orphans (a double-forked daemon) stays this
    # worker's, to be stopped with it.
    become_subreaper()
    _signals.signal(_signals.PARENT_DIED, _take_everything_down)
    set_parent_death_signal(_signals.PARENT_DIED)
    _be_first_to_go()
    faulthandler.disable()
    faulthandler.enable(file=fds.fault, all_threads=True)


def _set_up_process(
    fds: WorkerFds, memory_limit_bytes: int | None, state: CurrentInvocation
) -> None:
    become_worker_process(fds)
    take_output_pipes(fds.stdout, fds.stderr)
    # The handler's own signal dispositions: what its import installed (in
    # the template, or here in a worker that imported it); the template's own
    # SIGINT (ignored) becomes Python's default again.
    if _signals.getsignal(_signals.SIGINT) == _signals.SIG_IGN:
        _signals.signal(_signals.SIGINT, _signals.default_int_handler)
    end_on_sigterm(busy=lambda: state.request_id is not None)
    # Free heap kept for the next event (see keep_heap): a quarter of the cap at
    # most, so that memory kept from one event never looks like the next one's.
    keep_heap(KEPT_HEAP_BYTES if memory_limit_bytes is None
              else min(KEPT_HEAP_BYTES, memory_limit_bytes // 4))


class Ending(BaseException):
    """Raised by SIGTERM in a worker or a template, once the handler's own
    SIGTERM handler (if its import installed one) has run: the process ends
    normally (``on_worker_end`` hooks, ``atexit`` functions, exit 0)."""


class _EndOnSigterm:
    """The SIGTERM handler of a worker or template: ``before()``, then the
    handler's own SIGTERM handler (``user``), then :class:`Ending`.  A user
    handler that exits itself (``sys.exit``, the pattern AWS documents) ends
    the process the same way, with its status.

    During an invocation (``busy()``; the supervisor never sends SIGTERM then,
    the handler's code may), SIGTERM is what it is under the official
    runtime: the user's handler runs and the invocation goes on, or, with
    none, the process dies by the signal."""

    def __init__(self, user: Callable[[int, FrameType | None], object] | None,
                 before: Callable[[], object] | None, busy: Callable[[], bool] | None) -> None:
        self.user = user
        self.before = before
        self.busy = busy

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.busy is not None and self.busy():
            if self.user is not None:
                self.user(signum, frame)
                return
            _signals.signal(signum, _signals.SIG_DFL)
            os.kill(os.getpid(), signum)  # delivered before kill returns: the process ends
        # Once: a second SIGTERM (the template's and the supervisor's both reach
        # a worker being retired) must not interrupt the process's end.
        _signals.signal(signum, _signals.SIG_IGN)
        if self.before is not None:
            self.before()
        if self.user is not None:
            self.user(signum, frame)
        raise Ending


def end_on_sigterm(
    before: Callable[[], object] | None = None, busy: Callable[[], bool] | None = None
) -> None:
    """Make SIGTERM end this process normally (see :class:`_EndOnSigterm`),
    keeping the SIGTERM handler the handler's import installed, if any.

    A SIGTERM the import chose to ignore stays ignored (the process then ends
    when the supervisor closes its pipe, or by SIGKILL)."""
    installed = _signals.getsignal(_signals.SIGTERM)
    if isinstance(installed, _EndOnSigterm):  # forked from a template: unwrap
        installed = installed.user
    if installed == _signals.SIG_IGN:
        return
    user = installed if callable(installed) else None
    _signals.signal(_signals.SIGTERM, _EndOnSigterm(user, before, busy))


def _take_everything_down(*_: object) -> None:
    """The template died (the runtime is gone, or killed as a process group): stop
    everything this worker started, then the worker itself.  (A plain SIGKILL
    as the parent-death signal would orphan the handler's children.)"""
    kill_orphans(set())
    os.killpg(0, _signals.SIGKILL)


def _arm_fault_reports(fds: WorkerFds, handler: CoreHandler) -> None:
    """faulthandler on the fault pipe, for fatal signals and the SIGUSR1 sent
    before a deadline kill (then, for a coroutine handler, its tasks' stacks).
    Again whenever a handler's signal dispositions were put back: putting back
    a Python-level one removes faulthandler's, which Python does not see."""
    faulthandler.disable()
    faulthandler.enable(file=fds.fault, all_threads=True)
    faulthandler.unregister(_signals.SIGUSR1)
    if isinstance(handler, CoroutineHandler):
        from lambda_bulkhead.handler._coroutines import report_tasks_on  # noqa: PLC0415 - async only

        report_tasks_on(_signals.SIGUSR1, fds.fault, handler.loops)
    else:
        faulthandler.register(_signals.SIGUSR1, file=fds.fault, all_threads=True)


def _be_first_to_go() -> None:
    """Make this process (and what it starts) the OOM killer's first victim, so
    that memory running out in the sandbox costs one invocation, not the runtime.
    Raising one's own score needs no privilege."""
    try:
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write("1000")
    except OSError:
        pass  # no /proc: the supervisor's RSS watch is all there is


def _answer(
    handler: CoreHandler, invocation: Invocation, meta: FunctionMeta, turn: int, fds: WorkerFds
) -> Result | Failure | StreamEnd:
    request_id = invocation.request_id
    try:
        answer = execute_in_process(handler, invocation, meta)
        if answer.stream is not None:
            return _send_streamed(fds, answer.stream, request_id, turn)
    except MemoryError as exc:
        return _failure(request_id, HandlerCrash.from_exception(exc), fatal=True, turn=turn)
    except InvocationError as error:
        cause = error.__cause__
        if cause is not None and _is_allocation_failure(cause):
            return _failure(request_id, _out_of_memory(request_id, error), fatal=True, turn=turn)
        return _failure(request_id, error, fatal=isinstance(cause, MemoryError), turn=turn)
    if len(answer.body) > MAX_RESPONSE_BYTES:
        return _failure(request_id, too_large_error(len(answer.body)), fatal=False, turn=turn)
    return Result(
        request_id=request_id,
        content_type=answer.content_type,
        body=answer.body,
        peak_rss=_peak_rss(),
        turn=turn,
    )


def _send_streamed(fds: WorkerFds, streamed: Streamed, request_id: str, turn: int) -> StreamEnd:
    """Write each chunk the handler yields as it comes, in pieces on the two
    stream pipes in turn, each announced by its :class:`Chunk` frame once
    written whole (blocking while a pipe is full); the StreamEnd to send once
    it ended well.  A handler failure is raised."""
    parts: list[bytes] = []
    started = False
    # Enlarged here, not at spawn: a worker that never streams holds no share
    # of the user's pipe memory for them.  A piece fits its pipe whole, so the
    # worker never waits on bytes it has not announced yet.
    piece_bytes = min(enlarge_pipe(fd) for fd in fds.streams)
    pipe = 0
    for chunk in streamed:
        if not started:
            started = True
            parts = encode(StreamStart(turn, request_id, streamed.content_type))
        view = memoryview(chunk)
        for offset in range(0, len(view), piece_bytes):
            piece = view[offset : offset + piece_bytes]
            _write_whole(fds.streams[pipe], piece)
            parts += encode(Chunk(turn, len(piece), pipe))
            write_parts(fds.result, parts)
            parts = []
            pipe ^= 1
    if not started:  # nothing yielded: an empty stream, still a stream
        write_parts(fds.result, encode(StreamStart(turn, request_id, streamed.content_type)))
    return StreamEnd(turn=turn, peak_rss=_peak_rss())


def _write_whole(fd: int, data: memoryview) -> None:
    """Write all of ``data`` to the blocking fd ``fd``."""
    while data:
        data = data[os.write(fd, data) :]


#: How native libraries word an allocation the system refused (torch's
#: DefaultCPUAllocator, errno ENOMEM's strerror).
_ALLOCATION_FAILURES = ("can't allocate memory", "Cannot allocate memory")


def _is_allocation_failure(exc: BaseException) -> bool:
    """A native library's out-of-memory error: a RuntimeError, not a MemoryError."""
    return isinstance(exc, RuntimeError) and any(
        words in str(exc) for words in _ALLOCATION_FAILURES
    )


def _out_of_memory(request_id: str, error: InvocationError) -> InvocationError:
    return InvocationError(
        "Runtime.OutOfMemory",
        runtime_exited(
            f"out of memory ({error.error_type}: {error.error_message})", request_id
        ),
        error.stack_trace,
    )


def _failure(request_id: str, error: InvocationError, *, fatal: bool, turn: int) -> Failure:
    return Failure(
        request_id=request_id,
        error_type=error.error_type,
        error_message=error.error_message,
        stack_trace=error.stack_trace,
        causes=tuple(error_dict(cause) for cause in error.causes),
        fatal=fatal,
        peak_rss=_peak_rss(),
        turn=turn,
    )


class _OutputCheck:
    """Whether fd 1 and fd 2 are still the pipes the worker was given."""

    def __init__(self) -> None:
        self._identities = (self._identity(1), self._identity(2))

    @staticmethod
    def _identity(fd: int) -> tuple[int, int] | None:
        try:
            status = os.fstat(fd)
        except OSError:
            return None
        return status.st_dev, status.st_ino

    def lost(self) -> bool:
        return (self._identity(1), self._identity(2)) != self._identities


def _peak_rss() -> int:
    """This process's peak RSS in bytes since :func:`_PeakReset` last reset it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _PeakReset:
    """Restarts the kernel's peak-RSS count (``VmHWM``, which ``ru_maxrss``
    follows) so each answer reports its own invocation's peak; a no-op where
    ``/proc/self/clear_refs`` cannot be written."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = None

    def __call__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, b"5")


def run_worker(
    fds: WorkerFds,
    handler: CoreHandler,
    meta: FunctionMeta,
    memory_limit_bytes: int | None,
    current: CurrentInvocation | None = None,
) -> int:
    """Serve invocations until the supervisor closes the invoke pipe; the exit status."""
    state = current or CurrentInvocation()
    _set_up_process(fds, memory_limit_bytes, state)
    _arm_fault_reports(fds, handler)
    try:
        run_worker_start_hooks()
    except Exception as exc:  # the hook's failure is the worker's: say why, then exit
        send_message(fds.result, _failure("", HandlerCrash.from_exception(exc), fatal=True, turn=0))
        return EXIT_START_HOOK_FAILED
    reset_peak = _PeakReset()
    reset_peak()
    # From here no other process of this user may open this worker's fds
    # through /proc, ptrace it or take its fds with pidfd_getfd.
    set_dumpable(False)
    outputs = _OutputCheck()
    process = ProcessState(rearm=lambda: _arm_fault_reports(fds, handler))
    send_message(fds.result, Ready(pid=os.getpid(), baseline_rss=current_rss()))
    decoder = FrameDecoder()
    backlog: list[Message] = []
    everywhere = os.sched_getaffinity(0)
    waiting_on: set[int] | None = None  # the slot's CPU, once told
    intact = True  # whether the last invocation's changes were all put back
    while True:
        message = read_message(fds.invoke, decoder, backlog)
        if message is None:  # the supervisor is gone: so is everything started here
            kill_orphans(set())
            return 0
        if type(message) is WaitOn:
            waiting_on = {message.cpu} if pin_thread({message.cpu}) else None
            continue
        if type(message) is not Invoke:
            return 70  # EX_SOFTWARE: the supervisor spoke out of turn
        turn, invocation = message
        if not intact:  # the last invocation changed this process for good
            send_message(fds.result, Declined(turn))
            return EXIT_DECLINED
        # Every CPU for the handler, whatever the last one left.
        if waiting_on is not None or os.sched_getaffinity(0) != everywhere:
            pin_thread(everywhere)
        state.request_id, state.tenant_id = invocation.request_id, invocation.tenant_id
        status = None
        try:
            reply = _answer(handler, invocation, meta, turn, fds)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit...
            error = exit_error(invocation.request_id, exc)
            reply = _failure(invocation.request_id, error, fatal=True, turn=turn)
            status = exit_code(exc) if isinstance(exc, SystemExit) else 1
        _flush_output()
        if outputs.lost():
            reply = reply._replace(retire=RETIRE_OUTPUT_LOST)
        if waiting_on is not None:
            # Before the answer: the slot's thread wakes on this CPU, and this
            # one stays on it instead of being moved away and back.
            pin_thread(waiting_on)
        # Idle from here: a SIGTERM that comes with the answer (a retired
        # worker's) ends the worker gently, not as one in an invocation.
        state.request_id = state.tenant_id = None
        send_message(fds.result, reply)
        reset_peak()  # after the answer is on its way, not before it
        if status is not None or (isinstance(reply, Failure) and reply.fatal):
            return 1 if status is None else status
        # After the answer, off its path (~15 µs): the next Invoke waits for it.
        intact = process.restore()


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        # A handler that closed or broke its stdout loses only its own output.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    flush_c_stdio()
