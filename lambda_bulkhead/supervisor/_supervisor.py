"""The supervisor: the only process that talks to the Runtime API.

Start-up, in order:

1. fork the template (the supervisor has no threads yet, so the fork is safe)
   and, while it loads the handler, send the internal extension's register
   (:mod:`lambda_bulkhead.runtime_api._extension`: Lambda then sends SIGTERM
   at shutdown; ``BULKHEAD_SHUTDOWN_EXTENSION=0`` skips it), its answer read
   before the slots start; wait for the template: a failure, or the
   template's death (a segfault or exit at import), is posted to
   ``/init/error`` and the runtime exits non-zero without polling ``/next``;
2. SnapStart only: the template ran the before-snapshot hooks before saying it
   was ready (a failure: ``/init/error``, exit 64); ``restore/next``; the
   first worker is asked for, and the template runs the after-restore hooks
   before forking it (a failure: ``/restore/error``, exit 65);
3. choose how workers start (:func:`~._policy.choose_worker_start`): forked
   from the template, or, when its import left threads, the template becomes
   the first worker and a zygote forks the others, each importing the
   handler;
4. ask for the first worker (forked mode: the template has it forked
   already, see :mod:`lambda_bulkhead.worker._template`; it sets itself up
   while the slots start), read the extension's register answer, start the
   stop-signal thread (SIGTERM/SIGINT, taken with ``sigwaitinfo``: see
   :mod:`._stopsignals`), then one slot thread per concurrent invocation
   (``BULKHEAD_WORKERS`` / ``AWS_LAMBDA_MAX_CONCURRENCY``); each takes a worker
   and only then polls ``/next`` (back-pressure), and runs the shared loop of
   :mod:`lambda_bulkhead.runtime_api._loop`;
5. the main thread then logs the start-up record (importing structlog off the
   path to the first ``/next``) and serves: stop signals, children to reap
   (it is the subreaper of the whole tree) and orphans to stop, worker exit
   statuses from the template, a template to re-create when it dies, spare
   refills (asked of a thread of their own) and a slot's fatal error.

Shutdown (SIGTERM/SIGINT from outside the runtime's tree; Lambda allows about
500 ms before SIGKILL): the stop-signal thread starts the grace at once (and
has the log made on a thread of its own); slots stop polling; an invocation
in flight gets :data:`SHUTDOWN_GRACE_S` to finish (then it is answered with
an error); then the template (and the template serving as a worker) get
SIGTERM, the template passes it on to its workers, and each process that
holds the handler's module ends as at its own exit: the SIGTERM handler its
import installed, ``on_worker_end`` hooks, ``atexit`` functions; what has not
ended :data:`PROCESSES_END_S` later is killed with everything it started; what
they wrote is logged; exit 0.  A fatal Runtime API error, a restart storm or
a template that cannot be re-created exit 1.
"""

from __future__ import annotations

import _socket
import contextlib
import gc
import os
import select
import sys
import threading
import time
from collections.abc import Callable

from lambda_bulkhead._config import Config
from lambda_bulkhead._errors import InitError, NotRunningInLambda, RuntimeApiError, runtime_exited
from lambda_bulkhead.handler._hooks import EXIT_AFTER_RESTORE_FAILED, EXIT_BEFORE_SNAPSHOT_FAILED
from lambda_bulkhead.logs._format import LogSettings
from lambda_bulkhead.logs._writer import LogWriter, default_log
from lambda_bulkhead.process import _signals
from lambda_bulkhead.process._affinity import slot_cpus
from lambda_bulkhead.process._native import become_subreaper, set_dumpable
from lambda_bulkhead.process._orphans import kill_orphans, reap_children
from lambda_bulkhead.process._procfs import current_rss
from lambda_bulkhead.runtime_api._client import RuntimeApi
from lambda_bulkhead.runtime_api._extension import (
    Registration,
    ShutdownExtension,
    report_hook_error,
    wait_for_restore,
)
from lambda_bulkhead.runtime_api._loop import serve
from lambda_bulkhead.supervisor._decisions import CrashCounter, InvocationReport
from lambda_bulkhead.supervisor._fork import TemplateHandles, fork_template
from lambda_bulkhead.supervisor._memory import OomKills
from lambda_bulkhead.supervisor._output import OutputSink, PipeOutput
from lambda_bulkhead.supervisor._policy import (
    RestartPolicy,
    choose_worker_start,
    describe_exit,
    fault_stack,
    name_of_signal,
)
from lambda_bulkhead.supervisor._pool import (
    IMPORT_TIMEOUT_S,
    ExitRegistry,
    SpawnError,
    TemplateClient,
    WorkerHandle,
    WorkerPool,
)
from lambda_bulkhead.supervisor._report import emit_report
from lambda_bulkhead.supervisor._slot import Shutdown, Slot, SlotSettings, Supervision
from lambda_bulkhead.supervisor._stopsignals import StopSignals
from lambda_bulkhead.wire._frames import (
    FrameDecoder,
    TemplateFailed,
    TemplateNotes,
    TemplateReady,
    WireError,
    WorkerExited,
)
from lambda_bulkhead.wire._pipes import read_available

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from lambda_bulkhead.handler._handler import HandlerSource
    from lambda_bulkhead.logs._interface import RuntimeLog
    from lambda_bulkhead.wire._frames import Message

