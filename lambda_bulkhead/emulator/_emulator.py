"""The blocking, thread-safe face of the emulator: :class:`Emulator`.

The server runs on one asyncio loop in one background thread; every method
here hands its work to that loop (``call_soon_threadsafe``) and, where the
caller needs the effect to be in place before going on (``inject``,
``runtime_exited``), waits for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import json
import queue
import re
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TypeVar

from lambda_bulkhead.emulator._faults import NextFault, PostFault
from lambda_bulkhead.emulator._lifecycle import signal_shutdown
from lambda_bulkhead.emulator._records import (
    ApiCall,
    ExtensionInfo,
    History,
    InitErrorReport,
    InvokeResult,
    NextDelivery,
    RestoreErrorReport,
    RuntimeAnswer,
    ShutdownReport,
    StreamChunk,
)
from lambda_bulkhead.emulator._server import INVOKE_PREFIX, Core, FunctionConfig, Invocation
from lambda_bulkhead.emulator._wire import Connection, wire_text

__all__ = ["Emulator"]

_T = TypeVar("_T")

ACCOUNT_ID = "012345678912"
REGION = "us-east-1"
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STOP_TIMEOUT_S = 10.0
_END = object()  # marks the end of an InvokeStream's chunks


def _settle(future: concurrent.futures.Future[InvokeResult], result: InvokeResult) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(result)  # (cancelled by the caller: nobody wants it)


def _header_value(name: str, value: str) -> str:
    """``value`` as a header on the wire, refusing what would break the header block."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name} must not contain CR or LF")
    return wire_text(value)


