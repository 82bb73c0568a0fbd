"""Workers as the supervisor sees them, and the pool of spares.

A worker's life, as one table (:data:`TRANSITIONS`)::

    state      event      next state
    STARTING   ready      IDLE        1. it sent Ready: its pipes work
    IDLE       invoke     BUSY        2. one invocation at a time
    BUSY       answer     IDLE        3. Result, or a non-fatal Failure
    BUSY       retire     DRAINING    4. fatal Failure, recycling, or a kill we sent
    IDLE       retire     DRAINING    5. recycling, shutdown
    any        died       DEAD        6. its pidfd became readable

:class:`TemplateClient` asks the template for a new worker (the pipe ends go
over the control socket with SCM_RIGHTS); :class:`ExitRegistry` holds the exit
statuses the template reports; :class:`WorkerPool` keeps spare workers forked
and idle so a crashed worker's replacement is already waiting.
"""

from __future__ import annotations

import _socket
import contextlib
import enum
import os
import select
import threading
import time
from collections.abc import Callable

from lambda_bulkhead._errors import BulkheadError
from lambda_bulkhead.process import _signals
from lambda_bulkhead.process._orphans import kill_tree
from lambda_bulkhead.supervisor._memory import WorkerMemory
from lambda_bulkhead.wire._frames import (
    BecomeWorker,
    Failure,
    FrameDecoder,
    Ready,
    Spawn,
    Spawned,
    TemplateFailed,
    WireError,
    encode,
)
from lambda_bulkhead.wire._pipes import enlarge_pipe, read_available, send_with_fds

__all__ = [
    "TRANSITIONS",
    "ExitRegistry",
    "SpawnError",
    "TemplateClient",
    "WorkerHandle",
    "WorkerPool",
    "WorkerState",
]

SPAWN_TIMEOUT_S = 10.0
#: How long a worker that imports the handler itself may take to be ready
#: (``BULKHEAD_WORKER_START=import``: a torch import takes seconds).
IMPORT_TIMEOUT_S = 300.0


class SpawnError(BulkheadError):
    """The template could not provide a worker (it died, or the worker died booting).

    ``failure``: what the template said instead (a SnapStart after-restore hook failed).
    """

    def __init__(self, message: str, failure: TemplateFailed | None = None) -> None:
        super().__init__(message)
        self.failure = failure


class WorkerState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    DEAD = "dead"

    # Members are singletons: hash by identity, in C (Enum's own __hash__ is
    # Python code, run twice per invocation by the transitions table).
    __hash__ = object.__hash__


TRANSITIONS: dict[tuple[WorkerState, str], WorkerState] = {
    (WorkerState.STARTING, "ready"): WorkerState.IDLE,
    (WorkerState.IDLE, "invoke"): WorkerState.BUSY,
    (WorkerState.BUSY, "answer"): WorkerState.IDLE,
    (WorkerState.BUSY, "retire"): WorkerState.DRAINING,
    (WorkerState.IDLE, "retire"): WorkerState.DRAINING,
    **{(state, "died"): WorkerState.DEAD for state in WorkerState},
}


class ExitRegistry:
    """Exit statuses reported by the template (or reaped by the supervisor, for
    workers that outlived their template), waited for by the slots."""

    #: Statuses nobody waits for (an orphan the supervisor reaped) are dropped,
    #: oldest first, past this many.
    KEEP = 256

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._statuses: dict[int, int] = {}

    def record(self, pid: int, status: int) -> None:
        with self._cond:
            self._statuses[pid] = status
            if len(self._statuses) > self.KEEP:
                del self._statuses[next(iter(self._statuses))]
            self._cond.notify_all()

    def wait(self, pid: int, timeout: float) -> int | None:
        """``pid``'s status once reported (and forgotten), or None after ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self._statuses, timeout)
            return self._statuses.pop(pid, None)

    def forget(self, pid: int) -> None:
        with self._cond:
            self._statuses.pop(pid, None)


class WorkerHandle:
    """The supervisor's ends of one worker's pipes, and what it knows of it."""

    def __init__(self, pid: int, fds: list[int]) -> None:
        self.pid = pid
        self.invoke_fd, self.result_fd, self.stdout_fd, self.stderr_fd, self.fault_fd = fds[:5]
        #: A streamed answer's bytes, announced by its Chunk frames (read only then).
        self.stream_fds = (fds[5], fds[6])
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self.pidfd = None
        self.memory = WorkerMemory(pid)
        self.baseline_rss = 0
        self.decoder = FrameDecoder()
        self.state = WorkerState.STARTING
        #: When the template was asked for it, and when its Ready came (``time.monotonic()``).
        self.requested_at = 0.0
        self.ready_at = 0.0
        self.invocations = 0
        self.recycle_at: int | None = None
        self.closed = False
        #: Why to replace it after this invocation though it answered (None: keep
        #: it): it closed its fd 1 or 2, changed its process for good, or wrote a
        #: frame out of turn.
        self.retire_reason: str | None = None
        self.poller = select.poll()
        for fd in (self.result_fd, self.stdout_fd, self.stderr_fd, self.fault_fd):
            self.poller.register(fd, select.POLLIN)
        #: Polls the pidfd alone: readable once the worker has exited.
        self._death = select.poll()
        if self.pidfd is not None:
            self.poller.register(self.pidfd, select.POLLIN)
            self._death.register(self.pidfd, select.POLLIN)

    def move(self, event: str) -> None:
        self.state = TRANSITIONS[(self.state, event)]

    def is_alive(self) -> bool:
        if self.pidfd is None or self.state is WorkerState.DEAD:
            return False
        return not self._death.poll(0)

    def kill(self, signum: int = _signals.SIGKILL) -> None:
        """Signal the worker's whole process group (it and everything it started);
        for SIGKILL also every descendant that left the group (``setsid``): the
        worker is their subreaper while it lives."""
        if signum == _signals.SIGKILL and self.state is not WorkerState.DEAD:
            kill_tree(self.pid)
            return
        self.kill_group(signum)

    def kill_group(self, signum: int = _signals.SIGKILL) -> None:
        """Signal the worker's process group (it and what it started in the group)."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            # Not (yet, or any more) a group leader: signal the process itself.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signum)

    def close(self) -> None:
        """Close the supervisor's ends of the worker's pipes (once)."""
        if self.closed:
            return
        self.closed = True
        self.memory.close()
        for fd in (self.invoke_fd, self.result_fd, self.stdout_fd, self.stderr_fd, self.fault_fd,
                   *self.stream_fds, self.pidfd):
            if fd is not None:
                os.close(fd)
        self.pidfd = None


