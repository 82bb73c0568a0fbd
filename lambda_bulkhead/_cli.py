"""``lambda-bulkhead`` (also ``python -m lambda_bulkhead``).

* ``run [HANDLER]``: the runtime itself, against ``$AWS_LAMBDA_RUNTIME_API``
  (what ``bootstrap.sh`` execs); HANDLER defaults to ``$_HANDLER``.
* ``local HANDLER``: the emulator on 127.0.0.1 and the runtime against it;
  prints the invoke URL; Ctrl-C stops both.
* ``invoke HANDLER``: one event through the whole path; prints the result
  (exit 0) or the error JSON (exit 1).

Runtime flags (``--isolation``, ``--workers``, ``--memory-limit-mb``,
``--timeout-margin-ms``, ``--max-invocations``, ``--transport``) override the
``BULKHEAD_*`` variables of the same meaning.  Bad arguments or a bad
environment print one line and exit 2; a fatal runtime error exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from lambda_bulkhead._config import Config, parse_endpoint
from lambda_bulkhead._errors import BulkheadError, ConfigError, InvalidEndpoint, RuntimeApiError

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FATAL = 1

_RUNTIME_FLAGS = {
    "isolation": "BULKHEAD_ISOLATION",
    "workers": "BULKHEAD_WORKERS",
    "memory_limit_mb": "BULKHEAD_MEMORY_LIMIT_MB",
    "timeout_margin_ms": "BULKHEAD_TIMEOUT_MARGIN_MS",
    "max_invocations": "BULKHEAD_MAX_INVOCATIONS",
    "transport": "BULKHEAD_TRANSPORT",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"lambda-bulkhead: error: {message} (see --help)\n")


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum of {minimum}")
        return value

    return parse


def _add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime (override the BULKHEAD_* variables)")
    group.add_argument("--isolation", choices=["process", "none"],
                       help="run handlers in isolated workers (default) or in-process")
    group.add_argument("--workers", type=_count(1), metavar="N",
                       help="concurrent invocations (default: AWS_LAMBDA_MAX_CONCURRENCY or 1)")
    group.add_argument("--memory-limit-mb", type=_count(0), metavar="MB",
                       help="per-invocation memory cap of a worker; 0 turns it off")
    group.add_argument("--timeout-margin-ms", type=_count(0), metavar="MS",
                       help="stop a handler this long before its deadline (default 50)")
    group.add_argument("--max-invocations", type=_count(0), metavar="N",
                       help="recycle a worker after N invocations (0: never)")
    group.add_argument("--transport", choices=["socket", "httpx"],
                       help="HTTP client for the Runtime API (default socket)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lambda-bulkhead", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="the runtime, against $AWS_LAMBDA_RUNTIME_API")
    run.add_argument("handler", nargs="?", help="module.function (default: $_HANDLER)")
    _add_runtime_flags(run)
    for name, text in (("local", "serve HANDLER behind a local Runtime API emulator"),
                       ("invoke", "run one event through HANDLER and print the result")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("handler", help="module.function, resolved from $LAMBDA_TASK_ROOT or .")
        sub.add_argument("--timeout", type=float, default=None, metavar="S",
                         help="function timeout in seconds (default: "
                              "$AWS_LAMBDA_FUNCTION_TIMEOUT or 300)")
        sub.add_argument("--memory", type=int, default=None, metavar="MB",
                         help="function memory size (default: "
                              "$AWS_LAMBDA_FUNCTION_MEMORY_SIZE or 3008)")
        if name == "local":
            sub.add_argument("--port", type=int, default=9001, metavar="N",
                             help="port on 127.0.0.1 (default 9001; 0: any free port)")
        else:
            sub.add_argument("--event", default=None, metavar="FILE",
                             help="the event JSON file, or - for stdin (default: {})")
        _add_runtime_flags(sub)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    return {
        env: str(getattr(args, flag))
        for flag, env in _RUNTIME_FLAGS.items()
        if getattr(args, flag, None) is not None
    }


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    env.update(_overrides(args))
    try:
        Config.from_environ(env)  # bad configuration fails here, before anything starts
        if args.command == "run":
            return _run(args, env)
        from lambda_bulkhead import _local  # noqa: PLC0415 - only these commands need it

        return _local.local(args, env) if args.command == "local" else _local.invoke(args, env)
    except ConfigError as exc:
        print(f"lambda-bulkhead: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeApiError as exc:
        print(f"lambda-bulkhead: fatal: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except BulkheadError as exc:
        print(f"lambda-bulkhead: fatal: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FATAL


def _run(args: argparse.Namespace, env: dict[str, str]) -> int:
    from lambda_bulkhead._runtime import run  # noqa: PLC0415

    handler = args.handler or env.get("_HANDLER")
    if not handler:
        raise ConfigError("no handler: give HANDLER (module.function) or set _HANDLER")
    if not env.get("AWS_LAMBDA_RUNTIME_API"):
        raise ConfigError(
            "AWS_LAMBDA_RUNTIME_API is not set: not running in Lambda "
            "(use `lambda-bulkhead local` or `invoke` to run against the emulator)"
        )
    try:  # a malformed value is bad environment (exit 2), found before anything starts
        parse_endpoint(env["AWS_LAMBDA_RUNTIME_API"])
    except InvalidEndpoint as exc:
        raise ConfigError(str(exc)) from None
    # The handler's environment: workers inherit os.environ, so flags land there too.
    os.environ.update(_overrides(args))
    return run(Config.from_environ(env), handler, env)