__all__ = [
    "EXIT_AFTER_RESTORE_FAILED",
    "EXIT_BEFORE_SNAPSHOT_FAILED",
    "EXIT_FATAL",
    "EXIT_INIT_FAILED",
    "SHUTDOWN_GRACE_S",
    "supervise",
]

EXIT_INIT_FAILED = 1
EXIT_FATAL = 1
#: How long an invocation in flight at SIGTERM may go on before it is answered
#: with an error (Lambda sends SIGKILL about 500 ms after SIGTERM).
SHUTDOWN_GRACE_S = 0.15
#: How long the template and workers may take to end after their SIGTERM (their
#: SIGTERM handlers, end hooks, atexit functions) before they are killed: a bit
#: more than the template gives its workers (``worker._template.WORKERS_END_S``,
#: 0.2 s; not imported: the supervisor never loads the worker's modules).
PROCESSES_END_S = 0.25
#: While log records are held (a full stdout pipe), the main thread retries when
#: the pipe has room, and at least this often.
LOG_RETRY_S = 0.05
#: How long the main thread stays off the path of a first invocation that has
#: not come yet (on Lambda it is already waiting: this only matters locally).
QUIET_START_S = 1.0
#: How long the exit waits for held log records to get out.
EXIT_LOG_FLUSH_S = 0.2
_MB = 1024 * 1024


class SlotStopped(BaseException):
    """Raised in a slot thread, before it polls again, once shutdown began."""


class _Control:
    """How slot threads wake the main thread: one byte per request on a pipe."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.fatal: BaseException | None = None
        self.spawn_error: SpawnError | None = None
        self._answered = False

    def _wake(self, what: bytes) -> None:
        # A full pipe means the main thread has plenty to wake up for already.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, what)

    def refill(self) -> None:
        self._wake(b"r")

    def answered(self) -> None:
        """An invocation was answered (only the first one wakes anybody)."""
        if not self._answered:
            self._answered = True
            self._wake(b"a")

    def failed(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        self._wake(b"f")

    def spawn_failed(self, exc: SpawnError) -> None:
        self.spawn_error = exc
        self._wake(b"s")


class _Template:
    """The process workers are asked of now: the template, or the zygote (its
    control socket is the :class:`TemplateClient`'s)."""

    def __init__(self, pid: int, events_r: int) -> None:
        self.pid = pid
        self.events_r = events_r


class _Refiller:
    """Forks spare workers on a thread of its own.  Where workers import the
    handler themselves, a spare takes as long as that import, which must not
    hold up the main thread's signals and exit statuses."""

    def __init__(self, pool: WorkerPool, control: _Control) -> None:
        self._pool = pool
        self._control = control
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="refill", daemon=True)
            self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        while not self._pool.closed:
            self._wanted.wait()
            self._wanted.clear()
            try:
                self._pool.refill()
            except Exception as exc:  # whatever it is (EMFILE...), there are no more spares
                if not self._pool.closed:  # (a shutdown closes the template's socket)
                    self._control.spawn_failed(
                        exc if isinstance(exc, SpawnError) else SpawnError(repr(exc))
                    )
                return


