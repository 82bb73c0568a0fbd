"""Lifecycle (issue 17): the internal extension and graceful shutdown, SnapStart
hooks, per-worker end hooks; the real process tree against the emulator."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import MakeEmulator, RuntimeProcess, StartRuntime, runtime_env, write_module_files

from lambda_bulkhead.emulator import Emulator, InvokeResult, ShutdownReport
from lambda_bulkhead.runtime_api._extension import ShutdownExtension

#: A handler module with the shutdown pattern AWS documents for Python: a
#: SIGTERM handler installed at import (it exits), and an atexit function.
#: Each writes a marker line (what, pid, monotonic time) to MARKERS.
SHUTDOWN_APP = r'''
import atexit, json, os, signal, sys, time

MARKERS = os.environ["MARKERS"]


def mark(what):
    with open(MARKERS, "a") as out:
        out.write(json.dumps({"what": what, "pid": os.getpid(), "at": time.monotonic()}) + "\n")


def on_sigterm(signum, frame):
    mark("sigterm")
    print(f"[runtime] SIGTERM received by {os.getpid()}")
    sys.exit(0)


signal.signal(signal.SIGTERM, on_sigterm)
atexit.register(mark, "atexit")
mark("import")


def handler(event, context):
    mark("invoke")
    if event.get("started"):
        open(event["started"], "w").close()
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid()}
'''


def _markers(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _by_pid(markers: list[dict[str, Any]], what: str) -> set[int]:
    return {m["pid"] for m in markers if m["what"] == what}


def _start(runtime: StartRuntime, emulator: Emulator, markers: Path, *,
           modules: dict[str, str] | None = None, **env: str) -> RuntimeProcess:
    return runtime(
        modules=modules or {"app.py": SHUTDOWN_APP}, emulator=emulator,
        isolation=env.pop("isolation", "process"),
        env={"MARKERS": str(markers), **env},
    )


def _shutdown(emulator: Emulator, rt: RuntimeProcess) -> ShutdownReport:
    rt.descendants()  # remembered: the fixture checks none is left
    return emulator.shutdown(rt.process)


def _template_pid(rt: RuntimeProcess) -> int:
    record = rt.wait_for(lambda r: r.get("message") == "runtime started", timeout=10)
    assert record is not None, rt.describe()
    pid: int = record["templatePid"]
    return pid


# -- graceful shutdown -------------------------------------------------------------


@pytest.mark.parametrize(
    ("isolation", "worker_start"),
    [("process", "fork"), ("process", "import"), ("none", "auto")],
)
def test_sigterm_handler_and_atexit_run_in_every_process_holding_the_module(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path, isolation: str, worker_start: str
) -> None:
    """At SIGTERM (sent because the extension registered), the handler module's
    SIGTERM handler and atexit function run in each process that imported it
    or was forked from one that did (the template and its workers; the one
    process in-process), and the runtime exits 0 before Lambda's SIGKILL."""
    markers = tmp_path / "markers"
    rt = _start(runtime, emulator, markers, isolation=isolation,
                BULKHEAD_WORKER_START=worker_start)
    answered = rt.invoke(b"{}")
    assert answered.kind == "response", rt.describe()
    served_by = json.loads(answered.body)["pid"]
    if isolation == "process":
        rt.wait_for(lambda r: r.get("message") == "runtime started", timeout=10)
        time.sleep(0.3)  # the spare worker is forked after the first answer
    report = _shutdown(emulator, rt)
    assert report.sigterm, rt.describe()
    assert not report.sigkill, rt.describe()
    assert report.returncode == 0, rt.describe()
    found = _markers(markers)
    holders = _by_pid(found, "import") | {served_by}
    if isolation == "process" and worker_start == "fork":
        assert _template_pid(rt) in _by_pid(found, "import")
    if isolation == "none":
        assert holders == {rt.pid}
    assert holders <= _by_pid(found, "sigterm"), found
    assert holders <= _by_pid(found, "atexit"), found
    # Each runs once per process, the SIGTERM handler first.
    for pid in _by_pid(found, "sigterm"):
        mine = [m["what"] for m in found if m["pid"] == pid and m["what"] in ("sigterm", "atexit")]
        assert mine == ["sigterm", "atexit"], found
    # What each SIGTERM handler printed is in the log, and the log was flushed to the end.
    rt.wait(5)
    printed = {r["message"] for r in rt.records() if "SIGTERM received" in str(r.get("message"))}
    if isolation == "none":  # not captured: plain stdout, as the official runtime
        printed = {line for line in rt.lines if "SIGTERM received" in line}
    assert len(printed) == len(_by_pid(found, "sigterm")), rt.describe()
    if isolation == "process":
        assert any(r.get("message") == "runtime stopped" for r in rt.records()), rt.describe()


