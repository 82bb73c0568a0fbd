"""Deadline enforcement: a worker still running ``BULKHEAD_TIMEOUT_MARGIN_MS``
before ``Lambda-Runtime-Deadline-Ms`` gets SIGUSR1 (faulthandler writes its
stack), then SIGKILL to its group, and the invocation is answered
``Sandbox.Timedout`` / ``Task timed out after 2.00 seconds`` (the function's timeout) *before* the
deadline: the emulator's answer is the posted error, never its own timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _limits_helpers import error_body, invoke, report, start_supervised
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator, NextPastDeadline

TIMEOUT_S = 2.0
#: Generous, so that "answered before the deadline" holds on a loaded machine;
#: whether the default (50 ms) is enough is measured by benchmarks/limits.py.
MARGIN_MS = 250

APP = """
import ctypes
import mmap
import os
import socket
import time


def busy_loop():
    while True:
        pass


def c_sleep():
    ctypes.CDLL(None).sleep(10)  # blocked in libc, not in the interpreter


def socket_read():
    ours, theirs = socket.socketpair()
    ours.recv(1)  # nobody ever writes


def until_remaining(ms, context):
    while context.get_remaining_time_in_millis() > ms:
        time.sleep(0.005)


def big_then_busy(mb):
    # MAP_POPULATE: the kernel makes every page resident before mmap returns.
    region = mmap.mmap(-1, mb << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_POPULATE)
    busy_loop()
    return region


def handler(event, context):
    action = event["action"]
    if action == "ok":
        return {"pid": os.getpid()}
    if action == "busy":
        busy_loop()
    if action == "c_sleep":
        c_sleep()
    if action == "socket_read":
        socket_read()
    if action == "big_then_busy":
        big_then_busy(event["mb"])
    if action == "return_at":
        until_remaining(event["remaining_ms"], context)
        return {"pid": os.getpid(), "remaining": context.get_remaining_time_in_millis()}
    if action == "mark":
        open(event["path"], "w").close()
        return "ran"
    raise AssertionError(action)
