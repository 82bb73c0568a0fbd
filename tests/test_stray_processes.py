"""Nothing a handler starts outlives its worker or the runtime, and a handler
cannot stop the runtime with a signal.

Processes that leave their worker's process group (a double-forked
``setsid()`` daemon) are caught by subreapers; a worker whose parent died kills
what it started before it dies; a stop signal sent from inside the runtime's
own process tree is logged and ignored.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from _limits_helpers import answer, invoke, start_supervised
from _supervised import is_alive, wait_until_gone
from conftest import MakeEmulator, RuntimeProcess, StartRuntime, runtime_env, write_module_files

from lambda_bulkhead.emulator import Emulator

APP = """
import ctypes
import os
import signal
import subprocess
import sys
import time


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def daemon():
    read, write = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(write, str(os.getpid()).encode())
            time.sleep(60)
        os._exit(0)
    os.close(write)
    pid = int(os.read(read, 32))
    os.wait()
    return pid


def handler(event, context):
    action = event["action"]
    if action == "daemon":
        return {"pid": daemon(), "worker": os.getpid()}
    if action == "child":
        return {"pid": subprocess.Popen(["sleep", "60"]).pid, "worker": os.getpid()}
    if action == "exit":
        sys.exit(3)
    if action == "segv":
        ctypes.string_at(0)
    if action == "signal_supervisor":
        supervisor = parent_of(os.getppid())
        if event.get("via_child"):
            # sh's own kill, from a process that lives on a little: a sender
            # already gone when the runtime looks cannot be told from one outside.
            script = f"kill -{event['signal']} {supervisor}; sleep 0.5"
            subprocess.run(["sh", "-c", script], check=True)
        else:
            os.kill(supervisor, getattr(signal, "SIG" + event["signal"]))
        time.sleep(0.2)
        return {"signalled": supervisor, "worker": os.getpid()}
    return {"worker": os.getpid()}
"""


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator(timeout_s=20.0)


@pytest.mark.parametrize("ending", ["exit", "segv"])
def test_a_double_forked_daemon_dies_with_its_worker(
    runtime: StartRuntime, emu: Emulator, ending: str
) -> None:
    """A setsid() daemon the handler double-forked dies when its worker is replaced,
    after a sys.exit or a segfault; the runtime serves on."""
    rt = start_supervised(runtime, emu, APP)
    daemon = answer(rt, {"action": "daemon"})
    assert is_alive(daemon["pid"])
    assert os.getsid(daemon["pid"]) != os.getsid(daemon["worker"])
    assert invoke(rt, {"action": ending}).kind == "error"
    assert wait_until_gone([daemon["pid"]], timeout=5) == []
    assert answer(rt, {"action": "ok"})["worker"] != daemon["worker"]


def test_a_daemon_does_not_outlive_the_runtime(runtime: StartRuntime, emu: Emulator) -> None:
    """SIGTERM to the runtime: it exits, and the handler's daemon with it."""
    rt = start_supervised(runtime, emu, APP)
    daemon = answer(rt, {"action": "daemon"})
    rt.stop(signal.SIGTERM)
    assert wait_until_gone([daemon["pid"]], timeout=1.5) == []


def test_killing_the_runtimes_process_group_takes_the_handlers_children(
    emu: Emulator, tmp_path: Path
) -> None:
    """The RIE stops a runtime by killing its process group; workers are groups of
    their own, so their children must still die with them (within 1.5 s)."""
    write_module_files(tmp_path, {"app.py": APP})
    argv = [sys.executable, "-m", "lambda_bulkhead", "run", "app.handler"]
    rt = RuntimeProcess(argv, runtime_env(emu, tmp_path, {}), tmp_path, emu,
                        preexec=os.setpgrp)
    try:
        rt.wait_until_polling()
        child = answer(rt, {"action": "child"})
        daemon = answer(rt, {"action": "daemon"})
        os.killpg(rt.pid, signal.SIGKILL)
        assert wait_until_gone([child["pid"], child["worker"], daemon["pid"]], timeout=1.5) == []
    finally:
        rt.cleanup()


@pytest.mark.parametrize(("name", "via_child"), [("TERM", False), ("INT", False), ("TERM", True)])
def test_a_handler_cannot_stop_the_runtime_with_a_signal(
    runtime: StartRuntime, emu: Emulator, name: str, via_child: bool
) -> None:
    """SIGTERM or SIGINT sent to the supervisor by a worker (or a process it
    started) is logged and ignored: the runtime serves on."""
    rt = start_supervised(runtime, emu, APP)
    sent = answer(rt, {"action": "signal_supervisor", "signal": name, "via_child": via_child})
    assert sent["signalled"] == rt.pid
    time.sleep(0.3)
    assert rt.poll() is None, rt.describe()
    assert "worker" in answer(rt, {"action": "ok"})
    record = rt.wait_for(
        lambda r: r.get("message") == "stop signal from the runtime's own process tree ignored"
    )
    assert record["signal"] == f"SIG{name}"
    if not via_child:
        assert record["senderPid"] == sent["worker"]


def test_a_stop_signal_from_outside_still_stops_it(runtime: StartRuntime, emu: Emulator) -> None:
    """SIGTERM from this (outside) process stops the runtime cleanly, exit 0."""
    rt = start_supervised(runtime, emu, APP)
    assert "worker" in answer(rt, {"action": "ok"})
    assert rt.stop(signal.SIGTERM) == 0
