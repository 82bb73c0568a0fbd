"""``lambda-bulkhead local`` and ``invoke``: the emulator, and the runtime as a
child process against it (imported only by these two commands)."""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lambda_bulkhead._errors import ConfigError

if TYPE_CHECKING:
    from lambda_bulkhead.emulator import Emulator

__all__ = ["invoke", "local"]

EXIT_FATAL = 1
SHUTDOWN_GRACE_S = 0.5  # Lambda gives 300-500 ms between SIGTERM and SIGKILL


def _function_settings(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[float, int]:
    try:
        timeout = args.timeout or float(env.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 300)
        memory = args.memory or int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 3008)
    except ValueError as exc:
        raise ConfigError(f"bad function setting in the environment: {exc}") from None
    if timeout <= 0 or memory < 1:
        raise ConfigError("--timeout must be > 0 seconds and --memory at least 1 MB")
    return timeout, memory


class _RuntimeProcess:
    """The runtime (``lambda-bulkhead run``) as a child process of ``local``/``invoke``."""

    def __init__(self, handler: str, env: dict[str, str], *, logs_to_stderr: bool = False) -> None:
        self._argv = [sys.executable, "-m", "lambda_bulkhead", "run", handler]
        self._env = env
        # `invoke` keeps its stdout for the result, so `... | jq` works.
        self._stdout = sys.stderr if logs_to_stderr else None
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._argv, env=self._env, stdin=subprocess.DEVNULL, stdout=self._stdout
        )

    def restart(self) -> None:
        self.process = self._start()

    def stop(self, emulator: Emulator) -> None:
        """Lambda's shutdown: SIGTERM and 500 ms if an extension registered, else SIGKILL."""
        if self.process.poll() is not None:
            return
        report = emulator.shutdown(self.process, grace=SHUTDOWN_GRACE_S)
        if report.sigterm:
            outcome = (f"exited {report.elapsed_s * 1000:.0f} ms after SIGTERM"
                       if report.exited_in_grace
                       else f"killed (SIGKILL) after the {report.grace_s * 1000:.0f} ms grace")
        else:
            outcome = "killed (SIGKILL): no extension registered, so no SIGTERM, as in Lambda"
        print(f"lambda-bulkhead: runtime {outcome}", file=sys.stderr, flush=True)


def _runtime_env(args: argparse.Namespace, env: dict[str, str], function_env: dict[str, str]
                 ) -> dict[str, str]:
    merged = {**env, **function_env, "_HANDLER": args.handler}
    merged.setdefault("LAMBDA_TASK_ROOT", os.getcwd())
    return merged


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def local(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Serve ``args.handler`` behind the emulator until Ctrl-C or SIGTERM."""
    from lambda_bulkhead.emulator import Emulator  # noqa: PLC0415

    # `kill` (SIGTERM) stops it as cleanly as Ctrl-C: the runtime first, then the emulator.
    signal.signal(signal.SIGTERM, _interrupt)

    timeout, memory = _function_settings(args, env)
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port {args.port}: expected 0-65535")
    try:
        emulator = Emulator(timeout_s=timeout, memory_mb=memory, port=args.port,
                            handler=args.handler, snap_start=args.snap_start).start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    with contextlib.ExitStack() as cleanup:  # started above: `with emulator` would start it again
        cleanup.callback(emulator.stop)
        runtime = _RuntimeProcess(args.handler, _runtime_env(args, env, emulator.function_env()))
        print(f"lambda-bulkhead: serving {args.handler}; invoke with:\n"
              f"  curl -s -d '{{}}' {emulator.invoke_url}", file=sys.stderr, flush=True)
        try:
            while True:
                status = runtime.process.wait()
                if emulator.init_errors:
                    print("lambda-bulkhead: the handler failed to initialise; every invoke "
                          "answers with its init error (Ctrl-C to stop)", file=sys.stderr)
                    signal.pause()
                emulator.runtime_exited(_exit_reason(status))
                time.sleep(0.5)  # like Lambda, the next invoke meets a fresh runtime
                runtime.restart()
        except KeyboardInterrupt:
            runtime.stop(emulator)
    return 0


def _exit_reason(status: int) -> str:
    if status < 0:
        from lambda_bulkhead.supervisor._policy import describe_exit  # noqa: PLC0415

        return describe_exit(-status)  # a signal number, as Popen reports it
    return f"exit status {status}"


def _read_event(path: str | None) -> bytes:
    if path is None:
        return b"{}"
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as event:
            return event.read()
    except OSError as exc:
        raise ConfigError(f"--event {path}: {exc.strerror}") from None


def invoke(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Run one event; a streamed answer is printed chunk by chunk as it arrives."""
    from lambda_bulkhead.emulator import Emulator  # noqa: PLC0415

    timeout, memory = _function_settings(args, env)
    payload = _read_event(args.event)
    pieces: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    out = sys.stdout.buffer
    last = b"\n"
    with Emulator(timeout_s=timeout, memory_mb=memory, handler=args.handler,
                  snap_start=args.snap_start) as emulator:
        runtime = _RuntimeProcess(
            args.handler, _runtime_env(args, env, emulator.function_env()), logs_to_stderr=True
        )
        try:
            future = emulator.submit(payload, keep_chunks=False, on_body=pieces.put)
            while not future.done() or not pieces.empty():
                try:
                    piece = pieces.get(timeout=0.005)
                except queue.Empty:
                    status = runtime.process.poll()
                    if status is not None and not future.done():
                        emulator.runtime_exited(_exit_reason(status))
                    continue
                out.write(piece)
                out.flush()
                last = piece[-1:] or last
            result = future.result()
        finally:
            runtime.stop(emulator)
    if result.streamed:
        if last != b"\n":
            out.write(b"\n")
        if result.stream_error_body is not None:
            sys.stderr.buffer.write(result.stream_error_body + b"\n")
    else:
        out.write(result.body + (b"" if result.body.endswith(b"\n") else b"\n"))
    out.flush()
    return 0 if result.kind == "response" else EXIT_FATAL