"""


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    """An emulator whose function times out after 2 s."""
    return make_emulator(timeout_s=TIMEOUT_S)


@pytest.fixture
def rt(runtime: StartRuntime, emu: Emulator) -> RuntimeProcess:
    """A supervised runtime stopping handlers 250 ms before their deadline."""
    return start_supervised(runtime, emu, APP, env={"BULKHEAD_TIMEOUT_MARGIN_MS": str(MARGIN_MS)})


def _assert_timed_out_by_us(rt: RuntimeProcess, event: dict[str, object], function: str,
                            *, latest_s: float = TIMEOUT_S) -> dict[str, object]:
    # latest_s is also the function's timeout, which the message names.
    """Invoke; the answer is our Sandbox.Timedout (not the emulator's timeout), its stack
    names ``function`` and the handler; the next invocation runs on a new worker."""
    result = invoke(rt, event)
    assert result.kind == "error", (result.kind, result.body, rt.describe())
    error = error_body(result)
    assert error["errorType"] == "Sandbox.Timedout"
    # The function's timeout, as Lambda words it: the margin stays out of view.
    assert error["errorMessage"] == f"Task timed out after {latest_s:.2f} seconds"
    assert 1000.0 <= report(rt, result.request_id)["durationMs"] < latest_s * 1000
    stack = "".join(error["stackTrace"])
    assert f" in {function}\n" in stack, stack
    assert " in handler\n" in stack, stack
    summary = report(rt, result.request_id)
    assert summary["outcome"] == "timeout"
    assert summary["workerReplaced"] is True
    after = invoke(rt, {"action": "ok"})
    assert after.kind == "response", after.body
    assert report(rt, after.request_id)["workerPid"] != summary["workerPid"]
    assert rt.poll() is None
    return error


def test_busy_loop_is_stopped_before_the_deadline(rt: RuntimeProcess) -> None:
    """`while True: pass` past a 2 s deadline is answered Sandbox.Timedout before it."""
    _assert_timed_out_by_us(rt, {"action": "busy"}, "busy_loop")


def test_c_level_sleep_is_stopped_before_the_deadline(rt: RuntimeProcess) -> None:
    """A handler blocked in libc's sleep() is stopped, with its Python stack reported."""
    _assert_timed_out_by_us(rt, {"action": "c_sleep"}, "c_sleep")


def test_socket_read_is_stopped_before_the_deadline(rt: RuntimeProcess) -> None:
    """A handler blocked reading a socket that never delivers is stopped."""
    _assert_timed_out_by_us(rt, {"action": "socket_read"}, "socket_read")


def test_a_big_worker_is_answered_before_its_memory_is_freed(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """A 2 GB worker is answered before its deadline though freeing it outlasts the margin."""
    emu = make_emulator(timeout_s=10.0)
    rt = start_supervised(runtime, emu, APP, env={
        "BULKHEAD_MEMORY_LIMIT_MB": "0", "BULKHEAD_TIMEOUT_MARGIN_MS": "100",
    })
    _assert_timed_out_by_us(
        rt, {"action": "big_then_busy", "mb": 2048}, "busy_loop", latest_s=10.0
    )


def test_returning_just_before_the_margin_is_never_touched(rt: RuntimeProcess) -> None:
    """A handler returning shortly before the margin is answered normally; its worker stays."""
    first = invoke(rt, {"action": "return_at", "remaining_ms": MARGIN_MS + 150})
    assert first.kind == "response", first.body
    summary = report(rt, first.request_id)
    assert summary["outcome"] == "success"
    assert summary["workerReplaced"] is False
    second = invoke(rt, {"action": "ok"})
    assert report(rt, second.request_id)["workerPid"] == summary["workerPid"]


def test_margin_is_configurable(runtime: StartRuntime, emu: Emulator) -> None:
    """BULKHEAD_TIMEOUT_MARGIN_MS=1000 stops a 2 s invocation after about 1 s."""
    rt = start_supervised(runtime, emu, APP, env={"BULKHEAD_TIMEOUT_MARGIN_MS": "1000"})
    result = invoke(rt, {"action": "busy"})
    error = error_body(result)
    assert error["errorMessage"] == "Task timed out after 2.00 seconds", error
    assert 800.0 <= report(rt, result.request_id)["durationMs"] < 1600.0


def test_without_the_timeout_variable_the_message_names_the_derived_timeout(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """As on Lambda, which does not pass AWS_LAMBDA_FUNCTION_TIMEOUT: the timeout is
    the whole seconds from receiving the event to its deadline, rounded up."""
    rt = start_supervised(runtime, emu, APP, env={
        "BULKHEAD_TIMEOUT_MARGIN_MS": str(MARGIN_MS), "AWS_LAMBDA_FUNCTION_TIMEOUT": None,
    })
    error = error_body(invoke(rt, {"action": "busy"}))
    assert error["errorMessage"] == "Task timed out after 2.00 seconds", error


def test_deadline_already_past_is_answered_without_running_the_handler(
    rt: RuntimeProcess, emu: Emulator, tmp_path: Path
) -> None:
    """An event already past its deadline is answered at once, without running the handler."""
    before = report(rt, invoke(rt, {"action": "ok"}).request_id)
    marker = tmp_path / "ran"
    emu.inject(NextPastDeadline(by_ms=1000))
    result = invoke(rt, {"action": "mark", "path": str(marker)})
    error = error_body(result)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"] == "Task timed out after 2.00 seconds"
    assert not marker.exists()
    after = invoke(rt, {"action": "mark", "path": str(marker)})
    assert after.kind == "response"
    assert marker.exists()
    assert report(rt, after.request_id)["workerPid"] == before["workerPid"]


def test_consecutive_timeouts_are_not_a_restart_storm(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """Six timeouts in a row (a dependency down) bring no restart back-off and no exit."""
    emu = make_emulator(timeout_s=0.5)
    rt = start_supervised(runtime, emu, APP)
    for _ in range(6):
        result = invoke(rt, {"action": "busy"})
        assert error_body(result)["errorType"] == "Sandbox.Timedout"
    assert invoke(rt, {"action": "ok"}).kind == "response"
    assert rt.poll() is None
    assert not [r for r in rt.records() if r.get("message") == "restart back-off"]
