"""The soak run: many invocations over 4 workers, 30 % of them crashing in
random ways, against a real supervised runtime and the emulator.

Used by ``tests/test_soak.py`` (a small count in CI) and
``benchmarks/soak.py`` (10,000 invocations, figures for docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import chaos_app
import psutil

from lambda_bulkhead.emulator import Emulator, InvokeResult

CRASHES = ("segfault", "abort", "kill", "os_exit", "exit", "interrupt", "oom", "fork_and_crash")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class SoakReport:
    invocations: int
    crashes: int
    wrong_answers: list[str]
    lost: int
    duplicated: int
    leaked_processes: int
    fds_before: int
    fds_after: int
    rss_before_mb: float
    rss_after_mb: float
    seconds: float

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb


def _supervisor_state(pid: int) -> tuple[int, float, int]:
    """(open fds, RSS MB, live descendants) of the supervisor."""
    process = psutil.Process(pid)
    descendants = process.children(recursive=True)
    return process.num_fds(), process.memory_info().rss / 2**20, _live(descendants)


def _live(processes: list[psutil.Process]) -> int:
    """How many of processes are alive: a worker that crashes while we look is not."""
    live = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            live += process.status() != psutil.STATUS_ZOMBIE
    return live


def _settle(
    pid: int, expected_descendants: int, fds: int | None = None, timeout: float = 10.0
) -> tuple[int, float, int]:
    """The supervisor's state once its pool is back to full strength (and, given
    ``fds``, its fd count back to that: a replacement still being set up holds
    pipes for a moment; a leak holds them for good, past the timeout)."""
    deadline = time.monotonic() + timeout

    def settled(state: tuple[int, float, int]) -> bool:
        return state[2] == expected_descendants and (fds is None or state[0] == fds)

    state = _supervisor_state(pid)
    while not settled(state) and time.monotonic() < deadline:
        time.sleep(0.05)
        state = _supervisor_state(pid)
    return state


def _check(action: str, result: InvokeResult) -> str | None:
    expected_kind, expected_type = chaos_app.EXPECTED[action]
    error_type = json.loads(result.body).get("errorType") if result.kind == "error" else None
    if result.kind != expected_kind or (expected_type and error_type != expected_type):
        return f"{action}: {result.kind} {error_type}"
    return None


def run_soak(invocations: int, *, workers: int = 4, seed: int = 1121, in_flight: int = 16
             ) -> SoakReport:
    """Run the soak and report; the runtime is stopped and reaped before returning."""
    rng = random.Random(seed)
    actions = [rng.choice(CRASHES) if rng.random() < 0.3 else "ok" for _ in range(invocations)]
    with tempfile.TemporaryDirectory() as task_root, Emulator(
        timeout_s=10.0, max_history=None
    ) as emulator:
        Path(task_root, "chaos_app.py").write_text(Path(chaos_app.__file__).read_text())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BULKHEAD_", "AWS_"))},
            **emulator.function_env(),
            "LAMBDA_TASK_ROOT": task_root,
            "PYTHONPATH": str(REPO_ROOT),
            "BULKHEAD_WORKERS": str(workers),
            "BULKHEAD_MEMORY_LIMIT_MB": "128",
        }
        runtime = subprocess.Popen(
            [sys.executable, "-m", "lambda_bulkhead", "run", "chaos_app.handler"],
            env=env, cwd=task_root, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            # Warm up, then measure from a full pool: template + workers + spare.
            expected = workers + 2
            for _ in range(workers * 4):
                emulator.invoke(b'{"action": "ok"}', timeout=30)
            fds_before, rss_before, _ = _settle(runtime.pid, expected)
            started = time.monotonic()
            pending: list[tuple[str, Future[InvokeResult]]] = []
            wrong: list[str] = []
            request_ids: list[str] = []
            for action in actions:
                pending.append((action, emulator.submit(json.dumps({"action": action}).encode())))
                while len(pending) >= in_flight:
                    done_action, future = pending.pop(0)
                    result = future.result(timeout=60)
                    request_ids.append(result.request_id)
                    if (problem := _check(done_action, result)) is not None:
                        wrong.append(problem)
            for done_action, future in pending:
                result = future.result(timeout=60)
                request_ids.append(result.request_id)
                if (problem := _check(done_action, result)) is not None:
                    wrong.append(problem)
            seconds = time.monotonic() - started
            fds_after, rss_after, _ = _settle(runtime.pid, expected, fds_before)
            descendants = psutil.Process(runtime.pid).children(recursive=True)
        finally:
            runtime.terminate()
            runtime.wait(10)
        _, alive = psutil.wait_procs(descendants, timeout=5)
        accepted = Counter(a.request_id for a in emulator.answers if a.status == 202)
    return SoakReport(
        invocations=invocations,
        crashes=sum(action in CRASHES for action in actions),
        wrong_answers=wrong,
        lost=sum(1 for rid in request_ids if accepted[rid] == 0),
        duplicated=sum(1 for rid in request_ids if accepted[rid] > 1),
        leaked_processes=len([p for p in alive if p.is_running()]),
        fds_before=fds_before,
        fds_after=fds_after,
        rss_before_mb=rss_before,
        rss_after_mb=rss_after,
        seconds=seconds,
    )