def _json_header(name: str, value: str | Mapping[str, object] | None) -> str | None:
    """A JSON header value: a mapping is encoded, a string is sent as given."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return _header_value(name, text)


class Emulator:
    """A local stand-in for the Lambda Runtime API and the RIE's invoke endpoint.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

        with Emulator(timeout_s=3.0) as emu:
            env = emu.function_env()          # run the runtime with this environment
            result = emu.invoke(b'{"x": 1}', timeout=10)

    ``timeout_s`` is the function timeout: it runs from the moment ``/next``
    delivers an invocation.  ``max_history`` bounds the records kept
    (:attr:`answers`, :attr:`deliveries`, :attr:`init_errors`, :attr:`calls`,
    and the ended request ids that make late posts 403/410 rather than 400);
    ``None`` keeps all of them.  ``handler`` is what the Extensions API's
    register answers.  ``snap_start`` makes the function a SnapStart one
    (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``): ``restore/next`` is
    answered ``restore_delay_s`` after it is called (the snapshot and restore),
    and no invocation is delivered before.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 3.0,
        function_name: str = "test_function",
        function_version: str = "$LATEST",
        memory_mb: int = 3008,
        host: str = "127.0.0.1",
        port: int = 0,
        max_history: int | None = 10_000,
        handler: str = "app.handler",
        snap_start: bool = False,
        restore_delay_s: float = 0.05,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not _FUNCTION_NAME.fullmatch(function_name):
            raise ValueError(f"function_name {function_name!r} is not a Lambda function name")
        if memory_mb < 1:
            raise ValueError(f"memory_mb must be >= 1, got {memory_mb}")
        if max_history is not None and max_history < 1:
            raise ValueError(f"max_history must be >= 1 or None, got {max_history}")
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self._config = FunctionConfig(
            name=function_name,
            version=function_version,
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            arn=arn,
            handler=handler,
            snap_start=snap_start,
            restore_delay_s=restore_delay_s,
        )
        if not restore_delay_s >= 0:
            raise ValueError(f"restore_delay_s must be >= 0, got {restore_delay_s}")
        self._stream_reading: tuple[int, float] | None = None
        self._host = host
        self._requested_port = port
        self._max_history = max_history
        self._history = History(max_history)
        today = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d")
        self._log_stream = f"{today}/[{function_version}]{secrets.token_hex(16)}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._core: Core | None = None
        self._port: int | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind the port and start serving on a background thread; returns ``self``."""
        if self._loop is not None or self._stopped:
            raise RuntimeError("an Emulator can be started once")
        loop = asyncio.new_event_loop()
        core = Core(loop, self._config, self._history, self._max_history)
        thread = threading.Thread(target=loop.run_forever, name="lambda-bulkhead-emulator")
        thread.daemon = True  # a test that forgets stop() must not hang the interpreter
        thread.start()
        try:
            listening = core.listen(self._host, self._requested_port)
            self._port = asyncio.run_coroutine_threadsafe(listening, loop).result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self._loop, self._thread, self._core = loop, thread, core
        return self

    def stop(self) -> None:
        """Close every connection, cancel pending invokes' futures, end the thread.

        Safe to call twice.
        """
        loop, thread, core = self._loop, self._thread, self._core
        if loop is None or thread is None or core is None:
            self._stopped = True
            return
        if threading.current_thread() is thread:
            raise RuntimeError("stop() cannot run on the emulator's own thread")
        self._loop = self._thread = self._core = None
        self._stopped = True
        try:
            closing = asyncio.run_coroutine_threadsafe(core.close(), loop)
            closing.result(_STOP_TIMEOUT_S)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self._host}:{self._port}" if self._loop is not None else "not running"
        return f"<Emulator {self._config.name} {where}>"

    # -- where the runtime and callers connect ---------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port."""
        self._running()
        assert self._port is not None
        return self._port

    @property
    def runtime_api(self) -> str:
        """``host:port``: the value for ``AWS_LAMBDA_RUNTIME_API``."""
        return f"{self._host}:{self.port}"

    @property
    def invoke_url(self) -> str:
        """The RIE-compatible invoke endpoint."""
        return f"http://{self.runtime_api}{INVOKE_PREFIX}function/invocations"

    @property
    def function_arn(self) -> str:
        """``Lambda-Runtime-Invoked-Function-Arn`` as ``/next`` sends it."""
        return self._config.arn

    @property
    def timeout_s(self) -> float:
        """The function timeout, from delivery to ``Task timed out``."""
        return self._config.timeout_s

    def function_env(self) -> dict[str, str]:
        """The environment Lambda gives a runtime, pointing at this emulator."""
        config = self._config
        return {
            "AWS_LAMBDA_RUNTIME_API": self.runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_VERSION": config.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": f"{config.timeout_s:g}",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self._log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if config.snap_start else "on-demand",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # Unlike Lambda's classic mode, the emulator gives each queued
            # invoke to one of several waiting /next polls (docs/emulator.md).
            "BULKHEAD_CONCURRENT_POLLS": "1",
        }

    # -- invoking ----------------------------------------------------------------

    def submit(
        self,
        payload: bytes,
        *,
        content_type: str = "application/json",
        client_context: str | Mapping[str, object] | None = None,
        cognito_identity: str | Mapping[str, object] | None = None,
        trace_id: str | None = None,
        tenant_id: str | None = None,
        keep_chunks: bool = True,
        on_chunk: Callable[[StreamChunk], None] | None = None,
        on_body: Callable[[bytes], None] | None = None,
    ) -> concurrent.futures.Future[InvokeResult]:
        """Queue an invoke; the future gets its :class:`InvokeResult`.

        ``client_context`` and ``cognito_identity`` are the JSON ``/next``
        sends (a mapping is encoded; a string goes as given, valid or not).
        Cancelling the future before a runtime takes the invoke withdraws it;
        cancelling it while the answer streams is a caller that went away (the
        emulator reads the rest of the stream and drops it).

        For a streamed answer: ``keep_chunks=False`` keeps only counts and a
        hash (constant memory); ``on_chunk`` is called with each of the
        runtime's chunks as it arrives, ``on_body`` with the bytes the caller
        gets (after an HTTP integration prelude) as they arrive; both on the
        emulator's thread (they must not block).
        """
        future: concurrent.futures.Future[InvokeResult] = concurrent.futures.Future()
        self._enqueue(
            future,
            future.cancelled,
            payload,
            content_type=content_type,
            client_context=client_context,
            cognito_identity=cognito_identity,
            trace_id=trace_id,
            tenant_id=tenant_id,
            keep_chunks=keep_chunks,
            on_chunk=on_chunk,
            on_body=on_body,
        )
        return future

    def _enqueue(
        self,
        future: concurrent.futures.Future[InvokeResult],
        is_abandoned: Callable[[], bool],
        payload: bytes,
        *,
        content_type: str,
        client_context: str | Mapping[str, object] | None = None,
        cognito_identity: str | Mapping[str, object] | None = None,
        trace_id: str | None = None,
        tenant_id: str | None = None,
        keep_chunks: bool,
        on_chunk: Callable[[StreamChunk], None] | None,
        on_body: Callable[[bytes], None] | None = None,
    ) -> None:
        loop, core = self._running()
        invocation = Invocation(
            payload=bytes(payload),
            content_type=_header_value("content_type", content_type),
            client_context=_json_header("client_context", client_context),
            cognito_identity=_json_header("cognito_identity", cognito_identity),
            trace_id=None if trace_id is None else _header_value("trace_id", trace_id),
            tenant_id=None if tenant_id is None else _header_value("tenant_id", tenant_id),
            on_done=functools.partial(_settle, future),
            is_abandoned=is_abandoned,
            on_cancel=future.cancel,
            keep_chunks=keep_chunks,
            on_chunk=on_chunk,
            listener=None if on_body is None else _BodyListener(on_body),
        )
        loop.call_soon_threadsafe(core.submit, invocation)

    def stream(
        self,
        payload: bytes,
        *,
        keep_chunks: bool = True,
        content_type: str = "application/json",
    ) -> InvokeStream:
        """Invoke and iterate over the streamed answer's chunks as they arrive.

        ``for chunk in emu.stream(b"{}"): ...`` yields :class:`StreamChunk`
        values while the runtime streams; ``result(timeout)`` then gives the
        :class:`InvokeResult`.  ``disconnect()`` is a caller that goes away.
        """
        chunks: queue.SimpleQueue[object] = queue.SimpleQueue()
        gone = threading.Event()
        future: concurrent.futures.Future[InvokeResult] = concurrent.futures.Future()
        future.add_done_callback(lambda _future: chunks.put(_END))
        self._enqueue(future, gone.is_set, payload, content_type=content_type,
                      keep_chunks=keep_chunks, on_chunk=chunks.put)
        return InvokeStream(future, chunks, gone)

    def invoke(
        self,
        payload: bytes,
        *,
        timeout: float | None = None,
        content_type: str = "application/json",
        client_context: str | Mapping[str, object] | None = None,
        cognito_identity: str | Mapping[str, object] | None = None,
        trace_id: str | None = None,
        tenant_id: str | None = None,
    ) -> InvokeResult:
        """:meth:`submit` and wait up to ``timeout`` seconds (``None``: no limit).

        Raises ``TimeoutError`` if no result came in time; the invoke stays queued.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("invoke() would block the emulator's own thread; use submit()")
        future = self.submit(
            payload,
            content_type=content_type,
            client_context=client_context,
            cognito_identity=cognito_identity,
            trace_id=trace_id,
            tenant_id=tenant_id,
        )
        return future.result(timeout)

    # -- the runtime's side --------------------------------------------------------

    def read_streams_slowly(self, bytes_per_second: float | None, *, read_size: int = 4096) -> None:
        """Read streamed ``/response`` bodies slowly, to show the runtime's back-pressure.

        Each streamed body that begins after this call is read ``read_size``
        bytes at a time at about ``bytes_per_second``, with a receive buffer of
        ``read_size`` bytes (at least 4 KiB).  ``None`` reads at full speed again.
        """
        if bytes_per_second is not None and not bytes_per_second > 0:
            raise ValueError(f"bytes_per_second must be > 0, got {bytes_per_second}")
        if read_size < 1:
            raise ValueError(f"read_size must be >= 1, got {read_size}")
        _loop, core = self._running()
        setting = None if bytes_per_second is None else (read_size, bytes_per_second)
        self._call(functools.partial(core.set_stream_reading, setting))

    def wait_for_init(self, timeout: float | None = None) -> bool:
        """Wait until init is complete: every registered extension waits in
        ``event/next``, the runtime polled ``/next`` (and, with SnapStart, was restored).

        Returns ``False`` if that did not happen within ``timeout`` seconds.
        """
        loop, core = self._running()
        waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop.call_soon_threadsafe(core.add_init_waiter, waiter)
        try:
            waiter.result(timeout)
        except TimeoutError:
            return not waiter.cancel()
        except concurrent.futures.CancelledError:
            return False
        return True

    @property
    def init_complete(self) -> bool:
        """Whether init is complete (see :meth:`wait_for_init`)."""
        _loop, core = self._running()
        return self._call(core.init_complete)

    @property
    def extensions(self) -> list[ExtensionInfo]:
        """The extensions registered, in order."""
        _loop, core = self._running()
        return self._call(core.extensions)

    def shutdown(
        self, process: subprocess.Popen[bytes] | int, *, grace: float = 0.5, group: bool = False
    ) -> ShutdownReport:
        """End a runtime process as Lambda's shutdown phase does, and say what happened.

        SHUTDOWN goes to every extension that subscribed to it.  With a
        registered extension the process gets SIGTERM, then SIGKILL if it is
        still alive ``grace`` seconds later (Lambda: 300-500 ms); without one,
        SIGKILL at once.  ``process`` is a ``Popen`` or a pid; ``group`` sends
        the signals to its process group instead.  Blocks until it has ended.
        """
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0, got {grace}")
        _loop, core = self._running()
        has_extension = self._call(functools.partial(core.begin_shutdown, grace))
        return signal_shutdown(process, terminate_first=has_extension, grace_s=grace, group=group)

    def runtime_exited(self, reason: str = "exit status 1") -> None:
        """Say the runtime process died: in-flight and queued invokes are answered 502.

        Each gets ``{"errorType": "Runtime.ExitError", "errorMessage": "RequestId:
        <its id> Error: Runtime exited with error: <reason>"}``; so does every
        invoke until a runtime polls ``/next`` again.
        """
        _loop, core = self._running()
        self._call(functools.partial(core.runtime_exited, reason))

    def wait_for_next_poll(self, timeout: float | None = None, *, polls: int = 1) -> bool:
        """Wait until at least ``polls`` ``/next`` requests are waiting for an event.

        Returns ``False`` if that did not happen within ``timeout`` seconds.
        """
        loop, core = self._running()
        waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop.call_soon_threadsafe(core.add_poll_waiter, polls, waiter)
        try:
            waiter.result(timeout)
        except TimeoutError:
            # cancel() fails only if the loop resolved the waiter meanwhile: a poll came.
            return not waiter.cancel()
        except concurrent.futures.CancelledError:
            return False  # the emulator stopped
        return True

    # -- fault injection -----------------------------------------------------------

    def inject(self, fault: NextFault | PostFault, *, times: int = 1) -> None:
        """Make the next ``times`` answers of the fault's call misbehave (see ``_faults``).

        In effect when this returns.
        """
        if not isinstance(fault, NextFault | PostFault):
            raise TypeError(f"not a fault: {fault!r}")
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        _loop, core = self._running()
        self._call(functools.partial(core.inject, fault, times))

    def clear_faults(self) -> None:
        """Drop every fault not yet used."""
        _loop, core = self._running()
        self._call(core.clear_faults)

    # -- records -------------------------------------------------------------------

    @property
    def answers(self) -> list[RuntimeAnswer]:
        """Every ``/response`` and ``/error`` post, oldest first (a snapshot)."""
        return self._history.answers()

    @property
    def deliveries(self) -> list[NextDelivery]:
        """Every answer ``/next`` gave, oldest first (a snapshot)."""
        return self._history.deliveries()

    @property
    def init_errors(self) -> list[InitErrorReport]:
        """Every ``/init/error`` post, oldest first (a snapshot)."""
        return self._history.init_errors()

    @property
    def restore_errors(self) -> list[RestoreErrorReport]:
        """Every ``/restore/error`` post, oldest first (a snapshot)."""
        return self._history.restore_errors()

    @property
    def calls(self) -> list[ApiCall]:
        """The lifecycle calls (register, event/next, /next, restore...), in order (a snapshot)."""
        return self._history.calls()

    # -- helpers -------------------------------------------------------------------

    def _running(self) -> tuple[asyncio.AbstractEventLoop, Core]:
        loop, core = self._loop, self._core
        if loop is None or core is None:
            raise RuntimeError("the emulator is not running: use start() or `with`")
        return loop, core

    def _call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the loop thread and return its result."""
        loop, _core = self._running()
        if threading.current_thread() is self._thread:
            return function()
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(function())
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result()


class _BodyListener:
    """Hands a Python caller the streamed body as it comes (``submit(on_body=...)``)."""

    def __init__(self, on_body: Callable[[bytes], None]) -> None:
        self._on_body = on_body

    def begin(self, status: int, headers: list[tuple[str, str]]) -> None:
        pass  # the InvokeResult carries them

    def body(self, data: bytes) -> None:
        self._on_body(data)

    def set_source(self, source: Connection | None) -> None:
        pass  # no back-pressure: the callback must not block


class InvokeStream:
    """A streamed invoke's chunks as they arrive (see :meth:`Emulator.stream`)."""

    def __init__(
        self,
        future: concurrent.futures.Future[InvokeResult],
        chunks: queue.SimpleQueue[object],
        gone: threading.Event,
    ) -> None:
        self.future = future
        self._chunks = chunks
        self._gone = gone

    def __iter__(self) -> Iterator[StreamChunk]:
        return self

    def __next__(self) -> StreamChunk:
        item = self._chunks.get()
        if item is _END:
            self._chunks.put(_END)  # a second iteration ends at once too
            raise StopIteration
        assert isinstance(item, StreamChunk)
        return item

    def next_chunk(self, timeout: float | None = None) -> StreamChunk | None:
        """The next chunk within ``timeout`` seconds; ``None`` at the end of the stream."""
        try:
            item = self._chunks.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no chunk in time") from None
        if item is _END:
            self._chunks.put(_END)
            return None
        assert isinstance(item, StreamChunk)
        return item

    def result(self, timeout: float | None = None) -> InvokeResult:
        """The invoke's result, once the stream has ended."""
        return self.future.result(timeout)

    def disconnect(self) -> None:
        """Go away, as a caller that closes its connection mid-stream.

        The emulator reads the rest of the runtime's stream and drops it; the
        result, still given by :meth:`result`, says ``caller_disconnected``.
        """
        self._gone.set()