class _LazyLog:
    """The structlog logger writing to ``writer``, made the first time something
    is logged (a :class:`RuntimeLog`, also for the slots' Runtime API clients).

    Records that come before the start-up record (the first invocation's
    report, the info events of start-up) are held and emitted after it, by
    the main thread: making the logger imports structlog, which must stay off
    the first invocation's path.
    """

    def __init__(self, settings: LogSettings, writer: LogWriter) -> None:
        self._settings = settings
        self._writer = writer
        self._log: RuntimeLog | None = None
        self._lock = threading.Lock()
        self._held: list[Callable[[RuntimeLog], None]] | None = []

    def get(self) -> RuntimeLog:
        if self._log is None:
            with self._lock:
                if self._log is None:
                    self._log = default_log(self._settings, self._writer)
        return self._log

    def emit(self, record: Callable[[RuntimeLog], None]) -> None:
        """Make ``record`` with the logger now, or after the start-up record."""
        with self._lock:
            held = self._held
            if held is not None:
                held.append(record)
                return
        record(self.get())

    def event(self, event: str, *, level: str = "info", **fields: Any) -> None:
        """Log ``event`` at ``level`` (a :class:`RuntimeLog` method name); held
        until :meth:`release` when it is a debug or info event that comes
        before the start-up record."""
        if level in ("debug", "info"):
            self.emit(lambda log: getattr(log, level)(event, **fields))
        else:
            getattr(self.get(), level)(event, **fields)

    def release(self) -> None:
        """Emit the held records (after the start-up record), and hold no more."""
        with self._lock:
            held, self._held = self._held or [], None
        for record in held:
            record(self.get())

    def debug(self, event: str, **fields: Any) -> None:
        self.get().debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.get().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.get().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.get().error(event, **fields)


def _first_messages(
    ctl: _socket.socket,
    output: PipeOutput,
    *,
    timeout_s: float | None = None,
    wake_fd: int | None = None,
    interrupted: Callable[[], bool] = lambda: False,
) -> list[Message]:
    """The template's first packet of messages (none: it died, or did not speak
    within ``timeout_s``), logging its output meanwhile (an import that prints
    more than a pipe holds must not stall it).  When ``wake_fd`` is readable,
    ``interrupted()`` is asked whether to give up (none)."""
    end = None if timeout_s is None else time.monotonic() + timeout_s
    watched = [ctl.fileno()] if wake_fd is None else [ctl.fileno(), wake_fd]
    while True:
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            return []
        readable, _, _ = select.select([*watched, *output.fds], [], [], left)
        for fd in readable:
            if fd in output.fds:
                output.read(fd)
        if wake_fd in readable and interrupted():
            return []
        if ctl.fileno() in readable:
            break
    data = ctl.recv(1 << 20)
    if not data:
        return []
    try:
        return FrameDecoder().feed(data)
    except WireError:
        return []


def _init_error(first: Message | None, template_pid: int, fault_r: int) -> tuple[InitError, bool]:
    """Why the template did not get ready, and whether it was a before-snapshot
    hook (SnapStart) rather than the handler's import."""
    if isinstance(first, TemplateFailed):
        _, status = os.waitpid(template_pid, 0)  # it exits right after saying why
        hook = os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_BEFORE_SNAPSHOT_FAILED
        return InitError(first.error_type, first.error_message, first.stack_trace), hook
    if first is not None:  # alive but speaking out of turn: not a template to trust
        os.kill(template_pid, _signals.SIGKILL)
    _, status = os.waitpid(template_pid, 0)
    fault = b""
    while chunk := os.read(fault_r, 65536):
        fault += chunk
    runtime_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return InitError(
        "Runtime.ExitError",
        runtime_exited(f"{describe_exit(status)} (while importing the handler)"),
        fault_stack(fault.decode("utf-8", "replace"), runtime_dir),
    ), False


