r"""Configuration, built once from an environ passed in (``docs/configuration.md``).

Nothing reads ``os.environ`` at import time; :meth:`Config.from_environ` takes
the mapping (the CLI puts its flags into it first).

This module is on the supervisor's path to forking its template, so it
imports neither ``typing`` nor ``dataclasses`` (see :mod:`lambda_bulkhead._record`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from lambda_bulkhead._errors import ConfigError, InvalidEndpoint
from lambda_bulkhead._record import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    Isolation: TypeAlias = Literal["process", "none"]
    LogFormatName: TypeAlias = Literal["JSON", "Text"]
    WorkerStart: TypeAlias = Literal["auto", "fork", "import"]

__all__ = [
    "CRITICAL",
    "DEBUG",
    "DEFAULT_TIMEOUT_MARGIN_MS",
    "ERROR",
    "INFO",
    "LOG_LEVELS",
    "NATIVE_POOL_VARIABLES",
    "SNAP_START",
    "TELEMETRY_FD_VARIABLE",
    "WARNING",
    "Config",
    "FunctionMeta",
    "LogFormat",
    "LogSettings",
    "native_pool_environ",
    "parse_endpoint",
    "parse_flag",
    "parse_log_format",
    "parse_log_level",
    "take_telemetry_fd",
]

#: Measured in docs/benchmarks.md: the kill, the stack capture and the /error
#: post take a few ms here; the default leaves the handler all but 50 ms.
DEFAULT_TIMEOUT_MARGIN_MS = 50
DEFAULT_MEMORY_POLL_MS = 10
#: What the supervisor and its own buffers need beside the workers (see
#: docs/configuration.md for the whole formula).
SUPERVISOR_RESERVE_MB = 32
MIN_DEFAULT_MEMORY_LIMIT_MB = 16


def _int(environ: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value}: must be at least {minimum}")
    return value


def parse_flag(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    """An on/off variable: ``1``/``true``/``on``/``yes`` or ``0``/``false``/``off``/``no``."""
    text = environ.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ConfigError(f"{name}={text!r}: expected 1/true/on/yes or 0/false/off/no")


def parse_endpoint(value: str) -> tuple[str, int]:
    """Split ``AWS_LAMBDA_RUNTIME_API`` (``host:port``, no scheme) into its parts."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host or "/" in value or not port_text.isdigit():
        raise InvalidEndpoint(value)
    port = int(port_text)
    if not 0 < port < 65536:
        raise InvalidEndpoint(value)
    return host.strip("[]"), port


#: logging's level numbers, without importing logging.
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

LOG_LEVELS: Mapping[str, int] = {
    "TRACE": DEBUG,  # the official runtime maps TRACE to DEBUG
    "DEBUG": DEBUG,
    "INFO": INFO,
    "WARN": WARNING,
    "ERROR": ERROR,
    "FATAL": CRITICAL,
}
"""``AWS_LAMBDA_LOG_LEVEL`` values and the :mod:`logging` threshold each sets."""



class LogFormat:
    """``AWS_LAMBDA_LOG_FORMAT``: one JSON object per line, or tab-separated text.

    Plain strings, not an enum: this module is on every process's cold start.
    """

    JSON: LogFormatName = "JSON"
    TEXT: LogFormatName = "Text"
    ALL: tuple[LogFormatName, ...] = (JSON, TEXT)


def parse_log_format(value: str | None) -> LogFormatName:
    """``AWS_LAMBDA_LOG_FORMAT`` (``JSON``/``Text``, any case); unset or empty is JSON."""
    if value is None or not value.strip():
        return LogFormat.JSON
    for fmt in LogFormat.ALL:
        if value.strip().upper() == fmt.upper():
            return fmt
    accepted = ", ".join(LogFormat.ALL)
    raise ConfigError(f"AWS_LAMBDA_LOG_FORMAT={value!r} is not one of: {accepted}")


def parse_log_level(value: str | None) -> int | None:
    """The :mod:`logging` threshold ``AWS_LAMBDA_LOG_LEVEL`` names, any case.

    ``None`` when unset or empty: like the official runtime, the root logger then
    keeps its own level and captured output is not filtered.
    """
    if value is None or not value.strip():
        return None
    try:
        return LOG_LEVELS[value.strip().upper()]
    except KeyError:
        accepted = ", ".join(LOG_LEVELS)
        raise ConfigError(f"AWS_LAMBDA_LOG_LEVEL={value!r} is not one of: {accepted}") from None


