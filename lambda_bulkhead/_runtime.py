"""Running the runtime: isolated workers (the default) or in-process.

:func:`run` is what ``lambda-bulkhead run`` (and so ``bootstrap.sh``) and
``start()`` call.  It returns the process exit status; a fatal Runtime API
error is raised.  Each mode imports its own machinery only once chosen, so the
supervisor can fork its template before importing the rest of itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lambda_bulkhead._config import Config
    from lambda_bulkhead._handler import HandlerSource

__all__ = ["run"]


def _warn(message: str) -> None:
    # One line on stderr, as the CLI's errors: the runtime's log is not set up
    # yet, and setting it up here would put its writer's thread before the fork.
    os.write(2, f"lambda-bulkhead: warning: {message}\n".encode())


def run(config: Config, source: HandlerSource, environ: Mapping[str, str]) -> int:
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

        return run_in_process(config, source, environ)
    from lambda_bulkhead.supervisor import run_supervised  # noqa: PLC0415

    return run_supervised(config, source, environ)
