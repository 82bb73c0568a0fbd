"""Co-location (``BULKHEAD_COLOCATE``): each slot's thread in the supervisor and
its worker's main thread wait for each other on one CPU, and the handler runs
with every CPU the runtime has.  Needs two CPUs (there is nothing to choose on one).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import psutil
import pytest
from _limits_helpers import invoke, start_supervised, started_record
from conftest import RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator
from lambda_bulkhead.process._affinity import pin_thread, slot_cpus

EVERY_CPU = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.skipif(len(EVERY_CPU) < 2, reason="co-location needs two CPUs")

APP = """
import os
import threading


def handler(event, context):
    if "narrow_to" in event:
        os.sched_setaffinity(0, {event["narrow_to"]})
        return {"pid": os.getpid()}
    seen = {}

    def look():
        seen["thread"] = sorted(os.sched_getaffinity(0))

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return {"pid": os.getpid(), "main": sorted(os.sched_getaffinity(0)),
            "thread": seen["thread"]}
"""


def _pinned_threads(pid: int) -> dict[int, list[int]]:
    """The threads of ``pid`` confined to fewer CPUs than the test runs on."""
    pinned = {}
    for thread in psutil.Process(pid).threads():
        cpus = sorted(os.sched_getaffinity(thread.id))
        if cpus != EVERY_CPU:
            pinned[thread.id] = cpus
    return pinned


def _serve(rt: RuntimeProcess, times: int, event: dict[str, Any] | None = None
           ) -> list[dict[str, Any]]:
    answers = []
    for _ in range(times):
        result = invoke(rt, event or {})
        assert result.kind == "response", rt.describe()
        answers.append(json.loads(result.body))
    return answers


def test_slot_and_idle_worker_wait_on_one_cpu_and_the_handler_has_them_all(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """By default the slot's thread is pinned to the first CPU and so is its
    worker's main thread between events, while the handler, and a thread it
    starts, see every CPU (the first event and the later ones)."""
    rt = start_supervised(runtime, emulator, APP)
    answers = _serve(rt, 3)
    assert started_record(rt)["slotCpus"] == [EVERY_CPU[0]]
    for answer in answers:
        assert answer["main"] == answer["thread"] == EVERY_CPU
    worker = answers[-1]["pid"]
    assert sorted(os.sched_getaffinity(worker)) == [EVERY_CPU[0]]
    assert list(_pinned_threads(rt.pid).values()) == [[EVERY_CPU[0]]]


def test_a_handler_narrowing_its_affinity_has_it_reset_at_the_next_event(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """The worker sets its main thread's affinity itself around each event: a
    handler that confined it to the last CPU finds every CPU again next time."""
    rt = start_supervised(runtime, emulator, APP)
    (narrowed,) = _serve(rt, 1, {"narrow_to": EVERY_CPU[-1]})
    (after,) = _serve(rt, 1)
    assert after["pid"] == narrowed["pid"]
    assert after["main"] == after["thread"] == EVERY_CPU
    assert sorted(os.sched_getaffinity(after["pid"])) == [EVERY_CPU[0]]


def test_each_slot_gets_a_cpu_of_its_own(runtime: StartRuntime, emulator: Emulator) -> None:
    """Two slots: the first CPU and the second, one thread pinned to each."""
    rt = start_supervised(runtime, emulator, APP, env={"BULKHEAD_WORKERS": "2"})
    assert started_record(rt)["slotCpus"] == EVERY_CPU[:2]
    _serve(rt, 1)
    assert sorted(_pinned_threads(rt.pid).values()) == [[cpu] for cpu in EVERY_CPU[:2]]


def test_colocate_off_pins_nothing(runtime: StartRuntime, emulator: Emulator) -> None:
    """BULKHEAD_COLOCATE=0: no thread of the supervisor or the worker is pinned."""
    rt = start_supervised(runtime, emulator, APP, env={"BULKHEAD_COLOCATE": "0"})
    answers = _serve(rt, 2)
    assert started_record(rt).get("slotCpus") is None
    assert answers[-1]["main"] == EVERY_CPU
    assert sorted(os.sched_getaffinity(answers[-1]["pid"])) == EVERY_CPU
    assert _pinned_threads(rt.pid) == {}


def _in_a_thread_on(cpus: set[int], slots: int) -> list[int | None]:
    """``slot_cpus(slots)`` called by a thread allowed on ``cpus`` only."""
    seen: list[list[int | None]] = []

    def confined() -> None:
        assert pin_thread(cpus)
        seen.append(slot_cpus(slots))

    thread = threading.Thread(target=confined)
    thread.start()
    thread.join()
    return seen[0]


def test_slot_cpus_gives_each_slot_its_own_cpu_or_none_at_all() -> None:
    """One CPU each while there are enough; none on one CPU (nothing to choose)
    or with more slots than CPUs (they would share CPUs, pinned)."""
    first, second = EVERY_CPU[:2]
    assert _in_a_thread_on({first, second}, 1) == [first]
    assert _in_a_thread_on({first, second}, 2) == [first, second]
    assert _in_a_thread_on({first, second}, 3) == [None, None, None]
    assert _in_a_thread_on({second}, 1) == [None]


def test_pin_thread_reports_a_refusal() -> None:
    """A CPU the kernel does not have: False, the thread's affinity unchanged."""
    seen: dict[str, object] = {}

    def refused() -> None:
        seen["pinned"] = pin_thread({4095})
        seen["cpus"] = sorted(os.sched_getaffinity(0))

    thread = threading.Thread(target=refused)
    thread.start()
    thread.join()
    assert seen == {"pinned": False, "cpus": EVERY_CPU}