class LogSettings(NamedTuple):
    """The log format and level, read once from an environment you pass in."""

    format: LogFormatName = LogFormat.JSON
    level: int | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> LogSettings:
        """Parse ``AWS_LAMBDA_LOG_FORMAT`` and ``AWS_LAMBDA_LOG_LEVEL``."""
        return cls(
            format=parse_log_format(environ.get("AWS_LAMBDA_LOG_FORMAT")),
            level=parse_log_level(environ.get("AWS_LAMBDA_LOG_LEVEL")),
        )

    @property
    def threshold(self) -> int:
        """The level below which captured output is dropped (``NOTSET``: keep all)."""
        return 0 if self.level is None else self.level  # logging.NOTSET


class FunctionMeta(NamedTuple):
    """The function's identity, read once from the environment Lambda sets."""

    function_name: str | None = None
    function_version: str | None = None
    memory_limit_in_mb: str | None = None
    log_group_name: str | None = None
    log_stream_name: str | None = None
    #: ``AWS_LAMBDA_FUNCTION_TIMEOUT`` in seconds: set by the RIE and the emulator,
    #: not by Lambda itself; None when unset or not a positive number.
    timeout_s: float | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> FunctionMeta:
        return cls(
            function_name=environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            function_version=environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
            memory_limit_in_mb=environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            log_group_name=environ.get("AWS_LAMBDA_LOG_GROUP_NAME"),
            log_stream_name=environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
            timeout_s=_positive_seconds(environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT")),
        )


#: The variables native thread pools read at start-up for their size (OpenMP,
#: OpenBLAS, Intel MKL; torch follows OMP_NUM_THREADS).
NATIVE_POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def native_pool_environ(environ: Mapping[str, str], workers: int, cpus: int) -> dict[str, str]:
    """The pool sizes to add to ``environ`` so that ``workers`` concurrent
    workers share ``cpus`` CPUs instead of each starting a thread per CPU.

    A variable the user set is left alone; one worker needs nothing.
    """
    if workers <= 1:
        return {}
    size = str(max(1, cpus // workers))
    return {name: size for name in NATIVE_POOL_VARIABLES if name not in environ}


def _endpoint(value: str | None) -> tuple[str, int] | None:
    """``AWS_LAMBDA_RUNTIME_API`` parsed (:class:`InvalidEndpoint` if malformed)."""
    return parse_endpoint(value) if value else None


def _positive_seconds(text: str | None) -> float | None:
    try:
        seconds = float(text or "")
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None


TELEMETRY_FD_VARIABLE = "_LAMBDA_TELEMETRY_LOG_FD"
#: ``AWS_LAMBDA_INITIALIZATION_TYPE`` of a SnapStart function (the official runtime's test).
SNAP_START = "snap-start"


def take_telemetry_fd(environ: MutableMapping[str, str]) -> int | None:
    """Pop ``_LAMBDA_TELEMETRY_LOG_FD`` from ``environ`` and return the fd it names.

    Managed runtimes pass it; the runtime takes it before forking anything, so
    no worker inherits the variable.
    """
    value = environ.pop(TELEMETRY_FD_VARIABLE, None)
    if value is None:
        return None
    try:
        fd = int(value)
    except ValueError:
        fd = -1
    if fd < 0:
        raise ConfigError(f"{TELEMETRY_FD_VARIABLE}={value!r} is not a file descriptor")
    return fd


class Config(NamedTuple):
    """Everything the runtime reads from its environment, checked once."""

    #: ``AWS_LAMBDA_RUNTIME_API`` as (host, port); None when unset.
    endpoint: tuple[str, int] | None = None
    #: ``_HANDLER``: the ``module.function`` to run; None when unset.
    handler: str | None = None
    task_root: str = "."
    isolation: Isolation = "process"
    workers: int = 1
    #: Per-worker memory budget in MB above its post-fork baseline; None: no cap
    #: given (the supervisor derives one from the function's memory size, if known).
    memory_limit_mb: int | None = None
    memory_poll_ms: int = DEFAULT_MEMORY_POLL_MS
    timeout_margin_ms: int = DEFAULT_TIMEOUT_MARGIN_MS
    #: Recycle a worker after this many invocations (jittered by up to 10 %); 0: never.
    max_invocations: int = 0
    transport: Literal["socket", "httpx"] = "socket"
    #: Send each response and the next poll in one write (socket transport).
    pipeline: bool = True
    #: Run each slot's thread and its waiting worker on one CPU (supervised).
    colocate: bool = True
    #: How workers get the handler: forked from the template that imported it,
    #: importing it themselves, or ``auto``: fork unless the import left threads.
    worker_start: WorkerStart = "auto"
    function: FunctionMeta = FunctionMeta()
    log: LogSettings = LogSettings()
    #: The workers asked for, when more than one but the Runtime API takes one
    #: ``/next`` poll at a time (``workers`` is then 1); 0 otherwise.
    single_poller_for: int = 0
    #: Register the internal no-op extension before the first ``/next``, so that
    #: Lambda sends SIGTERM at shutdown (``BULKHEAD_SHUTDOWN_EXTENSION``).
    shutdown_extension: bool = True
    #: ``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``: run the snapshot hooks and
    #: wait for ``/restore/next`` before forking workers.
    snap_start: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        isolation = env.get("BULKHEAD_ISOLATION", "process").strip().lower() or "process"
        if isolation not in ("process", "none"):
            raise ConfigError(f"BULKHEAD_ISOLATION={isolation!r}: expected 'process' or 'none'")
        transport = env.get("BULKHEAD_TRANSPORT", "socket").strip().lower() or "socket"
        if transport not in ("socket", "httpx"):
            raise ConfigError(f"BULKHEAD_TRANSPORT={transport!r}: expected 'socket' or 'httpx'")
        worker_start = env.get("BULKHEAD_WORKER_START", "auto").strip().lower() or "auto"
        if worker_start not in ("auto", "fork", "import"):
            raise ConfigError(
                f"BULKHEAD_WORKER_START={worker_start!r}: expected 'auto', 'fork' or 'import'"
            )
        workers = _int(env, "BULKHEAD_WORKERS", minimum=1)
        max_concurrency = _int(env, "AWS_LAMBDA_MAX_CONCURRENCY", minimum=1)
        if workers is None:
            workers = max_concurrency or 1
        # Lambda's classic mode serves one /next poll at a time (a second one
        # can be given the same event): several pollers only where it says so.
        concurrent = parse_flag(
            env, "BULKHEAD_CONCURRENT_POLLS", default=max_concurrency is not None
        )
        single_poller_for = 0 if concurrent or workers == 1 else workers
        memory_limit = _int(env, "BULKHEAD_MEMORY_LIMIT_MB", minimum=0)
        margin = _int(env, "BULKHEAD_TIMEOUT_MARGIN_MS", minimum=0)
        poll = _int(env, "BULKHEAD_MEMORY_POLL_MS", minimum=1)
        return cls(
            endpoint=_endpoint(env.get("AWS_LAMBDA_RUNTIME_API")),
            handler=env.get("_HANDLER") or None,
            task_root=env.get("LAMBDA_TASK_ROOT") or os.getcwd(),
            isolation="none" if isolation == "none" else "process",
            workers=1 if single_poller_for else workers,
            single_poller_for=single_poller_for,
            memory_limit_mb=memory_limit,
            memory_poll_ms=DEFAULT_MEMORY_POLL_MS if poll is None else poll,
            timeout_margin_ms=DEFAULT_TIMEOUT_MARGIN_MS if margin is None else margin,
            max_invocations=_int(env, "BULKHEAD_MAX_INVOCATIONS", minimum=0) or 0,
            transport="httpx" if transport == "httpx" else "socket",
            pipeline=parse_flag(env, "BULKHEAD_PIPELINE", default=True),
            colocate=parse_flag(env, "BULKHEAD_COLOCATE", default=True),
            worker_start=worker_start,  # type: ignore[arg-type]  # checked above
            function=FunctionMeta.from_environ(env),
            log=LogSettings.from_environ(env),
            shutdown_extension=parse_flag(env, "BULKHEAD_SHUTDOWN_EXTENSION", default=True),
            snap_start=env.get("AWS_LAMBDA_INITIALIZATION_TYPE", "").strip() == SNAP_START,
        )

    def default_memory_limit_mb(
        self, shared_rss_mb: float, supervisor_rss_mb: float, worker_private_mb: float = 0.0
    ) -> int | None:
        """The per-worker budget when ``BULKHEAD_MEMORY_LIMIT_MB`` is unset.

        ``(function memory - supervisor RSS - shared RSS - reserve - (workers + 1)
        x worker private RSS) / workers``, at least 16 MB; None when the
        function's memory size is unknown.  The shared RSS is the template's
        when workers are forked from it (they share its pages); where workers
        import the handler themselves, it is the zygote's, and each worker and
        the spare hold the import privately (``worker_private_mb``).
        """
        text = self.function.memory_limit_in_mb
        if not text or not text.isdigit():
            return None
        spare = (
            int(text) - supervisor_rss_mb - shared_rss_mb - SUPERVISOR_RESERVE_MB
            - (self.workers + 1) * worker_private_mb
        )
        return max(MIN_DEFAULT_MEMORY_LIMIT_MB, int(spare / self.workers))
