"""Memory running out in the whole sandbox, emulated with a real memory cgroup.

Lambda enforces the function's memory on the whole environment, and the
kernel's OOM killer picks the victim.  Here the runtime runs in a memory
cgroup as big as the function's memory; a handler that allocates faster than
the supervisor samples (or with the cap off) is killed by the kernel.  The
worker must be the victim, never the supervisor or the template, and the
invocation is answered ``Runtime.OutOfMemory``.  Skipped, with the reason,
where no memory cgroup can be made (not root, no cgroup v1 memory controller
or cgroup v2 ``memory.max``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from _limits_helpers import error_body, invoke, report, started_record, workers_of
from conftest import MakeEmulator, RuntimeProcess, runtime_env, write_module_files

from lambda_bulkhead.emulator import Emulator

FUNCTION_MB = 384

APP = """
import os


def handler(event, context):
    if event.get("action") == "flood":
        hoard = []
        while True:  # 64 MB at a time, each written, far past the function's memory
            hoard.append(b"x" * (64 << 20))
    return {"pid": os.getpid()}
"""


class MemoryCgroup:
    """A memory cgroup of ``limit`` bytes (v1 or v2), removed at the end."""

    def __init__(self, path: Path, procs: Path) -> None:
        self.path = path
        self.procs = procs

    @classmethod
    @contextlib.contextmanager
    def make(cls, limit: int) -> Iterator[MemoryCgroup]:
        name = f"bulkhead-test-{uuid.uuid4().hex[:8]}"
        v1 = Path("/sys/fs/cgroup/memory")
        v2 = Path("/sys/fs/cgroup")
        if (v1 / "memory.limit_in_bytes").exists():
            path = v1 / name
            files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        elif "memory" in _read(v2 / "cgroup.subtree_control"):
            path = v2 / name
            files = ["memory.max", "memory.swap.max"]
        else:
            pytest.skip("no memory cgroup controller (v1 memory or v2 memory.max) here")
        try:
            path.mkdir()
        except OSError as exc:
            pytest.skip(f"cannot make a memory cgroup ({exc}): root on a writable cgroupfs needed")
        try:
            for file in files:
                target = path / file
                if target.exists():
                    target.write_text("0" if file == "memory.swap.max" else str(limit))
            yield cls(path, path / "cgroup.procs")
        finally:
            _empty_and_remove(path)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _empty_and_remove(path: Path) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        pids = [int(pid) for pid in _read(path / "cgroup.procs").split()]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        with contextlib.suppress(OSError):
            path.rmdir()
            return
        time.sleep(0.05)


@pytest.fixture
def cgroup() -> Iterator[MemoryCgroup]:
    with MemoryCgroup.make(FUNCTION_MB << 20) as made:
        yield made


def _start_in(cgroup: MemoryCgroup, emu: Emulator, task_root: Path,
              env: dict[str, str | None]) -> RuntimeProcess:
    write_module_files(task_root, {"app.py": APP})
    argv = [
        "sh", "-c", f'echo $$ > {cgroup.procs} && exec "$@"', "sh",
        sys.executable, "-m", "lambda_bulkhead", "run", "app.handler", "--isolation", "process",
    ]
    rt = RuntimeProcess(argv, runtime_env(emu, task_root, env), task_root, emu)
    rt.wait_until_polling()
    return rt


@pytest.mark.parametrize("cap", ["off", "default"])
def test_the_kernel_kills_the_worker_not_the_runtime(
    cgroup: MemoryCgroup, make_emulator: MakeEmulator, tmp_path: Path, cap: str
) -> None:
    """A handler flooding memory past the function's 384 MB: with the cap off the
    kernel's OOM killer stops it; with the default cap the supervisor may first.
    Either way: Runtime.OutOfMemory, the supervisor and template live on, the next
    invocation is answered by a new worker."""
    emu = make_emulator(timeout_s=30.0, memory_mb=FUNCTION_MB)
    env: dict[str, str | None] = {"BULKHEAD_MEMORY_LIMIT_MB": "0" if cap == "off" else None}
    rt = _start_in(cgroup, emu, tmp_path, env)
    try:
        supervisor = psutil.Process(rt.pid)
        template = supervisor.children()[0]
        result = invoke(rt, {"action": "flood"}, timeout=60)
        error = error_body(result)
        assert error["errorType"] == "Runtime.OutOfMemory", error
        summary = report(rt, result.request_id)
        assert (summary["outcome"], summary["workerReplaced"]) == ("oom", True)
        if cap == "off":
            assert error["errorMessage"].endswith("Runtime exited with error: signal: killed")
        assert supervisor.is_running()
        assert template.is_running()
        after = invoke(rt, {})
        assert after.kind == "response", after.body
        assert json.loads(after.body)["pid"] != summary["workerPid"]
    finally:
        rt.stop()
        rt.cleanup()


def test_workers_are_the_oom_killers_first_choice(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    """Workers (and what they start) have oom_score_adj 1000; the supervisor and the
    template keep the score they were started with."""
    emu = make_emulator(timeout_s=20.0)
    write_module_files(tmp_path, {"app.py": APP})
    argv = [sys.executable, "-m", "lambda_bulkhead", "run", "app.handler"]
    rt = RuntimeProcess(argv, runtime_env(emu, tmp_path, {}), tmp_path, emu)
    try:
        rt.wait_until_polling()
        assert invoke(rt, {}).kind == "response"
        own = Path("/proc/self/oom_score_adj").read_text().strip()
        supervisor = psutil.Process(rt.pid)
        template = supervisor.children()[0]
        assert Path(f"/proc/{rt.pid}/oom_score_adj").read_text().strip() == own
        assert Path(f"/proc/{template.pid}/oom_score_adj").read_text().strip() == own
        workers = workers_of(rt)
        assert workers
        for worker in workers:
            assert Path(f"/proc/{worker.pid}/oom_score_adj").read_text().strip() == "1000"
        assert started_record(rt)["workerStart"] == "fork"
    finally:
        rt.stop()
        rt.cleanup()
