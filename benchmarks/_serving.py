"""A runtime serving 100 B events from the lean stand-in, warmed up: the
set-up the single-question experiments (``per_invocation.py``,
``pinning.py``) share.  Uses the venvs ``run.py`` sets up."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator

import run
from _standin import StandIn

EVENT = b'{"x": "' + b"a" * 88 + b'"}'


def answered(server: StandIn) -> int:
    """Invocations the stand-in has had an answer for."""
    return sum(1 for done in server.done_ns if done)


def latencies_us(server: StandIn, start: int, end: int) -> list[float]:
    """Each answered invocation's latency in ``[start, end)``: the stand-in's
    ``/next`` answer written -> the runtime's answer read."""
    return [
        (server.done_ns[i] - server.sent_ns[i]) / 1000
        for i in range(start, end) if server.done_ns[i] and server.sent_ns[i]
    ]


@contextlib.asynccontextmanager
async def warm_runtime(
    contender: str,
    events: int,
    warm_up: int,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[StandIn, subprocess.Popen[bytes]]]:
    """``contender`` serving ``events`` queued events, once ``warm_up`` are answered;
    ``argv``: another program than ``contender`` (run by the project's venv);
    ``env``: variables added to the contender's environment."""
    setup = run.set_up()
    made = run.command(setup, contender, "trivial.handler")
    assert made is not None, f"{contender} is not available"
    argv = [str(setup.bulkhead_python), *argv] if argv else made[0]
    env = {**made[1], **(env or {})}
    server = StandIn([EVENT] * events)
    port = await server.start()
    server.enqueue(range(events))
    runtime = subprocess.Popen(
        argv, env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"},
        cwd=str(run.HANDLERS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while answered(server) < warm_up:
            await asyncio.sleep(0.01)
        yield server, runtime
    finally:
        runtime.terminate()
        runtime.wait()
        server.close()
