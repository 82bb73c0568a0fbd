"""The in-process runtime (``--isolation none``): the handler runs in this
process, as with the official runtime."""

from __future__ import annotations

import threading

from lambda_bulkhead._config import Config
from lambda_bulkhead._context import Invocation
from lambda_bulkhead._errors import InitError, handler_stack
from lambda_bulkhead.handler._handler import (
    Answer,
    CurrentInvocation,
    HandlerSource,
    load_handler,
    official_handler,
)
from lambda_bulkhead.handler._hooks import run_worker_start_hooks
from lambda_bulkhead.runtime_api._client import RuntimeApi
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
    failure: InitError | None = None
    try:
        handler = (
            official_handler(load_handler(source, config.task_root))
            if isinstance(source, str)
            else source
        )
        run_worker_start_hooks()  # this process is the only worker
    except InitError as error:
        failure = error
    except Exception as exc:  # an on_worker_start hook: as an error at import
        failure = InitError(type(exc).__name__, str(exc), handler_stack(exc))
    if failure is not None:
        api.send_init_error(failure)
        api.log.error(
            "init failed", errorType=failure.error_type, errorMessage=failure.error_message
        )
        return EXIT_INIT_FAILED
    execute = _tracking(in_process(handler, config.function), current)
    for index in range(1, config.workers):
        threading.Thread(
            target=_serve_thread, args=(config, execute), name=f"loop-{index}", daemon=True
        ).start()
    with api:
        return serve(api, execute)


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