PLAIN_APP = r'''
import os, time


def handler(event, context):
    if event.get("started"):
        open(event["started"], "w").close()
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid()}
'''


def _shut_down_during(
    emulator: Emulator, rt: RuntimeProcess, started: Path, *, sleep: float
) -> tuple[InvokeResult, ShutdownReport]:
    """Shut ``rt`` down while it runs an invocation that sleeps ``sleep`` s once
    it has written ``started``: that invocation's result, and the shutdown's."""
    results: list[InvokeResult] = []
    event = json.dumps({"started": str(started), "sleep": sleep}).encode()
    caller = threading.Thread(target=lambda: results.append(rt.invoke(event)))
    caller.start()
    _wait_for_file(started)
    report = _shutdown(emulator, rt)
    caller.join(10)
    assert results, rt.describe()
    return results[0], report


@pytest.mark.parametrize(
    ("isolation", "app"),
    [("process", SHUTDOWN_APP), ("process", PLAIN_APP), ("none", PLAIN_APP)],
    ids=["process-with-sigterm-handler", "process", "in-process"],
)
def test_an_invocation_in_flight_at_sigterm_gets_its_real_answer(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path, isolation: str, app: str
) -> None:
    """An invocation that finishes within the shutdown's grace is answered with
    its own result; the runtime then ends within Lambda's 500 ms."""
    rt = _start(runtime, emulator, tmp_path / "markers", modules={"app.py": app},
                isolation=isolation)
    result, report = _shut_down_during(emulator, rt, tmp_path / "started", sleep=0.05)
    assert result.kind == "response", rt.describe()
    assert report.exited_in_grace, rt.describe()
    assert report.returncode == 0, rt.describe()


def test_an_invocation_too_long_for_the_shutdown_is_answered_with_an_error(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path
) -> None:
    """An invocation still running when the grace ends gets an error, not silence."""
    rt = _start(runtime, emulator, tmp_path / "markers")
    result, report = _shut_down_during(emulator, rt, tmp_path / "started", sleep=30)
    assert result.kind == "error", rt.describe()
    error = json.loads(result.body)
    assert error["errorType"] == "Runtime.ExitError"
    assert "shut down (SIGTERM)" in error["errorMessage"]
    assert report.elapsed_s < 1.5, rt.describe()


STUBBORN_APP = r'''
import os, signal, subprocess, time

def on_sigterm(signum, frame):
    time.sleep(30)  # a SIGTERM handler that never finishes

signal.signal(signal.SIGTERM, on_sigterm)


def handler(event, context):
    # A child that ignores SIGTERM and outlives its invocation.
    subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60"])
    return {"pid": os.getpid()}
'''


def test_no_process_survives_1_5_s_after_sigterm(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path
) -> None:
    """SIGTERM handlers that hang and children that ignore SIGTERM do not keep
    anything of the runtime alive: 1.5 s after SIGTERM every process is gone."""
    rt = _start(runtime, emulator, tmp_path / "markers", modules={"app.py": STUBBORN_APP})
    assert rt.invoke(b"{}").kind == "response", rt.describe()
    time.sleep(0.3)  # the spare, and the child started
    seen = rt.descendants()
    assert len(seen) >= 3, seen  # template, worker, its child (and the spare)
    began = time.monotonic()
    report = _shutdown(emulator, rt)
    left = [p for p in seen if _alive_after(p, began + 1.5)]
    assert not left, (left, report)