class _Registration:
    """The internal extension (Lambda then sends SIGTERM at shutdown), unless
    turned off: its register is sent at once, and its answer read by
    :meth:`finish`, before the first ``/next`` (Lambda takes registrations
    during init only).  Meanwhile the supervisor waits for its template and
    asks for the first worker.  A Runtime API that refuses it is logged: the
    runtime serves, but a shutdown is a SIGKILL, as with no extension."""

    def __init__(self, config: Config, log: _LazyLog) -> None:
        self._log = log
        self._sent: Registration | None = None
        self._extension: ShutdownExtension | None = None
        if config.shutdown_extension and config.endpoint is not None:
            try:
                self._sent = Registration(config.endpoint)
            except RuntimeApiError as exc:
                self._refused(exc)

    def finish(self) -> ShutdownExtension | None:
        """The extension, registered (None: turned off, or refused)."""
        sent, self._sent = self._sent, None
        if sent is not None:
            try:
                self._extension = sent.finish()
            except RuntimeApiError as exc:
                self._refused(exc)
        return self._extension

    def _refused(self, exc: RuntimeApiError) -> None:
        self._log.event("shutdown extension not registered: shutdown will be a SIGKILL",
                        level="warning", error=str(exc))


def _restored(endpoint: tuple[str, int], log: _LazyLog) -> bool:
    """SnapStart: wait for ``restore/next`` (the before-snapshot hooks ran in the
    template); False, with ``/init/error`` posted, if it failed (as the official
    runtime does)."""
    started = time.monotonic()
    try:
        wait_for_restore(endpoint)
    except RuntimeApiError as exc:
        error = InitError(type(exc).__name__, str(exc))
        report_hook_error(endpoint, error, restored=False)
        log.get().error("restore/next failed", error=str(exc))
        return False
    log.event("restored from snapshot", waitedMs=round((time.monotonic() - started) * 1000, 1))
    return True


def _spawn_failed(exc: SpawnError, endpoint: tuple[str, int], log: _LazyLog) -> int:
    """The first worker could not be had: an after-restore hook failed (posted
    to ``/restore/error``), or the fork did."""
    if exc.failure is None:
        log.get().error("cannot fork workers; exiting", error=str(exc))
        return EXIT_FATAL
    failure = exc.failure
    error = InitError(failure.error_type, failure.error_message, failure.stack_trace)
    report_hook_error(endpoint, error, restored=True)
    log.get().error("after-restore hook failed", errorType=error.error_type,
                    errorMessage=error.error_message)
    return EXIT_AFTER_RESTORE_FAILED


