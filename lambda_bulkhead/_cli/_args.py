"""The ``lambda-bulkhead`` command line, parsed by argparse.

Apart from :mod:`lambda_bulkhead._cli` so that a plain ``run`` (what
``bootstrap.sh`` execs on every cold start) never imports argparse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["overrides_of", "parser"]

_RUNTIME_FLAGS = {
    "isolation": "BULKHEAD_ISOLATION",
    "workers": "BULKHEAD_WORKERS",
    "memory_limit_mb": "BULKHEAD_MEMORY_LIMIT_MB",
    "timeout_margin_ms": "BULKHEAD_TIMEOUT_MARGIN_MS",
    "max_invocations": "BULKHEAD_MAX_INVOCATIONS",
    "transport": "BULKHEAD_TRANSPORT",
    "worker_start": "BULKHEAD_WORKER_START",
}


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
    group.add_argument("--worker-start", choices=["auto", "fork", "import"],
                       help="workers forked from the imported handler, or importing it "
                       "themselves (default auto: fork unless the import started threads)")


def parser(exit_usage: int) -> argparse.ArgumentParser:
    """The parser; bad arguments print one line and exit with ``exit_usage``."""

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.exit(exit_usage, f"lambda-bulkhead: error: {message} (see --help)\n")

    parser = Parser(
        prog="lambda-bulkhead",
        description="A Python runtime for AWS Lambda that survives its own handlers.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
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
        sub.add_argument("--snap-start", action="store_true",
                         help="run as a SnapStart function (AWS_LAMBDA_INITIALIZATION_TYPE="
                              "snap-start): the emulator answers /restore/next after a "
                              "simulated snapshot and restore")
        if name == "local":
            sub.add_argument("--port", type=int, default=9001, metavar="N",
                             help="port on 127.0.0.1 (default 9001; 0: any free port)")
        else:
            sub.add_argument("--event", default=None, metavar="FILE",
                             help="the event JSON file, or - for stdin (default: {})")
        _add_runtime_flags(sub)
    _add_package(commands.add_parser(
        "package", help="build a deployable zip: the function, its requirements, "
                        "lambda-bulkhead and bootstrap"))
    return parser


def _add_package(package: argparse.ArgumentParser) -> None:
    from lambda_bulkhead._cli._target import ARCHITECTURES, PYTHON_VERSIONS  # noqa: PLC0415

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    package.add_argument("source", metavar="SRC_DIR", help="the function's code")
    package.add_argument("--output", default="function.zip", metavar="ZIP",
                         help="the zip to write (default function.zip)")
    package.add_argument("--requirements", default=None, metavar="FILE",
                         help="pip requirements file (default: SRC_DIR/requirements.txt "
                              "if there is one)")
    package.add_argument("--python-version", choices=PYTHON_VERSIONS,
                         default=here if here in PYTHON_VERSIONS else None,
                         required=here not in PYTHON_VERSIONS,
                         help=f"the Lambda runtime's Python (default: this one, {here})")
    package.add_argument("--arch", choices=sorted(ARCHITECTURES), default="x86_64",
                         help="the function's architecture (default x86_64, Lambda's)")


def overrides_of(args: argparse.Namespace) -> dict[str, str]:
    return {
        env: str(getattr(args, flag))
        for flag, env in _RUNTIME_FLAGS.items()
        if getattr(args, flag, None) is not None
    }