def _alive_after(process: psutil.Process, when: float) -> bool:
    while time.monotonic() < when:
        if not _running(process):
            return False
        time.sleep(0.01)
    return _running(process)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_file(path: Path, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.005)


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_the_extension_registers_and_waits_before_the_first_poll(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path, isolation: str
) -> None:
    """register, then event/next (its own connection, left waiting), then /next."""
    rt = _start(runtime, emulator, tmp_path / "markers", isolation=isolation)
    assert emulator.wait_for_init(10), rt.describe()
    names = [call.name for call in emulator.calls]
    assert names[:3] == ["extension/register", "extension/event/next", "invocation/next"], names
    assert [e.name for e in emulator.extensions] == ["lambda-bulkhead"]


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_the_extension_can_be_turned_off(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path, isolation: str
) -> None:
    """BULKHEAD_SHUTDOWN_EXTENSION=0: nothing registered, so (as on Lambda)
    shutdown is a SIGKILL and no SIGTERM handler runs."""
    markers = tmp_path / "markers"
    rt = _start(runtime, emulator, markers, isolation=isolation, BULKHEAD_SHUTDOWN_EXTENSION="0")
    assert rt.invoke(b"{}").kind == "response", rt.describe()
    assert "extension/register" not in [call.name for call in emulator.calls]
    report = _shutdown(emulator, rt)
    assert not report.sigterm
    assert report.sigkill
    assert not _by_pid(_markers(markers), "sigterm")


# -- SnapStart -----------------------------------------------------------------------

SNAP_APP = r'''
import json, os, time

import lambda_bulkhead
from snapshot_restore_py import register_after_restore, register_before_snapshot

MARKERS = os.environ["MARKERS"]


def mark(what):
    with open(MARKERS, "a") as out:
        out.write(json.dumps({"what": what, "pid": os.getpid(), "at": time.monotonic()}) + "\n")


@register_before_snapshot
def registered_first():
    mark("before-snapshot-1")


@register_before_snapshot
def registered_second(failure=os.environ.get("FAIL_BEFORE")):
    mark("before-snapshot-2")
    if failure:
        raise RuntimeError(failure)


@register_after_restore
def reconnect(failure=os.environ.get("FAIL_AFTER")):
    mark("after-restore")
    if failure:
        raise ValueError(failure)


@lambda_bulkhead.on_worker_start
def worker_started():
    mark("worker-start")


def handler(event, context):
    return {"pid": os.getpid()}
'''

ISOLATIONS = [
    pytest.param({"isolation": "process", "BULKHEAD_WORKER_START": "fork"}, id="fork"),
    pytest.param({"isolation": "process", "BULKHEAD_WORKER_START": "import"}, id="import"),
    pytest.param({"isolation": "none"}, id="in-process"),
]


@pytest.mark.parametrize("settings", ISOLATIONS)
def test_snap_start_runs_the_hooks_around_restore_before_any_worker(
    runtime: StartRuntime, make_emulator: MakeEmulator, tmp_path: Path, settings: dict[str, str]
) -> None:
    """before-snapshot hooks (last registered first) -> restore/next -> the
    restore -> after-restore hooks -> a worker starts -> /next, in that order."""
    emulator = make_emulator(timeout_s=3.0, snap_start=True)
    markers = tmp_path / "markers"
    rt = _start(runtime, emulator, markers, modules={"app.py": SNAP_APP}, **settings)
    assert rt.invoke(b"{}").kind == "response", rt.describe()
    found = {m["what"]: m for m in _markers(markers)}
    calls = {call.name: call.at for call in reversed(emulator.calls)}  # each one's first
    order = [
        ("before-snapshot-2", found["before-snapshot-2"]["at"]),
        ("before-snapshot-1", found["before-snapshot-1"]["at"]),
        ("restore/next", calls["restore/next"]),
        ("restored", calls["restored"]),
        ("after-restore", found["after-restore"]["at"]),
        ("worker-start", found["worker-start"]["at"]),
        ("invocation/next", calls["invocation/next"]),
    ]
    assert order == sorted(order, key=lambda step: step[1]), order
    if settings.get("BULKHEAD_WORKER_START") == "fork":
        # Hooks in the template that imported the module; the worker forked after.
        assert found["after-restore"]["pid"] == found["before-snapshot-1"]["pid"]
        assert found["worker-start"]["pid"] != found["after-restore"]["pid"]


@pytest.mark.parametrize("settings", ISOLATIONS)
def test_a_failing_before_snapshot_hook_is_an_init_error(
    runtime: StartRuntime, make_emulator: MakeEmulator, tmp_path: Path, settings: dict[str, str]
) -> None:
    """Posted to /init/error as the official runtime does (header
    Runtime.BeforeSnapshotError, the exception in the body); exit 64, no restore."""
    emulator = make_emulator(timeout_s=3.0, snap_start=True)
    rt = runtime(modules={"app.py": SNAP_APP}, emulator=emulator, wait_for_poll=False,
                 isolation=settings.get("isolation"),
                 env={"MARKERS": str(tmp_path / "markers"), "FAIL_BEFORE": "no snapshot",
                      **{k: v for k, v in settings.items() if k != "isolation"}})
    assert rt.wait(20) == 64, rt.describe()
    [report] = emulator.init_errors
    assert report.error_type == "Runtime.BeforeSnapshotError"
    body = json.loads(report.body)
    assert (body["errorType"], body["errorMessage"]) == ("RuntimeError", "no snapshot")
    names = [call.name for call in emulator.calls]
    assert "restore/next" not in names
    assert "invocation/next" not in names


