"""Running the runtime: isolated workers (the default) or in-process.

:func:`run` is what ``lambda-bulkhead run`` (and so ``bootstrap.sh``) and
the public ``start``/``start_json`` call.  It returns the process exit status; a fatal Runtime API
error is raised.  Each mode imports its own machinery only once chosen, so the
supervisor can fork its template before importing the rest of itself.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

from lambda_bulkhead.handler._handler import CoreHandler, json_handler, raw_handler

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn, TypeVar, overload

    from lambda_bulkhead._config import Config
    from lambda_bulkhead._context import Context
    from lambda_bulkhead.handler._handler import HandlerSource

    E = TypeVar("E")
    R = TypeVar("R")
else:
    def overload(function):
        """``typing.overload`` for type checkers; at run time (without importing
        ``typing``, see ``_record``) the implementation that follows replaces it."""
        return function

__all__ = ["run", "start", "start_json"]


def _warn(message: str) -> None:
    # One line on stderr, as the CLI's errors: the runtime's log is not set up
    # yet, and setting it up here would put its writer's thread before the fork.
    os.write(2, f"lambda-bulkhead: warning: {message}\n".encode())


def run(config: Config, source: HandlerSource) -> int:
    """Serve invocations with ``source`` (a ``module.function`` name or a core handler)."""
    if config.single_poller_for:
        _warn(
            f"{config.single_poller_for} workers asked for, but the Runtime API is not known "
            "to serve concurrent /next polls (AWS_LAMBDA_MAX_CONCURRENCY unset or "
            "BULKHEAD_CONCURRENT_POLLS off; Lambda's classic mode takes one poll at a time): "
            "running 1 worker"
        )
    if config.isolation == "none":
        from lambda_bulkhead._inprocess import run_in_process  # noqa: PLC0415

        return run_in_process(config, source)
    from lambda_bulkhead.supervisor import run_supervised  # noqa: PLC0415

    return run_supervised(config, source)


def _run(handler: CoreHandler, environ: Mapping[str, str] | None) -> NoReturn:
    from lambda_bulkhead._config import Config  # noqa: PLC0415 - run() is handed a Config

    env = os.environ if environ is None else environ
    raise SystemExit(run(Config.from_environ(env), handler))


def start(
    handler: Callable[[bytes, Context], bytes | Awaitable[bytes]],
    *,
    environ: Mapping[str, str] | None = None,
) -> NoReturn:
    """Run the runtime with a raw handler: bytes in, bytes out (``async def`` too:
    see ``docs/api.md``, "Async handlers").

    As ``lambda-bulkhead run``, the handler runs in isolated workers unless
    ``BULKHEAD_ISOLATION=none`` (the workers are forks of this process, so call
    ``start`` before starting threads).  A handler that raises, crashes or
    overruns does not stop the loop: the failure is posted to ``/error`` and
    the next event is served.  It never returns: a fatal Runtime API error is
    raised (:class:`~lambda_bulkhead.RuntimeApiError`), a handler that could
    not be set up or a shutdown signal ends the process (``SystemExit`` 1 / 0).
    """
    _run(raw_handler(handler), environ)


@overload
def start_json(
    decoder: Callable[[Any], E],
    handler: Callable[[E, Context], Awaitable[R]],
    encoder: Callable[[R], Any],
    *,
    environ: Mapping[str, str] | None = None,
) -> NoReturn: ...


@overload
def start_json(  # noqa: F811 - an overload: ruff does not see typing's here
    decoder: Callable[[Any], E],
    handler: Callable[[E, Context], R],
    encoder: Callable[[R], Any],
    *,
    environ: Mapping[str, str] | None = None,
) -> NoReturn: ...


def start_json(  # noqa: F811 - the overloads' implementation
    decoder: Callable[[Any], E],
    handler: Callable[[E, Context], Any],
    encoder: Callable[[Any], Any],
    *,
    environ: Mapping[str, str] | None = None,
) -> NoReturn:
    """Run the loop with a typed handler: ``decoder`` turns the parsed JSON event
    into the handler's argument (a payload it rejects is ``Runtime.InvalidEvent``,
    and the handler is not called); ``encoder`` turns the result into JSON data.
    The handler may be an ``async def``.  Otherwise as :func:`start`.
    """
    _run(json_handler(decoder, handler, encoder), environ)
