"""The blocking, thread-safe face of the emulator: :class:`Emulator`.

The server runs on one asyncio loop in one background thread; every method
here hands its work to that loop (``call_soon_threadsafe``) and, where the
caller needs the effect to be in place before going on (``inject``,
``runtime_exited``), waits for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import json
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TypeVar

from lambda_bulkhead.emulator._faults import NextFault, PostFault
from lambda_bulkhead.emulator._http import wire_text
from lambda_bulkhead.emulator._records import (
    History,
    InitErrorReport,
    InvokeResult,
    NextDelivery,
    RuntimeAnswer,
)
from lambda_bulkhead.emulator._server import INVOKE_PREFIX, Core, FunctionConfig, Invocation

__all__ = ["Emulator"]

_T = TypeVar("_T")

ACCOUNT_ID = "012345678912"
REGION = "us-east-1"
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STOP_TIMEOUT_S = 10.0


def _settle(future: concurrent.futures.Future[InvokeResult], result: InvokeResult) -> None:
    # Not contextlib.suppress: this runs once per invocation and the context
    # manager costs more than the rest of the function.
    try:  # noqa: SIM105
        future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass  # the caller cancelled it: nobody wants the result


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
    (:attr:`answers`, :attr:`deliveries`, :attr:`init_errors`, and the ended
    request ids that make late posts 403/410 rather than 400); ``None`` keeps
    all of them.
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
        )
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
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
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
    ) -> concurrent.futures.Future[InvokeResult]:
        """Queue an invoke; the future gets its :class:`InvokeResult`.

        ``client_context`` and ``cognito_identity`` are the JSON ``/next``
        sends (a mapping is encoded; a string goes as given, valid or not).
        Cancelling the future before a runtime takes the invoke withdraws it.
        """
        loop, core = self._running()
        future: concurrent.futures.Future[InvokeResult] = concurrent.futures.Future()
        invocation = Invocation(
            payload=bytes(payload),
            content_type=_header_value("content_type", content_type),
            client_context=_json_header("client_context", client_context),
            cognito_identity=_json_header("cognito_identity", cognito_identity),
            trace_id=None if trace_id is None else _header_value("trace_id", trace_id),
            tenant_id=None if tenant_id is None else _header_value("tenant_id", tenant_id),
            on_done=functools.partial(_settle, future),
            is_abandoned=future.cancelled,
            on_cancel=future.cancel,
        )
        loop.call_soon_threadsafe(core.submit, invocation)
        return future

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