@pytest.mark.parametrize("settings", ISOLATIONS)
def test_a_failing_after_restore_hook_is_a_restore_error(
    runtime: StartRuntime, make_emulator: MakeEmulator, tmp_path: Path, settings: dict[str, str]
) -> None:
    """Posted to /restore/error (header Runtime.AfterRestoreError, the exception
    in the body); exit 65, and no worker ever starts."""
    emulator = make_emulator(timeout_s=3.0, snap_start=True)
    markers = tmp_path / "markers"
    rt = runtime(modules={"app.py": SNAP_APP}, emulator=emulator, wait_for_poll=False,
                 isolation=settings.get("isolation"),
                 env={"MARKERS": str(markers), "FAIL_AFTER": "stale credentials",
                      **{k: v for k, v in settings.items() if k != "isolation"}})
    assert rt.wait(20) == 65, rt.describe()
    [report] = emulator.restore_errors
    assert report.error_type == "Runtime.AfterRestoreError"
    body = json.loads(report.body)
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "stale credentials")
    assert "invocation/next" not in [call.name for call in emulator.calls]
    assert "worker-start" not in {m["what"] for m in _markers(markers)}


# -- per-worker end hooks ------------------------------------------------------------

END_APP = r'''
import json, os, signal, time

import lambda_bulkhead

MARKERS = os.environ["MARKERS"]


def mark(what):
    with open(MARKERS, "a") as out:
        out.write(json.dumps({"what": what, "pid": os.getpid(), "at": time.monotonic()}) + "\n")


@lambda_bulkhead.on_worker_end
def closed():
    mark("end")


def handler(event, context):
    if event.get("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid()}
'''


