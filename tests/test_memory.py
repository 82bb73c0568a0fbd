"""The per-invocation memory cap, with real workers under a 256 MB cap.

The supervisor samples the resident memory of the worker and of every process
it started (every ``BULKHEAD_MEMORY_POLL_MS``); past its baseline plus
``BULKHEAD_MEMORY_LIMIT_MB`` the worker's group is SIGKILLed and the
invocation answered ``Runtime.OutOfMemory``.  Memory reserved but not used
(thread stacks, an untouched mapping, numpy's zeros) does not count, so what
runs under the official runtime with the same memory runs here.  The worker
is replaced and the runtime keeps serving.  (The kernel's OOM killer, for an
allocation faster than a sample, is in test_oom_cgroup.py.)
"""

from __future__ import annotations

import json
import re

import pytest
from _limits_helpers import error_body, invoke, report, start_supervised, started_record
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator

CAP_MB = 256

APP = """
import mmap
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

MB = 1 << 20


def touched(size):
    # b"x" * n writes every byte, so every page is resident (bytearray(n)
    # would get zero pages the kernel has not handed out yet).
    return b"x" * size


def handler(event, context):
    action = event["action"]
    if action == "ok":
        return {"pid": os.getpid()}
    if action == "gib_at_once":
        data = bytearray(1 << 30)
        return len(data)
    if action == "steps":
        chunks = []
        for _ in range(300):  # 3 GB if nothing stops it
            chunks.append(touched(10 * MB))
            time.sleep(0.005)
        return "not stopped"
    if action == "shared":
        # MAP_SHARED anonymous memory is shmem: RLIMIT_DATA does not count it.
        size = event["mb"] * MB
        region = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        for offset in range(0, size, mmap.PAGESIZE):
            region[offset] = 1
        return "not stopped"
    if action == "hold":
        data = touched(event["mb"] * MB)
        return {"pid": os.getpid(), "size": len(data)}
    if action == "faults":
        import resource
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        data = touched(event["mb"] * MB)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del data
        return {"pid": os.getpid(), "faults": faults}
    if action == "threads":
        with ThreadPoolExecutor(max_workers=event["count"]) as pool:
            done = list(pool.map(lambda _: time.sleep(0.05), range(event["count"])))
        return len(done)
    if action == "reserve":
        # 2 GB of address space, one page in 64 touched: reserved, barely used.
        region = mmap.mmap(-1, 2048 * MB)
        for offset in range(0, 2048 * MB, 64 * mmap.PAGESIZE):
            region[offset] = 1
        return "reserved"
    if action == "children":
        holders = [
            subprocess.Popen([sys.executable, "-c",
                              f"data = b'x' * ({event['mb']} << 20); import time; time.sleep(30)"])
            for _ in range(3)
        ]
        for holder in holders:
            holder.wait()
        return "not stopped"
    if action == "native_alloc":
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 35184372088832 bytes. Error code 12 "
            "(Cannot allocate memory)"
        )
    if action == "spike":
        data = touched(event["mb"] * MB)
        del data  # gone before the answer: only a true peak sees it
        return {"pid": os.getpid()}
    raise AssertionError(action)
"""


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    """An emulator with a deadline far beyond what these handlers take."""
    return make_emulator(timeout_s=20.0)


@pytest.fixture
def capped(runtime: StartRuntime, emu: Emulator) -> RuntimeProcess:
    """A supervised runtime with a 256 MB per-invocation cap."""
    return start_supervised(runtime, emu, APP, env={"BULKHEAD_MEMORY_LIMIT_MB": str(CAP_MB)})


def _assert_serves_on_a_new_worker(rt: RuntimeProcess, old_pid: int) -> None:
    """The runtime (same process) answers normally, on a worker other than ``old_pid``."""
    assert rt.poll() is None, rt.describe()
    result = invoke(rt, {"action": "ok"})
    assert result.kind == "response", rt.describe()
    new = report(rt, result.request_id)
    assert new["outcome"] == "success"
    assert new["workerPid"] == json.loads(result.body)["pid"] != old_pid


def test_one_gib_at_once_is_out_of_memory_and_the_runtime_serves_on(
    capped: RuntimeProcess,
) -> None:
    """bytearray(1 GiB), which writes every byte, is stopped under a 256 MB cap:
    Runtime.OutOfMemory; the next invocation runs."""
    result = invoke(capped, {"action": "gib_at_once"})
    error = error_body(result)
    assert error["errorType"] == "Runtime.OutOfMemory", error
    summary = report(capped, result.request_id)
    assert summary["outcome"] == "oom"
    assert summary["workerReplaced"] is True
    _assert_serves_on_a_new_worker(capped, summary["workerPid"])


