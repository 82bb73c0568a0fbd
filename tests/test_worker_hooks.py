"""``lambda_bulkhead.on_worker_start``: code run in each worker before its first
invocation, for what cannot be shared across fork (a database connection)."""

from __future__ import annotations

import pytest
from _limits_helpers import answer, invoke, start_supervised
from conftest import MakeEmulator, StartRuntime

from lambda_bulkhead.emulator import Emulator

APP = """
import os

import lambda_bulkhead

connection = {"opened_by": os.getpid()}  # as a driver's connect() at import


@lambda_bulkhead.on_worker_start
def reconnect():
    global connection
    connection = {"opened_by": os.getpid()}
    with open(os.path.join(os.path.dirname(__file__), "hooks.log"), "a") as log:
        log.write(f"{os.getpid()}\\n")


def handler(event, context):
    if event.get("action") == "exit":
        raise SystemExit(3)
    return {"pid": os.getpid(), "connectionOpenedBy": connection["opened_by"]}
"""

FAILING = """
import lambda_bulkhead


@lambda_bulkhead.on_worker_start
def reconnect():
    raise ConnectionRefusedError("the database said no")


def handler(event, context):
    return "never"
"""


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator(timeout_s=20.0)


@pytest.mark.parametrize("start", ["fork", "import"])
def test_each_worker_runs_the_start_hook_before_its_first_invocation(
    runtime: StartRuntime, emu: Emulator, start: str
) -> None:
    """Every worker, forked or importing, runs the hook: the handler always uses a
    connection its own process opened, also after a replacement."""
    rt = start_supervised(runtime, emu, APP, env={"BULKHEAD_WORKER_START": start})
    first = answer(rt, {})
    assert first["connectionOpenedBy"] == first["pid"]
    assert invoke(rt, {"action": "exit"}).kind == "error"
    second = answer(rt, {})
    assert second["connectionOpenedBy"] == second["pid"] != first["pid"]
    hooked = {int(pid) for pid in (rt.cwd / "hooks.log").read_text().split()}
    assert {first["pid"], second["pid"]} <= hooked


def test_in_process_runs_the_start_hook_once(runtime: StartRuntime, emu: Emulator) -> None:
    """--isolation none: the runtime's process is the only worker; the hook runs once."""
    rt = runtime("app.handler", modules={"app.py": APP}, emulator=emu, isolation="none")
    answers = [answer(rt, {}) for _ in range(2)]
    assert answers[0] == answers[1]
    assert (rt.cwd / "hooks.log").read_text().split() == [str(answers[0]["pid"])]


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_a_failing_start_hook_stops_the_runtime_and_says_why(
    runtime: StartRuntime, emu: Emulator, isolation: str
) -> None:
    """A hook that raises means no worker can serve: the runtime exits non-zero and
    its log names the hook's exception."""
    rt = runtime("app.handler", modules={"app.py": FAILING}, emulator=emu,
                 isolation=isolation, wait_for_poll=False)
    assert rt.wait(timeout=30) != 0
    assert "the database said no" in rt.stdout + rt.stderr