def _wait_for_marker(path: Path, what: str, pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pid in _by_pid(_markers(path), what):
            return True
        time.sleep(0.01)
    return False


def test_on_worker_end_runs_when_a_worker_is_recycled_or_shut_down_not_after_a_crash(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path
) -> None:
    """A worker recycled (BULKHEAD_MAX_INVOCATIONS) or stopped at shutdown runs
    its end hooks; one that crashed does not."""
    markers = tmp_path / "markers"
    rt = _start(runtime, emulator, markers, modules={"app.py": END_APP},
                BULKHEAD_MAX_INVOCATIONS="1")
    recycled = json.loads(rt.invoke(b"{}").body)["pid"]
    assert _wait_for_marker(markers, "end", recycled), rt.describe()
    crashed = rt.invoke(b'{"crash": true}')
    assert crashed.kind == "error", rt.describe()
    last = json.loads(rt.invoke(b"{}").body)["pid"]
    report = _shutdown(emulator, rt)
    assert report.exited_in_grace, rt.describe()
    ends = _by_pid(_markers(markers), "end")
    assert {recycled, last} <= ends
    [crash_report] = [record for record in rt.records()
                      if record.get("requestId") == crashed.request_id
                      and record.get("message") == "invocation report"]
    assert crash_report["workerPid"] not in ends


def test_on_worker_end_runs_at_shutdown_in_process(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path
) -> None:
    """--isolation none: the one process runs the end hooks when SIGTERM ends it."""
    markers = tmp_path / "markers"
    rt = _start(runtime, emulator, markers, modules={"app.py": END_APP}, isolation="none")
    assert rt.invoke(b"{}").kind == "response", rt.describe()
    report = _shutdown(emulator, rt)
    assert report.returncode == 0, rt.describe()
    assert _by_pid(_markers(markers), "end") == {rt.pid}


UNIQUE_APP = r'''
import os, random, socket

from snapshot_restore_py import register_after_restore

host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
# Opened at import: with SnapStart, before the snapshot.
connection = socket.create_connection((host, int(port)))
template_next = []


@register_after_restore
def peek_at_the_template():
    state = random.getstate()
    template_next.append(random.random())  # what the template would draw next
    random.setstate(state)


def handler(event, context):
    try:
        peeked = connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        held = "closed" if peeked == b"" else "data"
    except BlockingIOError:
        held = "live"
    except OSError as exc:
        held = f"unusable: {exc}"
    return {"connection": held, "random": random.random(), "templateNext": template_next}
'''


@pytest.mark.parametrize("snap_start", [True, False], ids=["snap-start", "on-demand"])
def test_workers_carry_no_pre_snapshot_state_that_must_be_unique(
    runtime: StartRuntime, make_emulator: MakeEmulator, tmp_path: Path, snap_start: bool
) -> None:
    """With SnapStart, no worker keeps a connection the import opened before the
    snapshot (on demand, the first worker does), and none draws the random
    numbers the template would."""
    emulator = make_emulator(timeout_s=3.0, snap_start=snap_start)
    rt = _start(runtime, emulator, tmp_path / "markers", modules={"app.py": UNIQUE_APP},
                BULKHEAD_WORKER_START="fork")
    answered = json.loads(rt.invoke(b"{}").body)
    assert answered["connection"] == ("closed" if snap_start else "live"), answered
    if snap_start:
        [template_next] = answered["templateNext"]
        assert answered["random"] != template_next


def test_shutdown_side_by_side_with_awslambdaric(
    runtime: StartRuntime, make_emulator: MakeEmulator, task_root: Path, tmp_path: Path
) -> None:
    """The official runtime registers no extension.  Given one (here the test's),
    Lambda's SIGTERM reaches it, but while it waits for an event its native
    client holds the main thread: the module's SIGTERM handler never runs, nor
    its atexit function, and SIGKILL ends it 500 ms later.  lambda-bulkhead
    (in-process here, the same process layout) runs both and exits 0."""
    official_markers, ours_markers = tmp_path / "official", tmp_path / "ours"
    emulator = make_emulator(timeout_s=3.0)
    write_module_files(task_root, {"app.py": SHUTDOWN_APP})
    extension = ShutdownExtension.register(_endpoint(emulator))
    official = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "app.handler"], cwd=task_root,
        env=runtime_env(emulator, task_root, {"MARKERS": str(official_markers)}),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert emulator.invoke(b"{}", timeout=20).kind == "response"
        # Waiting for the next event (between invocations, where shutdown comes).
        assert emulator.wait_for_next_poll(10)
        time.sleep(0.05)  # into its native client's wait
        report = emulator.shutdown(official)
    finally:
        extension.close()
        if official.poll() is None:
            official.kill()
    assert report.sigterm
    assert report.sigkill
    assert {m["what"] for m in _markers(official_markers)} == {"import", "invoke"}

    emulator = make_emulator(timeout_s=3.0)
    rt = _start(runtime, emulator, ours_markers, isolation="none")
    assert rt.invoke(b"{}").kind == "response", rt.describe()
    report = _shutdown(emulator, rt)
    assert not report.sigkill
    assert report.returncode == 0
    ours = _markers(ours_markers)
    assert [m["what"] for m in ours if m["what"] in ("sigterm", "atexit")] == ["sigterm", "atexit"]
    assert _by_pid(ours, "sigterm") == {rt.pid}


def _endpoint(emulator: Emulator) -> tuple[str, int]:
    host, _, port = emulator.function_env()["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    return host, int(port)


def test_a_refused_registration_is_logged_and_the_runtime_serves(
    runtime: StartRuntime, emulator: Emulator, tmp_path: Path
) -> None:
    """An extension registered after init is refused (403, as Lambda does): the
    runtime says so once and serves anyway (shutdown is then a SIGKILL)."""
    host, port = _endpoint(emulator)
    early = socket.create_connection((host, port))  # another runtime's /next ends init
    try:
        early.sendall(f"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {host}\r\n\r\n"
                      .encode())
        assert emulator.wait_for_next_poll(10)
        rt = _start(runtime, emulator, tmp_path / "markers")
        refused = rt.wait_for(
            lambda r: str(r.get("message", "")).startswith("shutdown extension not registered"),
            timeout=10,
        )
        assert refused is not None, rt.describe()
        assert refused["level"] == "WARNING"
        assert "403" in refused["error"]
        assert emulator.wait_for_next_poll(10, polls=2), rt.describe()  # it serves
        assert emulator.extensions == []
    finally:
        early.close()