class TemplateClient:
    """Asks the template for workers; safe to use from several threads.

    ``ready_timeout_s``: how long a new worker may take to say Ready (longer
    where workers import the handler themselves).
    """

    def __init__(self, ctl: _socket.socket, ready_timeout_s: float = SPAWN_TIMEOUT_S) -> None:
        self._ctl: _socket.socket | None = ctl
        self._ready_timeout_s = ready_timeout_s
        self._cond = threading.Condition()
        self._decoder = FrameDecoder()
        #: Whether a dead template is to be waited for (the supervisor re-creates it).
        self.replaceable = False

    def replace(self, ctl: _socket.socket) -> None:
        """A new template took the dead one's place: spawn from it."""
        with self._cond:
            if self._ctl is not None:
                self._ctl.close()
            self._ctl = ctl
            self._decoder = FrameDecoder()
            self._cond.notify_all()

    def close(self) -> None:
        """No more templates: spawns fail from now on."""
        with self._cond:
            self.replaceable = False
            if self._ctl is not None:
                self._ctl.close()
            self._cond.notify_all()

    def spawn(self, memory_limit_bytes: int | None, *, in_place: bool = False) -> WorkerHandle:
        """A new worker, set up and idle (its Ready received).

        ``in_place``: the template itself becomes the worker (:class:`BecomeWorker`).
        """
        worker = self.request_worker(memory_limit_bytes, in_place=in_place)
        self.await_ready(worker)
        return worker

    def request_worker(
        self, memory_limit_bytes: int | None, *, in_place: bool = False
    ) -> WorkerHandle:
        """A new worker, forked but maybe still setting itself up (STARTING):
        :meth:`await_ready` before using it.  Meanwhile the caller goes on."""
        requested_at = time.monotonic()
        ours: list[int] = []
        theirs: list[int] = []
        # invoke: we write, it reads; result/stdout/stderr/fault and the two
        # stream pipes: it writes, we read.
        for index, we_write in enumerate((True, False, False, False, False, False, False)):
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            if index < 2:  # the frame pipes: invoke and result
                enlarge_pipe(read_end)
            ours.append(write_end if we_write else read_end)
            theirs.append(read_end if we_write else write_end)
        try:
            request = (BecomeWorker if in_place else Spawn)(memory_limit_bytes)
            pid = self._request(request, theirs)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        for fd in ours:
            os.set_blocking(fd, False)
        worker = WorkerHandle(pid, ours)
        worker.requested_at = requested_at
        return worker

    def await_ready(self, worker: WorkerHandle) -> None:
        """Wait until ``worker`` is set up (IDLE); if it fails to start, it is
        killed and closed, and :class:`SpawnError` raised."""
        try:
            self._await_ready(worker, self._ready_timeout_s)
        except BaseException:
            worker.kill()
            worker.close()
            raise

    def _request(self, spawn: Spawn | BecomeWorker, fds: list[int]) -> int:
        with self._cond:
            data = self._exchange(b"".join(encode(spawn)), fds)
            try:
                replies = self._decoder.feed(data)
            except WireError as exc:
                raise SpawnError(f"template answered garbage: {exc}") from exc
        if len(replies) == 1 and isinstance(replies[0], TemplateFailed):
            raise SpawnError(f"template failed: {replies[0].error_type}", replies[0])
        if len(replies) != 1 or not isinstance(replies[0], Spawned):
            raise SpawnError(f"template answered {replies!r:.200}")
        return replies[0].pid

    def _exchange(self, request: bytes, fds: list[int]) -> bytes:
        """Send ``request`` and take the answer, waiting for a re-created template
        when this one died (the caller holds the condition)."""
        end = time.monotonic() + IMPORT_TIMEOUT_S
        while True:
            ctl = self._ctl
            if ctl is None or ctl.fileno() < 0:
                if not self.replaceable:
                    raise SpawnError("template exited")
                if not self._cond.wait(end - time.monotonic()):
                    raise SpawnError("template exited and was not re-created in time")
                continue
            try:
                send_with_fds(ctl, request, fds)
                ctl.settimeout(SPAWN_TIMEOUT_S)
                data = ctl.recv(4096)
            except (BrokenPipeError, ConnectionResetError) as exc:  # it died
                if not self.replaceable:
                    raise SpawnError(f"template unreachable: {exc}") from exc
                data = b""
            except OSError as exc:  # alive but not answering (a timeout): no waiting
                raise SpawnError(f"template unreachable: {exc}") from exc
            if data:
                return data
            if self._ctl is ctl:
                self._ctl = None  # dead: the supervisor's main thread re-creates it

    @staticmethod
    def _await_ready(worker: WorkerHandle, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        waiter = select.poll()
        waiter.register(worker.result_fd, select.POLLIN)
        if worker.pidfd is not None:
            waiter.register(worker.pidfd, select.POLLIN)
        while time.monotonic() < deadline:
            waiter.poll(int((deadline - time.monotonic()) * 1000) + 1)
            data = read_available(worker.result_fd)
            if data:
                messages = worker.decoder.feed(data)
                if messages and isinstance(messages[0], Ready):
                    worker.ready_at = time.monotonic()
                    worker.baseline_rss = messages[0].baseline_rss
                    worker.move("ready")
                    return
                if messages and isinstance(messages[0], Failure):
                    failure = messages[0]
                    raise SpawnError(
                        f"worker {worker.pid} failed to start (an on_worker_start hook "
                        f"raised): {failure.error_type}: {failure.error_message}"
                    )
                raise SpawnError(f"worker {worker.pid} spoke before Ready: {messages!r:.200}")
            if data == b"" or not worker.is_alive():
                raise SpawnError(f"worker {worker.pid} died while starting")
        raise SpawnError(f"worker {worker.pid} not ready within {timeout_s} s")


class WorkerPool:
    """Spare workers, forked and idle, for whichever slot needs one next (and
    the first worker, asked for at start-up, which may still be setting up).

    :meth:`take` never forks on the caller's path when a spare is waiting;
    :meth:`refill` (run by the supervisor's refill thread, told by
    ``on_taken``) asks for the replacement.
    """

    def __init__(
        self,
        template: TemplateClient,
        memory_limit_bytes: int | None,
        spares: int,
        on_taken: Callable[[], None],
        on_spawned: Callable[[WorkerHandle, float], None] = lambda _worker, _ms: None,
    ) -> None:
        self._template = template
        self._memory_limit_bytes = memory_limit_bytes
        self._target = spares
        self._on_taken = on_taken
        self._on_spawned = on_spawned
        self._lock = threading.Lock()
        self._spares: list[WorkerHandle] = []
        self.closed = False

    def add_first(self, worker: WorkerHandle) -> None:
        """A worker asked for already, to be taken first (waited for then, if it
        is still setting itself up)."""
        with self._lock:
            self._spares.insert(0, worker)

    @property
    def memory_limit_bytes(self) -> int | None:
        return self._memory_limit_bytes

    def spawn(self) -> WorkerHandle:
        worker = self._template.spawn(self._memory_limit_bytes)
        self._spawned(worker)
        return worker

    def _spawned(self, worker: WorkerHandle) -> None:
        self._on_spawned(worker, (worker.ready_at - worker.requested_at) * 1000)

    def take(self) -> WorkerHandle:
        """An idle worker: the first one once it is set up (see :meth:`add_first`),
        a spare if one is alive, else a new one forked now."""
        while True:
            with self._lock:
                spare = self._spares.pop(0) if self._spares else None
            if spare is None:
                break
            if spare.state is WorkerState.STARTING:  # the first, asked for at start-up
                self._on_taken()
                self._template.await_ready(spare)
                self._spawned(spare)
                return spare
            if spare.is_alive():
                self._on_taken()
                return spare
            spare.close()
        self._on_taken()
        return self.spawn()

    def refill(self) -> None:
        while not self.closed:
            with self._lock:
                missing = self._target - len(self._spares)
            if missing <= 0:
                return
            worker = self.spawn()
            with self._lock:
                if self.closed:
                    worker.kill()
                    worker.close()
                    return
                self._spares.append(worker)

    def drain(self) -> list[WorkerHandle]:
        """Stop refilling; hand back the spares (for the caller to retire)."""
        with self._lock:
            self.closed = True
            spares, self._spares = self._spares, []
        return spares
