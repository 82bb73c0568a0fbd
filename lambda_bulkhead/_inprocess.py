"""The in-process runtime (``--isolation none``): the handler runs in this
process, as with the official runtime.

Lifecycle, as the official runtime's where it has one: SnapStart hooks around
``restore/next``; the internal extension registered before the first
``/next`` (so Lambda sends SIGTERM at shutdown); a SIGTERM handler the
handler's import installed runs as it would there.  Without one, SIGTERM ends
the process normally (``on_worker_end`` hooks, ``atexit`` functions), after
the invocation in flight, if any, was answered; the official runtime dies by
the signal instead.
"""

from __future__ import annotations

import threading

from lambda_bulkhead._config import Config
from lambda_bulkhead._context import Invocation
from lambda_bulkhead._errors import (
    InitError,
    NotRunningInLambda,
    RuntimeApiError,
    handler_stack,
)
from lambda_bulkhead.handler._handler import (
    Answer,
    CurrentInvocation,
    HandlerSource,
    load_handler,
    official_handler,
)
from lambda_bulkhead.handler._hooks import (
    EXIT_AFTER_RESTORE_FAILED,
    EXIT_BEFORE_SNAPSHOT_FAILED,
    run_after_restore_hooks,
    run_before_snapshot_hooks,
    run_worker_end_hooks,
    run_worker_start_hooks,
)
from lambda_bulkhead.process import _signals
from lambda_bulkhead.runtime_api._client import RuntimeApi
from lambda_bulkhead.runtime_api._extension import (
    ShutdownExtension,
    report_hook_error,
    wait_for_restore,
)
from lambda_bulkhead.runtime_api._loop import Executor, in_process, serve
from lambda_bulkhead.runtime_api._stream import ResponseStream

__all__ = ["run_in_process"]

EXIT_INIT_FAILED = 1


def run_in_process(config: Config, source: HandlerSource) -> int:
    """The handler runs in this process, as with the official runtime: no crash
    isolation, no memory cap, no deadline enforcement.  With several workers
    configured, that many loops run in threads of this one process (the handler
    must then be thread-safe); the first loop runs on the main thread, so a
    handler may install signal handlers as it could under the official runtime.
    """
    from lambda_bulkhead._lazy import when_imported  # noqa: PLC0415

    settings = config.log
    current = CurrentInvocation()

    def install_logging(_: object) -> None:
        from lambda_bulkhead.logs._stdlib import install_worker_logging  # noqa: PLC0415

        install_worker_logging(
            1, settings.format, settings.level,
            lambda: current.request_id, lambda: current.tenant_id, marker=b"",
        )

    when_imported("logging", install_logging)  # once something uses logging
    api = RuntimeApi.from_config(config)
    endpoint = config.endpoint
    if endpoint is None:
        raise NotRunningInLambda
    failure: InitError | None = None
    try:
        handler = (
            official_handler(load_handler(source, config.task_root))
            if isinstance(source, str)
            else source
        )
    except InitError as error:
        failure = error
    if failure is None and config.snap_start:
        status = _snapshot_and_restore(api, endpoint)
        if status:
            return status
    if failure is None:
        try:
            run_worker_start_hooks()  # this process is the only worker
        except Exception as exc:  # an on_worker_start hook: as an error at import
            failure = InitError(type(exc).__name__, str(exc), handler_stack(exc))
    if failure is not None:
        api.send_init_error(failure)
        api.log.error(
            "init failed", errorType=failure.error_type, errorMessage=failure.error_message
        )
        return EXIT_INIT_FAILED
    extension = _register_extension(config, api)
    execute = _tracking(in_process(handler, config.function), current)
    stop = _StopOnSigterm(current)
    for index in range(1, config.workers):
        threading.Thread(
            target=_serve_thread, args=(config, execute), name=f"loop-{index}", daemon=True
        ).start()
    try:
        with api:
            return serve(api, execute, prepare=stop.check)
    except SystemExit:
        run_worker_end_hooks()
        raise
    finally:
        if extension is not None:
            extension.close()


def _snapshot_and_restore(api: RuntimeApi, endpoint: tuple[str, int]) -> int:
    """SnapStart, as the official runtime: the before-snapshot hooks, ``restore/next``
    (a failure of either to ``/init/error``), the after-restore hooks (a failure
    to ``/restore/error``); 0, or the exit status after a failure."""
    restored = False
    try:
        run_before_snapshot_hooks()
        wait_for_restore(endpoint)
        restored = True
        run_after_restore_hooks()
    except Exception as exc:  # any failure of a hook is the function's
        error = InitError(type(exc).__name__, str(exc), handler_stack(exc))
    else:
        return 0
    report_hook_error(endpoint, error, restored=restored)
    api.log.error("after-restore hook failed" if restored else "before-snapshot hook failed",
                  errorType=error.error_type, errorMessage=error.error_message)
    return EXIT_AFTER_RESTORE_FAILED if restored else EXIT_BEFORE_SNAPSHOT_FAILED


def _register_extension(config: Config, api: RuntimeApi) -> ShutdownExtension | None:
    if not config.shutdown_extension or config.endpoint is None:
        return None
    try:
        return ShutdownExtension.register(config.endpoint)
    except RuntimeApiError as exc:
        api.log.warning("shutdown extension not registered: shutdown will be a SIGKILL",
                        error=str(exc))
        return None


class _StopOnSigterm:
    """SIGTERM, when the handler's import installed no handler for it: exit at
    once while waiting for an event, else once the invocation in flight is
    answered (:meth:`check`, before the next poll)."""

    def __init__(self, current: CurrentInvocation) -> None:
        self._current = current
        self._requested = False
        if _signals.getsignal(_signals.SIGTERM) == _signals.SIG_DFL:
            _signals.signal(_signals.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, *_: object) -> None:
        self._requested = True
        if self._current.request_id is None:
            raise SystemExit(0)

    def check(self) -> None:
        if self._requested:
            raise SystemExit(0)


def _tracking(execute: Executor, current: CurrentInvocation) -> Executor:
    """``execute``, recording which invocation runs (for log records' request id)."""

    def run(invocation: Invocation, stream: ResponseStream) -> Answer:
        current.request_id, current.tenant_id = invocation.request_id, invocation.tenant_id
        try:
            return execute(invocation, stream)
        finally:
            current.request_id = current.tenant_id = None

    return run


def _serve_thread(config: Config, execute: Executor) -> None:
    with RuntimeApi.from_config(config) as api:
        serve(api, execute)