def supervise(
    config: Config,
    source: HandlerSource,
    template: TemplateHandles,
    telemetry_fd: int | None,
    started: float,
    own_fds: frozenset[int] = frozenset(),
    *,
    collecting: bool = True,
) -> int:
    """Run the supervised runtime, its template forked, until shutdown or a fatal
    error; the exit status.  ``own_fds``: the fds the process had before the
    runtime opened any (kept by the processes it forks later).  ``collecting``:
    turn the cyclic garbage collector on (off during start-up) once the start-up
    record is made, and in the templates forked later."""
    # No handler may open this process's sockets and pipes through /proc, ptrace
    # it or take its fds with pidfd_getfd (the handler runs as the same user).
    set_dumpable(False)
    # Orphans of the whole tree (a handler's double-forked daemon whose worker
    # and template are gone) become this process's children, to be stopped.
    become_subreaper()
    settings = config.log
    endpoint = config.endpoint
    if endpoint is None:
        raise NotRunningInLambda
    template_pid, ctl = template.pid, template.ctl
    events_r, fault_r = template.events_r, template.fault_r
    template_fds = (template.stdout_r, template.stderr_r)
    # Made after the fork: the writer's own fd (a pipe reopened non-blocking)
    # must not be inherited by the template, and through it by the workers.
    if telemetry_fd is None:
        writer = LogWriter(1, settings=settings)
    else:
        writer = LogWriter(telemetry_fd, settings=settings, telemetry=True)
    log = _LazyLog(settings, writer)
    template_output = PipeOutput(*template_fds, OutputSink(settings, writer.write))
    # Made while the template loads the handler (no request is sent yet): the
    # slots then poll /next the moment it is ready.
    apis = [
        RuntimeApi.from_config(config, log=log)
        for _ in range(config.workers)
    ]
    registration = _Registration(config, log)
    messages = _first_messages(ctl, template_output)
    first = messages[0] if messages else None
    if not isinstance(first, TemplateReady):
        registration.finish()  # registered, as it would be had init gone well
        error, before_snapshot = _init_error(first, template_pid, fault_r)
        template_output.drain()
        for api in apis[1:]:
            api.close()
        with apis[0] as api:
            if before_snapshot:
                report_hook_error(endpoint, error, restored=False)
            else:
                api.send_init_error(error)
        log.get().error(
            "before-snapshot hook failed" if before_snapshot else "init failed",
            errorType=error.error_type, errorMessage=error.error_message,
        )
        return EXIT_BEFORE_SNAPSHOT_FAILED if before_snapshot else EXIT_INIT_FAILED
    os.close(fault_r)
    if config.snap_start:
        registration.finish()  # registered before the snapshot
        if not _restored(endpoint, log):
            return EXIT_BEFORE_SNAPSHOT_FAILED
    start = choose_worker_start(
        config.worker_start, first.threads, isinstance(source, str), first.threads_surviving_fork
    )
    log.event("worker start", mode=start.mode, reason=start.reason, templateThreads=first.threads)
    for notes in messages[1:]:
        if isinstance(notes, TemplateNotes):
            log.event(
                "inherited connections", connections=list(notes.connections),
                keptBy="the first worker; every other worker opens its own",
            )
    control = _Control()
    exits = ExitRegistry()
    template_outputs = [template_output]
    adopted: WorkerHandle | None = None
    def start_template(
        load: bool, wake_fd: int | None = None,
        interrupted: Callable[[int], bool] = lambda _pid: False,
    ) -> tuple[TemplateHandles, TemplateReady] | None:
        """A template (``load``) or zygote forked from this serving process, once
        ready; None (killed) if it dies, stays silent past the import timeout,
        or ``interrupted(its pid)`` says to give up when ``wake_fd`` is readable."""
        handles = fork_template(source, config.task_root, config.function, settings,
                                telemetry_fd, load=load, keep_fds=own_fds, collecting=collecting)
        output = PipeOutput(handles.stdout_r, handles.stderr_r,
                            OutputSink(settings, writer.write))
        template_outputs.append(output)
        ready = _first_messages(handles.ctl, output, timeout_s=IMPORT_TIMEOUT_S,
                                wake_fd=wake_fd, interrupted=lambda: interrupted(handles.pid))
        os.close(handles.fault_r)
        if not ready or not isinstance(ready[0], TemplateReady):
            with contextlib.suppress(ProcessLookupError):
                os.kill(handles.pid, _signals.SIGKILL)
            return None
        return handles, ready[0]

    if start.mode == "import":
        registration.finish()  # before the exits below, as for an init error
        started_zygote = start_template(load=False)
        if started_zygote is None:
            log.get().error("the zygote process died while starting; exiting")
            return EXIT_FATAL
        zygote, zygote_ready = started_zygote
        cap_mb = _cap_mb(config, zygote_ready.rss, worker_private_rss=first.rss)
        limit = None if cap_mb is None else int(cap_mb * _MB)
        try:
            # The template, which imported the handler, serves as the first worker
            # (with SnapStart, once its after-restore hooks ran).
            adopted = TemplateClient(ctl).spawn(limit, in_place=True)
        except SpawnError as exc:
            return _spawn_failed(exc, endpoint, log)
        ctl.close()
        os.close(events_r)
        template_pid, ctl, events_r = zygote.pid, zygote.ctl, zygote.events_r
        client = TemplateClient(ctl, ready_timeout_s=IMPORT_TIMEOUT_S)
    else:
        cap_mb = _cap_mb(config, first.rss, worker_private_rss=0)
        limit = None if cap_mb is None else int(cap_mb * _MB)
        client = TemplateClient(ctl)
        if config.snap_start:
            try:  # the first worker, forked once the after-restore hooks ran
                adopted = client.spawn(limit)
            except SpawnError as exc:
                return _spawn_failed(exc, endpoint, log)
        else:
            # Asked for now (the template has it forked already, see run_template),
            # set up while the slots start, and awaited by the first.  Before the
            # client waits for re-created templates: only this thread re-creates
            # them.  A template gone already is re-created by the main loop, and
            # the first slot's worker forked from the new one.
            with contextlib.suppress(SpawnError):
                adopted = client.request_worker(limit)
    current = _Template(template_pid, events_r)
    crashes = CrashCounter(RestartPolicy())

    def recreate(wake_fd: int, interrupted: Callable[[int], bool]) -> _Template | None:
        """A new template (or zygote) in place of one that died: the handler is
        imported again.  None: it could not be (within the import timeout), or
        templates keep dying, or ``interrupted(new_pid)`` (asked when ``wake_fd``
        is readable: a stop signal) says to give up."""
        crashes.crashed()
        if crashes.delay() is None:
            return None
        started_again = start_template(start.mode == "fork", wake_fd, interrupted)
        if started_again is None:
            return None
        handles = started_again[0]
        client.replace(handles.ctl)
        return _Template(handles.pid, handles.events_r)

    pool = WorkerPool(
        client,
        limit,
        spares=1,
        on_taken=control.refill,
        on_spawned=lambda worker, ms: log.event(
            "worker forked", pid=worker.pid, forkMs=round(ms, 2),
            baselineRssMB=round(worker.baseline_rss / _MB, 1),
        ),
    )
    if adopted is not None:
        pool.add_first(adopted)
    client.replaceable = True
    shutdown = Shutdown()

    def report(summary: InvocationReport) -> None:
        ended = time.time()  # the first report is held until structlog is loaded
        log.emit(lambda runtime_log: emit_report(runtime_log, summary, settings.format, ended))
        control.answered()

    cpus = slot_cpus(config.workers) if config.colocate else [None] * config.workers
    supervision = Supervision(pool, exits, crashes, shutdown, OomKills(), report, log.event)
    slot_settings = SlotSettings.from_config(config)
    slots = [
        Slot(supervision, slot_settings, OutputSink(settings, writer.write), cpu)
        for cpu in cpus
    ]
    threads = [
        threading.Thread(
            target=_run_slot, args=(slot, api, shutdown, control),
            name=f"slot-{index}", daemon=True,
        )
        for index, (slot, api) in enumerate(zip(slots, apis, strict=True))
    ]
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    stop_signals = StopSignals(wake_w, lambda signum, sender: log.event(
        "stop signal from the runtime's own process tree ignored", level="warning",
        signal=name_of_signal(signum), senderPid=sender,
    ), obeyed=lambda: _stop_signal_obeyed(shutdown, log))
    # Lambda takes registrations during init only: before any /next.  The
    # answer came while the template loaded and the first worker was asked for.
    extension = registration.finish()
    stop_signals.start()  # before the slots: their threads inherit the blocked mask
    received = stop_signals.received
    # SIGCHLD wakes the main thread to reap orphans (the supervisor is their subreaper).
    _signals.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    _signals.signal(_signals.SIGCHLD, lambda *_: None)
    for thread in threads:
        thread.start()

    def announce() -> None:
        log.get().info(
            "runtime started",
            version=_version(),
            python=sys.version.split()[0],
            isolation="process",
            workers=config.workers,
            memoryLimitMB=None if cap_mb is None else round(cap_mb),
            timeoutMarginMs=config.timeout_margin_ms,
            maxInvocationsPerWorker=config.max_invocations or None,
            transport=config.transport,
            slotCpus=_slot_cpus(slots),
            templatePid=current.pid,
            workerStart=start.mode,
            initMs=init_ms,
        )
        log.release()
        # The memory watch scans a long invocation's descendants with psutil
        # (28 ms to import): here, not in a slot while it waits.
        import psutil  # noqa: F401, PLC0415

        if collecting:
            gc.enable()

    init_ms = round((time.monotonic() - started) * 1000, 1)
    in_place_pid = None if adopted is None or start.mode != "import" else adopted.pid
    status = _serve_main(
        pool, exits, control, log, writer, current, wake_r, received, template_outputs,
        announce, recreate, in_place_pid,
    )
    _stop(slots, pool, shutdown, (current.pid, in_place_pid), client, log,
          OutputSink(settings, writer.write), reason=status[1])
    if extension is not None:
        extension.close()
    for output in template_outputs:
        output.drain()
        output.close()
    writer.flush(EXIT_LOG_FLUSH_S)
    if control.fatal is not None:
        raise control.fatal  # as in-process: the caller (the CLI, start()) reports it
    return status[0]


