"""The per-invocation memory cap, with real workers under a 256 MB cap.

Two mechanisms stop a worker that grows past ``BULKHEAD_MEMORY_LIMIT_MB``:

* ``RLIMIT_DATA``, set in the worker at its post-fork data size plus the cap:
  private allocations (``malloc``, ``mmap`` of private anonymous memory) past
  it fail, and Python raises ``MemoryError``, posted as such;
* the supervisor's RSS watch (every ``BULKHEAD_MEMORY_POLL_MS``): memory the
  rlimit does not count, such as anonymous *shared* mappings, gets the worker
  SIGKILLed and the invocation answered ``Runtime.OutOfMemory``.

Either way the worker is replaced and the runtime keeps serving.
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
import time

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


def test_one_gib_at_once_is_a_memory_error_and_the_runtime_serves_on(
    capped: RuntimeProcess,
) -> None:
    """bytearray(1 GiB) under a 256 MB cap fails with MemoryError; the next invocation runs."""
    result = invoke(capped, {"action": "gib_at_once"})
    error = error_body(result)
    assert error["errorType"] == "MemoryError"
    assert any("bytearray(1 << 30)" in line for line in error["stackTrace"]), error
    summary = report(capped, result.request_id)
    assert summary["workerReplaced"] is True
    _assert_serves_on_a_new_worker(capped, summary["workerPid"])


def test_growth_in_10mb_steps_is_stopped_near_the_cap(capped: RuntimeProcess) -> None:
    """A handler growing 10 MB at a time is stopped at the cap, then the runtime serves on."""
    baseline = report(capped, invoke(capped, {"action": "ok"}).request_id)["maxMemoryUsedMB"]
    result = invoke(capped, {"action": "steps"})
    error = error_body(result)
    assert error["errorType"] in ("MemoryError", "Runtime.OutOfMemory"), error
    summary = report(capped, result.request_id)
    grown = summary["maxMemoryUsedMB"] - baseline
    # It got close to the cap (so the cap is not too tight), and not far past it.
    assert CAP_MB - 40 <= grown <= CAP_MB + 40, summary
    _assert_serves_on_a_new_worker(capped, summary["workerPid"])


def test_shared_memory_the_rlimit_misses_is_caught_by_the_rss_watch(
    capped: RuntimeProcess,
) -> None:
    """Shared memory, which RLIMIT_DATA misses, is killed by the RSS watch: Runtime.OutOfMemory."""
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
