"""Concurrent workers (``BULKHEAD_WORKERS`` / ``AWS_LAMBDA_MAX_CONCURRENCY``):
N slots, each with its own worker, deadline and memory cap, polling ``/next``
only when it has a worker ready for the event (back-pressure), plus one spare.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future
from typing import Any

import pytest
from _limits_helpers import error_body, report, start_supervised, workers_of
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator, InvokeResult

APP = """
import ctypes
import os
import time


def handler(event, context):
    action = event["action"]
    remaining = context.get_remaining_time_in_millis()
    if action == "sleep":
        time.sleep(event["seconds"])
        return {"pid": os.getpid(), "tag": event.get("tag"), "remainingAtStart": remaining}
    if action == "crash_after":
        time.sleep(event["seconds"])
        ctypes.string_at(0)
    if action == "busy":
        while True:
            pass
    if action == "print":
        for number in range(event["lines"]):
            print(f"{event['tag']} line {number} " + "x" * event["width"])
        return {"tag": event["tag"]}
    raise AssertionError(action)
"""

TIMEOUT_S = 20.0


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    """An emulator with a deadline far beyond what these handlers take."""
    return make_emulator(timeout_s=TIMEOUT_S)


def _start(runtime: StartRuntime, emu: Emulator, workers: int) -> RuntimeProcess:
    rt = start_supervised(runtime, emu, APP, env={"BULKHEAD_WORKERS": str(workers)})
    assert emu.wait_for_next_poll(timeout=20, polls=workers), rt.describe()
    return rt


def _submit(emu: Emulator, event: dict[str, object]) -> Future[InvokeResult]:
    return emu.submit(json.dumps(event).encode())


def _json(result: InvokeResult) -> dict[str, Any]:
    assert result.kind == "response", (result.kind, result.body)
    value = json.loads(result.body)
    assert isinstance(value, dict)
    return value


def test_four_workers_answer_eight_one_second_invocations_in_about_two_seconds(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """BULKHEAD_WORKERS=4: eight 1 s invocations take about 2 s, on four workers."""
    _start(runtime, emu, 4)
    started = time.monotonic()
    futures = [_submit(emu, {"action": "sleep", "seconds": 1.0, "tag": n}) for n in range(8)]
    results = [f.result(timeout=30) for f in futures]
    elapsed = time.monotonic() - started
    bodies = [_json(r) for r in results]
    assert sorted(b["tag"] for b in bodies) == list(range(8))
    assert len({b["pid"] for b in bodies}) == 4
    assert elapsed < 3.5, elapsed  # serially it would take 8 s


def test_aws_lambda_max_concurrency_sets_the_number_of_workers(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """AWS_LAMBDA_MAX_CONCURRENCY=3 (Managed Instances) gives three /next polls, not four."""
    start_supervised(runtime, emu, APP, env={"AWS_LAMBDA_MAX_CONCURRENCY": "3"})
    assert emu.wait_for_next_poll(timeout=20, polls=3)
    assert not emu.wait_for_next_poll(timeout=1.0, polls=4)


def test_a_crash_in_one_of_four_concurrent_workers_leaves_the_others_untouched(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """A segfault in one of four in-flight invocations leaves the other three successes."""
    rt = _start(runtime, emu, 4)
    survivors = [_submit(emu, {"action": "sleep", "seconds": 1.0, "tag": n}) for n in range(3)]
    crash = _submit(emu, {"action": "crash_after", "seconds": 0.3})
    error = error_body(crash.result(timeout=30))
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("signal: segmentation fault"), error
    for n, future in enumerate(survivors):
        result = future.result(timeout=30)
        assert _json(result)["tag"] == n
        summary = report(rt, result.request_id)
        assert summary["outcome"] == "success"
        assert summary["workerReplaced"] is False
    assert emu.wait_for_next_poll(timeout=20, polls=4), rt.describe()
    again = [_submit(emu, {"action": "sleep", "seconds": 0.2, "tag": n}) for n in range(4)]
    assert all(_json(f.result(timeout=30))["tag"] == n for n, f in enumerate(again))


def test_each_worker_has_its_own_deadline(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """With two workers, one invocation timing out does not disturb the other."""
    emu = make_emulator(timeout_s=2.0)
    rt = _start(runtime, emu, 2)
    stuck = _submit(emu, {"action": "busy"})
    fine = _submit(emu, {"action": "sleep", "seconds": 0.5, "tag": "fine"})
    assert _json(fine.result(timeout=30))["tag"] == "fine"
    result = stuck.result(timeout=30)
    assert error_body(result)["errorType"] == "Sandbox.Timedout", rt.describe()


def test_no_poll_without_a_free_worker(runtime: StartRuntime, emu: Emulator) -> None:
    """Back-pressure: no third poll, none while both workers are busy, no event held back."""
    _start(runtime, emu, 2)
    assert not emu.wait_for_next_poll(timeout=1.0, polls=3)

    busy = [_submit(emu, {"action": "sleep", "seconds": 2.0, "tag": n}) for n in range(2)]
    deadline = time.monotonic() + 10
    while len([d for d in emu.deliveries if d.request_id]) < 2:
        assert time.monotonic() < deadline, "the two events were not delivered"
        time.sleep(0.01)
    assert not emu.wait_for_next_poll(timeout=1.0, polls=1)
    for future in busy:
        _json(future.result(timeout=30))

    # Six events at once: a runtime polling ahead of its workers would hold one
    # while a worker finishes a 1 s invocation, and its handler would start late.
    batch = [_submit(emu, {"action": "sleep", "seconds": 1.0, "tag": n}) for n in range(6)]
    for future in batch:
        waited_ms = TIMEOUT_S * 1000 - _json(future.result(timeout=30))["remainingAtStart"]
        assert waited_ms < 500, waited_ms


def test_one_spare_worker_beside_the_busy_ones(runtime: StartRuntime, emu: Emulator) -> None:
    """Four slots keep five workers: one each and one spare, restored after a crash."""
    rt = _start(runtime, emu, 4)

    def settles_at(count: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(workers_of(rt)) == count:
                time.sleep(0.3)
                return len(workers_of(rt)) == count
            time.sleep(0.02)
        return False

    assert settles_at(5), [w.pid for w in workers_of(rt)]
    error_body(_submit(emu, {"action": "crash_after", "seconds": 0}).result(timeout=30))
    assert emu.wait_for_next_poll(timeout=20, polls=4)
    assert settles_at(5), [w.pid for w in workers_of(rt)]


def test_concurrent_logs_keep_whole_lines_and_their_request_ids(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """Lines printed by four workers at once arrive whole, once, with their own request id."""
    rt = _start(runtime, emu, 4)
    lines, width = 200, 3000
    futures = {
        tag: _submit(emu, {"action": "print", "tag": tag, "lines": lines, "width": width})
        for tag in ("alpha", "bravo", "charlie", "delta")
    }
    request_ids = {tag: future.result(timeout=30).request_id for tag, future in futures.items()}
    for request_id in request_ids.values():
        report(rt, request_id)  # written after the invocation's output
    pattern = re.compile(rf"^(\w+) line (\d+) x{{{width}}}$")
    seen: dict[str, list[int]] = {tag: [] for tag in request_ids}
    for record in rt.records():
        message = record.get("message")
        if not isinstance(message, str) or " line " not in message:
            continue
        match = pattern.match(message)
        assert match, message[:200]
        assert record.get("requestId") == request_ids[match[1]], record
        seen[match[1]].append(int(match[2]))
    for numbers in seen.values():
        assert numbers == list(range(lines))