def _cap_mb(config: Config, shared_rss: int, worker_private_rss: int) -> float | None:
    """The per-worker memory cap in MB: the configured one, else derived from
    the function's memory (None: no cap)."""
    if config.memory_limit_mb is not None:
        return config.memory_limit_mb or None
    return config.default_memory_limit_mb(
        shared_rss / _MB, current_rss() / _MB, worker_private_rss / _MB
    )


def _slot_cpus(slots: list[Slot]) -> list[int | None] | None:
    """The CPU each slot's thread was pinned to, for the start record (None: none)."""
    cpus = [slot.cpu for slot in slots]
    return None if all(cpu is None for cpu in cpus) else cpus


def _version() -> str:
    from lambda_bulkhead import __version__  # noqa: PLC0415

    return __version__


def _run_slot(slot: Slot, api: RuntimeApi, shutdown: Shutdown, control: _Control) -> None:
    def prepare() -> None:
        slot.flush_report()
        if shutdown.requested.is_set():
            raise SlotStopped
        slot.prepare()

    slot.bind_thread()
    try:
        with api:
            serve(
                api, slot, prepare=prepare, ready=slot.ready_for_next,
                before_wait=slot.flush_report,
            )
    except SlotStopped:
        return
    except BaseException as exc:  # fatal for the runtime: the main thread exits
        if shutdown.requested.is_set():
            return  # the stop closed what it was using (the template, its worker)
        control.failed(exc)