def test_reserved_memory_does_not_count(capped: RuntimeProcess) -> None:
    """A 2 GB mapping with one page in 64 touched (32 MB resident) is not memory
    used: it succeeds under a 256 MB cap, as it would under the official runtime."""
    result = invoke(capped, {"action": "reserve"})
    assert result.kind == "response", result.body
    assert report(capped, result.request_id)["outcome"] == "success"


def test_a_thread_pool_starts_in_a_128_mb_function(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """200 threads (each with its 8 MB stack reserved) run under the default cap of
    a 128 MB function: stacks are reservations, not memory used."""
    emu = make_emulator(timeout_s=20.0, memory_mb=128)
    rt = start_supervised(runtime, emu, APP)
    assert started_record(rt)["memoryLimitMB"] < 128
    for count in (32, 200):
        result = invoke(rt, {"action": "threads", "count": count})
        assert result.kind == "response", result.body
        assert json.loads(result.body) == count


def test_memory_held_by_child_processes_counts(capped: RuntimeProcess) -> None:
    """Three child processes holding 120 MB each (360 MB, each under the 256 MB cap)
    are the worker's memory: Runtime.OutOfMemory, and the children die with it."""
    result = invoke(capped, {"action": "children", "mb": 120})
    error = error_body(result)
    assert error["errorType"] == "Runtime.OutOfMemory", error
    summary = report(capped, result.request_id)
    assert summary["outcome"] == "oom"
    assert summary["maxMemoryUsedMB"] > CAP_MB
    _assert_serves_on_a_new_worker(capped, summary["workerPid"])


def test_a_native_allocation_failure_is_out_of_memory(capped: RuntimeProcess) -> None:
    """torch's allocation failure (a RuntimeError naming ENOMEM, worded as torch
    words it) is Runtime.OutOfMemory with its message, and the worker is replaced."""
    result = invoke(capped, {"action": "native_alloc"})
    error = error_body(result)
    assert error["errorType"] == "Runtime.OutOfMemory", error
    assert "can't allocate memory" in error["errorMessage"]
    assert any("native_alloc" in line or "raise RuntimeError" in line
               for line in error["stackTrace"]), error
    summary = report(capped, result.request_id)
    assert (summary["outcome"], summary["workerReplaced"]) == ("oom", True)
    _assert_serves_on_a_new_worker(capped, summary["workerPid"])


def test_growth_in_10mb_steps_is_stopped_near_the_cap(capped: RuntimeProcess) -> None:
    """A handler growing 10 MB at a time is stopped at the cap, then the runtime serves on."""
    baseline = report(capped, invoke(capped, {"action": "ok"}).request_id)["maxMemoryUsedMB"]
    result = invoke(capped, {"action": "steps"})
    error = error_body(result)
    assert error["errorType"] == "Runtime.OutOfMemory", error
    summary = report(capped, result.request_id)
    grown = summary["maxMemoryUsedMB"] - baseline
    # It got close to the cap (so the cap is not too tight), and not far past it.
    assert CAP_MB - 40 <= grown <= CAP_MB + 40, summary
    _assert_serves_on_a_new_worker(capped, summary["workerPid"])


def test_shared_memory_is_caught_by_the_rss_watch(capped: RuntimeProcess) -> None:
    """Anonymous shared memory counts too: Runtime.OutOfMemory, with the cap and the
    peak seen in the message."""
    result = invoke(capped, {"action": "shared", "mb": 1024})
    error = error_body(result)
    assert error["errorType"] == "Runtime.OutOfMemory", error
    match = re.search(r"cap of (\d+) MB \(peak seen (\d+) MB", error["errorMessage"])
    assert match, error["errorMessage"]
    assert int(match[1]) == CAP_MB
    assert CAP_MB < int(match[2]) < 1024
    summary = report(capped, result.request_id)
    assert summary["outcome"] == "oom"
    assert summary["errorType"] == "Runtime.OutOfMemory"
    assert summary["workerReplaced"] is True
    _assert_serves_on_a_new_worker(capped, summary["workerPid"])


def test_an_allocation_just_under_the_cap_succeeds(capped: RuntimeProcess) -> None:
    """The cap counts from the worker's own baseline: 248 MB of a 256 MB cap is allowed."""
    result = invoke(capped, {"action": "hold", "mb": 248})
    assert result.kind == "response", result.body
    assert json.loads(result.body)["size"] == 248 << 20


def test_the_cap_is_per_invocation_not_cumulative(capped: RuntimeProcess) -> None:
    """Two 150 MB invocations in a row (freed in between) both succeed on the same worker."""
    first = invoke(capped, {"action": "hold", "mb": 150})
    second = invoke(capped, {"action": "hold", "mb": 150})
    assert first.kind == second.kind == "response", (first.body, second.body)
    assert json.loads(first.body) == json.loads(second.body)  # same pid, same size


def test_peak_memory_is_reported_even_when_freed_before_the_answer(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """maxMemoryUsedMB shows a 100 MB buffer freed before the answer, between two samples."""
    rt = start_supervised(runtime, emu, APP, env={
        "BULKHEAD_MEMORY_LIMIT_MB": str(CAP_MB), "BULKHEAD_MEMORY_POLL_MS": "60000",
    })
    quiet = report(rt, invoke(rt, {"action": "ok"}).request_id)
    result = invoke(rt, {"action": "spike", "mb": 100})
    assert result.kind == "response"
    spiked = report(rt, result.request_id)
    assert spiked["maxMemoryUsedMB"] - quiet["maxMemoryUsedMB"] >= 95, (quiet, spiked)
    assert spiked["workerPid"] == quiet["workerPid"]
    after = report(rt, invoke(rt, {"action": "ok"}).request_id)
    assert after["maxMemoryUsedMB"] - quiet["maxMemoryUsedMB"] < 20, (quiet, after)


def test_a_worker_keeps_its_heap_for_the_next_large_event(capped: RuntimeProcess) -> None:
    """A 6 MB buffer freed by one invocation is reused by the next without
    page-faulting it in afresh (1,536 faults if it had to), on the same worker."""
    answers = [json.loads(invoke(capped, {"action": "faults", "mb": 6}).body) for _ in range(3)]
    assert len({answer["pid"] for answer in answers}) == 1
    assert [answer["faults"] < 300 for answer in answers[1:]] == [True, True], answers


def test_the_heap_kept_stays_well_under_a_small_cap(runtime: StartRuntime, emu: Emulator) -> None:
    """With a 40 MB cap, 30 MB freed by one invocation does not count against the
    next: the worker keeps at most a quarter of its cap."""
    rt = start_supervised(runtime, emu, APP, env={"BULKHEAD_MEMORY_LIMIT_MB": "40"})
    for _ in range(3):
        result = invoke(rt, {"action": "faults", "mb": 6})
        assert result.kind == "response", result.body
    first = invoke(rt, {"action": "hold", "mb": 30})
    second = invoke(rt, {"action": "ok"})
    assert first.kind == second.kind == "response", (first.body, second.body)
    assert report(rt, second.request_id)["outcome"] == "success"


def test_zero_turns_the_cap_off(runtime: StartRuntime, emu: Emulator) -> None:
    """BULKHEAD_MEMORY_LIMIT_MB=0: a 300 MB invocation succeeds and no cap is announced."""
    rt = start_supervised(runtime, emu, APP, env={"BULKHEAD_MEMORY_LIMIT_MB": "0"})
    result = invoke(rt, {"action": "hold", "mb": 300})
    assert result.kind == "response", result.body
    assert "memoryLimitMB" not in started_record(rt)


@pytest.mark.parametrize("workers", [1, 2])
def test_default_cap_is_derived_from_the_function_memory(
    runtime: StartRuntime, make_emulator: MakeEmulator, workers: int
) -> None:
    """Unset, the cap is (function memory - supervisor - template - 32 MB) / workers."""
    emu = make_emulator(timeout_s=20.0, memory_mb=512)
    rt = start_supervised(runtime, emu, APP, env={"BULKHEAD_WORKERS": str(workers)})
    cap = started_record(rt)["memoryLimitMB"]
    # The supervisor and the template each take 10-60 MB at start here.
    assert (512 - 32 - 120) / workers <= cap <= (512 - 32 - 20) / workers, cap


TORCH_APP = """
import os

import torch

torch.ones(8) @ torch.ones(8)  # a warm-up at import, as a model load does


def handler(event, context):
    if event.get("action") == "huge":
        return float(torch.empty(1 << 45, dtype=torch.uint8).sum())  # 32 TiB
    return {"pid": os.getpid()}
"""


def test_a_real_torch_allocation_failure_is_out_of_memory(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """Real torch (not a CI dependency: installed by hand, `pip install torch==2.13.0`):
    an allocation the system refuses is Runtime.OutOfMemory, and the next
    invocation runs on a new worker."""
    pytest.importorskip("torch", reason="torch is not a test dependency (a multi-GB wheel)")
    rt = start_supervised(runtime, emu, TORCH_APP, env={"BULKHEAD_MEMORY_LIMIT_MB": "512"})
    result = invoke(rt, {"action": "huge"})
    error = error_body(result)
    assert error["errorType"] == "Runtime.OutOfMemory", error
    assert "allocate" in error["errorMessage"]
    summary = report(rt, result.request_id)
    assert (summary["outcome"], summary["workerReplaced"]) == ("oom", True)
    _assert_serves_on_a_new_worker(rt, summary["workerPid"])
