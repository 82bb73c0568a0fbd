"""``lambda-bulkhead`` (also ``python -m lambda_bulkhead``).

* ``run [HANDLER]``: the runtime itself, against ``$AWS_LAMBDA_RUNTIME_API``
  (what ``bootstrap.sh`` execs); HANDLER defaults to ``$_HANDLER``.
* ``local HANDLER``: the emulator on 127.0.0.1 and the runtime against it;
  prints the invoke URL; Ctrl-C stops both.
* ``invoke HANDLER``: one event through the whole path; prints the result
  (exit 0) or the error JSON (exit 1).
* ``package SRC_DIR``: a deployable zip (``lambda_bulkhead._cli._package``); a
  requirement with no wheel for the target, or any other reason it cannot be
  built, is one line and exit 2.

Runtime flags (``--isolation``, ``--workers``, ``--memory-limit-mb``,
``--timeout-margin-ms``, ``--max-invocations``, ``--transport``) override the
``BULKHEAD_*`` variables of the same meaning.  Bad arguments or a bad
environment print one line and exit 2; a fatal runtime error exits 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from lambda_bulkhead._config import Config
from lambda_bulkhead._errors import BulkheadError, ConfigError, InvalidEndpoint, RuntimeApiError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FATAL = 1


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = None
    if _is_plain_run(arguments):
        # What bootstrap.sh runs, on every cold start: no need to build the
        # parser (argparse and what it imports cost several ms here).
        handler, overrides = (arguments[1] if len(arguments) > 1 else None), {}
    else:
        from lambda_bulkhead._cli._args import overrides_of, parser  # noqa: PLC0415

        args = parser(EXIT_USAGE).parse_args(arguments)
        handler, overrides = getattr(args, "handler", None), overrides_of(args)
    env = dict(os.environ if environ is None else environ)
    env.update(overrides)
    try:
        if args is not None and args.command == "package":
            return _package(args)
        if args is None or args.command == "run":
            return _run(handler, overrides, env)
        Config.from_environ(env)  # bad configuration fails here, before anything starts
        from lambda_bulkhead._cli import _local  # noqa: PLC0415 - only these commands need it

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


def _is_plain_run(arguments: Sequence[str]) -> bool:
    """``run`` with at most a handler name: no flag, nothing for argparse to check."""
    return (
        arguments[:1] == ["run"]
        and len(arguments) <= 2
        and not any(argument.startswith("-") for argument in arguments[1:])
    )


def _package(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415 - off the cold-start path

    from lambda_bulkhead._cli._package import build  # noqa: PLC0415
    from lambda_bulkhead._cli._target import Target  # noqa: PLC0415

    source = Path(args.source)
    requirements = args.requirements
    if requirements is None and (source / "requirements.txt").is_file():
        requirements = source / "requirements.txt"
    build(source, Path(args.output), Target(python_version=args.python_version,
                                            architecture=args.arch),
          requirements_file=None if requirements is None else Path(requirements),
          say=lambda line: print(line, flush=True))
    return 0


def _run(handler: str | None, overrides: dict[str, str], env: dict[str, str]) -> int:
    from lambda_bulkhead._runtime import run  # noqa: PLC0415

    try:  # a malformed endpoint is bad environment (exit 2), found before anything starts
        config = Config.from_environ(env)
    except InvalidEndpoint as exc:
        raise ConfigError(str(exc)) from None
    handler = handler or config.handler
    if not handler:
        raise ConfigError("no handler: give HANDLER (module.function) or set _HANDLER")
    if config.endpoint is None:
        raise ConfigError(
            "AWS_LAMBDA_RUNTIME_API is not set: not running in Lambda "
            "(use `lambda-bulkhead local` or `invoke` to run against the emulator)"
        )
    # The handler's environment: workers inherit os.environ, so flags land there too.
    os.environ.update(overrides)
    return run(config, handler)