def _serve_main(
    pool: WorkerPool,
    exits: ExitRegistry,
    control: _Control,
    log: _LazyLog,
    writer: LogWriter,
    template: _Template,
    wake_r: int,
    received: list[int],
    template_outputs: list[PipeOutput],
    announce: Callable[[], None],
    recreate: Callable[[int, Callable[[int], bool]], _Template | None],
    adopted_pid: int | None,
) -> tuple[int, str]:
    """The main thread's loop; returns (exit status, why it ended).

    Until the first invocation is answered (or :data:`QUIET_START_S` passed),
    the main thread stays off the first invocation's path: the start-up record
    (which imports structlog) and the spare worker's fork wait until then.
    ``adopted_pid``: the template serving as a worker, a child of this process
    (not of the zygote), whose exit status is read here, as are those of
    workers that outlived their template.  Any other child than it and the
    template is an orphan a handler left (this process is the subreaper of its
    tree): it is killed, with its process group.  A template that dies is
    re-created (``recreate``), and ``template`` updated.
    """
    decoder = FrameDecoder()
    log_pending = False
    quiet_until: float | None = time.monotonic() + QUIET_START_S
    refiller = _Refiller(pool, control)
    own_children = {template.pid} if adopted_pid is None else {template.pid, adopted_pid}

    def woken(starting: int | None = None) -> bool:
        """Reap children and stop orphans (all but ``starting``, a template being
        re-created); whether a stop signal came."""
        while read_available(wake_r, 4096):
            pass
        for pid, status in reap_children():
            if pid != template.pid:  # a worker whose template died, or the adopted one
                exits.record(pid, status)
            own_children.discard(pid)
        kill_orphans(own_children if starting is None else own_children | {starting})
        return bool(received)

    while True:
        if quiet_until is not None:
            timeout: float | None = max(0.0, quiet_until - time.monotonic())
        else:
            timeout = LOG_RETRY_S if log_pending else None
        outputs = {fd: output for output in template_outputs for fd in output.fds}
        watched = [wake_r, template.events_r, control.read_fd, *outputs]
        # While log records are held (a full stdout pipe), wake when it has room.
        readable, _, _ = select.select(
            watched, [writer.fd] if log_pending else [], [], timeout,
        )
        for fd in readable:
            if fd in outputs:
                outputs[fd].read(fd)
        if wake_r in readable:
            woken()
        if received:
            return _stopped_by(received)
        if template.events_r in readable:
            data = os.read(template.events_r, 65536)
            if not data:
                log.get().warning(
                    "template process died; re-creating it (the handler is imported again)",
                    pid=template.pid,
                )
                os.close(template.events_r)
                # Signals and exit statuses are served while the handler imports.
                replacement = recreate(wake_r, woken)
                if received:
                    return _stopped_by(received)
                if replacement is None:
                    log.get().error("template process cannot be re-created; exiting so "
                                    "Lambda re-initialises")
                    return EXIT_FATAL, "template died"
                own_children = (own_children - {template.pid}) | {replacement.pid}
                template.pid, template.events_r = replacement.pid, replacement.events_r
                decoder = FrameDecoder()
                log.get().info("template process re-created", pid=template.pid)
                continue
            for message in decoder.feed(data):
                if isinstance(message, WorkerExited):
                    exits.record(message.pid, message.status)
        requests = b""
        if control.read_fd in readable:
            requests = read_available(control.read_fd, 4096) or b""
        if b"f" in requests:
            exc = control.fatal
            log.get().error(
                "fatal runtime error; exiting",
                error=f"{type(exc).__name__}: {exc}",
            )
            return EXIT_FATAL, "fatal error"
        if quiet_until is not None and (b"a" in requests or time.monotonic() >= quiet_until):
            quiet_until = None
            announce()
            requests += b"r"
        if b"s" in requests:
            log.get().error("cannot fork workers; exiting", error=str(control.spawn_error))
            return EXIT_FATAL, "spawn failed"
        if b"r" in requests and quiet_until is None:
            refiller.request()
        log_pending = not writer.flush()


