"""One invocation must not change the next one's process.

A handler can lower a resource limit, ignore or catch a signal, block one, or
narrow its CPU affinity.  The worker puts each back before the next
invocation; what it cannot put back (a hard limit lowered: only a privileged
process may raise it again) has it replaced after its answer.
"""

from __future__ import annotations

import json
import os

import pytest
from _limits_helpers import answer, error_body, invoke, report, start_supervised
from conftest import MakeEmulator, StartRuntime

from lambda_bulkhead.emulator import Emulator

APP = """
import os
import resource
import signal


def state():
    return {
        "pid": os.getpid(),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "sigterm": str(signal.getsignal(signal.SIGTERM)),
        "sigusr2": str(signal.getsignal(signal.SIGUSR2)),
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "cpus": sorted(os.sched_getaffinity(0)),
    }


def handler(event, context):
    action = event.get("action")
    if action == "meddle":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, lambda *_: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2, signal.SIGHUP])
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if action == "catch_fatal_signals":
        signal.signal(signal.SIGSEGV, lambda *_: None)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if action == "segv":
        import ctypes
        ctypes.string_at(0)
    if action == "lower_hard":
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return state()
"""


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator(timeout_s=20.0)


@pytest.mark.parametrize("colocate", ["1", "0"])
def test_limits_signals_mask_and_affinity_are_put_back(
    runtime: StartRuntime, emu: Emulator, colocate: str
) -> None:
    """After an invocation that changed all of them, the next one (same worker)
    finds the limits, dispositions, mask and CPUs its first one had."""
    rt = start_supervised(runtime, emu, APP, env={"BULKHEAD_COLOCATE": colocate})
    before = answer(rt, {})
    meddled = answer(rt, {"action": "meddle"})
    assert meddled["nofile"][0] == 64
    assert meddled["sigterm"] != before["sigterm"]
    if len(os.sched_getaffinity(0)) > 1:
        assert meddled["cpus"] != before["cpus"]
    after = answer(rt, {})
    assert after == before


def test_a_worker_whose_hard_limit_was_lowered_is_replaced(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """A hard limit lowered cannot be raised again: the worker answers, then
    declines the next event, which runs on a new worker with the original limit."""
    rt = start_supervised(runtime, emu, APP)
    before = answer(rt, {})
    if before["core"][1] == 0:
        pytest.skip("RLIMIT_CORE's hard limit is 0 here already: nothing to lower")
    result = invoke(rt, {"action": "lower_hard"})
    assert result.kind == "response"
    assert json.loads(result.body)["core"] == [0, 0]
    after = answer(rt, {})
    assert after["pid"] != before["pid"]
    assert after["core"] == before["core"]
    replaced = rt.wait_for(lambda r: r.get("message") == "worker replaced")
    assert (replaced["pid"], replaced["reason"]) == (
        before["pid"], "changed its process state for good"
    )
    assert report(rt, result.request_id)["outcome"] == "success"


def test_putting_back_signal_handlers_keeps_the_crash_stacks(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """A handler that replaced SIGSEGV's and SIGUSR1's handlers: once they are put
    back, the next segfault still reports its Python stack (faulthandler re-armed)."""
    rt = start_supervised(runtime, emu, APP)
    answer(rt, {"action": "catch_fatal_signals"})
    error = error_body(invoke(rt, {"action": "segv"}))
    assert error["errorType"] == "Runtime.ExitError", error
    assert any("in handler" in line for line in error["stackTrace"]), error