def _stopped_by(received: list[int]) -> tuple[int, str]:
    names = ", ".join(name_of_signal(signum) for signum in received)
    return 0, f"received {names}"


def _stop(
    slots: list[Slot],
    pool: WorkerPool,
    shutdown: Shutdown,
    holders: tuple[int, int | None],
    client: TemplateClient,
    log: _LazyLog,
    output: OutputSink,
    *,
    reason: str,
) -> None:
    """Answer the invocations in flight, let every process end as it would at
    its own exit, then kill what is left (see "Shutdown" in the module's docstring).

    ``holders``: the template (or zygote) and the template serving as a worker
    (import mode), the processes to send SIGTERM to; the template passes it on
    to its workers.
    """
    began = _begin_shutdown(shutdown)
    # A slot answers by itself: its worker's answer, or an error at the grace's end.
    end = began + SHUTDOWN_GRACE_S + 0.1
    while any(slot.busy for slot in slots) and time.monotonic() < end:
        time.sleep(0.002)
    answered = time.monotonic()
    alive = {pid for pid in holders if pid is not None}
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, _signals.SIGTERM)
    end = time.monotonic() + PROCESSES_END_S
    # While they end: events held by a runtime stopped before its first answer
    # (the log's machinery may still have to be imported).
    log.release()
    while alive and time.monotonic() < end:
        for pid in list(alive):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    continue
            alive.discard(pid)
        time.sleep(0.002)
    # What the workers wrote as they ended reaches the log; whatever still runs is killed.
    for slot in slots:
        slot.retire()
    for spare in pool.drain():
        _forward_output(spare, output)
        spare.kill()
        spare.close()
    client.close()
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, _signals.SIGKILL)
    kill_orphans(set())
    log.event(
        "runtime stopped", reason=reason,
        answeredMs=round((answered - began) * 1000, 1),
        stoppedMs=round((time.monotonic() - began) * 1000, 1),
        killed=sorted(alive) or None,
    )


def _stop_signal_obeyed(shutdown: Shutdown, log: _LazyLog) -> None:
    """On the stop-signal thread: the grace starts now, and the log is made
    meanwhile (importing it can take 200 ms on a busy machine, a third of
    Lambda's 500 ms) by a thread of its own, off the main thread's way."""
    _begin_shutdown(shutdown)
    threading.Thread(target=log.get, name="log-for-shutdown", daemon=True).start()


def _begin_shutdown(shutdown: Shutdown) -> float:
    """Start the grace of in-flight invocations, once (by the first stop signal,
    on its thread, or by the main thread's stop); when it began."""
    if not shutdown.requested.is_set():
        shutdown.begin(SHUTDOWN_GRACE_S)
    assert shutdown.deadline is not None  # set by begin, before requested
    return shutdown.deadline - SHUTDOWN_GRACE_S


def _forward_output(worker: WorkerHandle, output: OutputSink) -> None:
    """What a worker that served no invocation wrote (a spare: its SIGTERM
    handler's lines), to the log."""
    while data := read_available(worker.stdout_fd):
        output.feed("stdout", data)
    while data := read_available(worker.stderr_fd):
        output.feed("stderr", data)
    output.end()
