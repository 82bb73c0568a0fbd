"""Crash isolation end to end: a real supervisor, template and forked workers
driven by the emulator over loopback, with handlers that crash in every way.

Each runtime serves :data:`_supervised.APP`, a handler that misbehaves as the
event asks; after every failure a normal invocation checks that the same
runtime (same supervisor, same template) still serves.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _supervised import (
    APP,
    Runtimes,
    act,
    body,
    group_members,
    is_alive,
    leftovers,
    records,
    report,
    started_record,
    wait_for_descendants,
    wait_until_gone,
    wait_until_group_gone,
)
from conftest import MakeEmulator, RuntimeProcess, runtime_env

from lambda_bulkhead.emulator import Emulator, InvokeResult
from lambda_bulkhead.supervisor._policy import RestartPolicy, recycle_after


def exit_message(request_id: str, words: str) -> str:
    return f"RequestId: {request_id} Error: Runtime exited with error: {words}"


def frame_lines(stack: list[str]) -> list[str]:
    return [line for line in stack if line.lstrip().startswith("File ")]


def posted(emulator: Emulator, request_id: str) -> list[Any]:
    return [answer for answer in emulator.answers if answer.request_id == request_id]


def assert_still_serving(rt: RuntimeProcess, template_pid: int, old_pid: int | None) -> int:
    """A normal invocation succeeds in the same runtime; returns the worker pid that served it."""
    result = act(rt, "ok")
    assert result.kind == "response", rt.describe()
    pid: int = body(result)["pid"]
    if old_pid is not None:
        assert pid != old_pid  # the crashed worker was replaced
    assert rt.poll() is None
    assert is_alive(template_pid)  # no re-import: the same template forked the replacement
    assert report(rt, result.request_id)["workerPid"] == pid
    return pid


def first_pid(rt: RuntimeProcess) -> tuple[int, int]:
    """(template pid, pid of the worker serving now)."""
    result = act(rt, "ok")
    assert result.kind == "response", rt.describe()
    return started_record(rt)["templatePid"], body(result)["pid"]


# -- the failure table ----------------------------------------------------------------


def test_exception_is_reported_and_the_worker_keeps_serving(
    rt: RuntimeProcess, emulator: Emulator
) -> None:
    """A raised exception: class name, message, clean stack, chained cause; same worker after."""
    template_pid, pid = first_pid(rt)
    result = act(rt, "raise")
    assert result.kind == "error"
    error = body(result)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "boom"
    assert error["requestId"] == result.request_id
    stack = error["stackTrace"]
    assert stack[0].startswith('  File "')
    assert "app.py" in stack[0]
    assert "in handler" in stack[0]
    assert 'raise ValueError("boom") from exc' in stack[0]
    assert all("lambda_bulkhead" not in line for line in stack)
    (cause,) = error["causes"]
    assert (cause["errorType"], cause["errorMessage"]) == ("KeyError", "'k'")
    assert "in inner" in cause["stackTrace"][-1]
    (answer,) = posted(emulator, result.request_id)
    assert answer.call == "error"
    assert answer.error_type == "Function.ValueError"
    summary = report(rt, result.request_id)
    assert summary["outcome"] == "error"
    assert summary["errorType"] == "ValueError"
    assert summary["workerPid"] == pid
    assert summary["workerReplaced"] is False
    assert assert_still_serving(rt, template_pid, None) == pid


@pytest.mark.parametrize(
    ("action", "fields", "words"),
    [
        ("exit", {"code": 3}, "exit status 3"),
        ("exit", {"code": 0}, "exit status 0"),
        ("kbi", {}, "KeyboardInterrupt"),
        ("base", {}, "CustomBaseException"),
    ],
)
def test_exit_and_base_exceptions_are_exit_errors_and_replace_the_worker(
    rt: RuntimeProcess, emulator: Emulator, action: str, fields: dict[str, Any], words: str
) -> None:
    """sys.exit, KeyboardInterrupt, another BaseException: Runtime.ExitError, worker replaced."""
    template_pid, pid = first_pid(rt)
    result = act(rt, action, **fields)
    assert result.kind == "error"
    error = body(result)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == exit_message(result.request_id, words)
    assert "in handler" in error["stackTrace"][-1], "the stack ends where the handler exited"
    assert not any("lambda_bulkhead" in line for line in error["stackTrace"])
    (answer,) = posted(emulator, result.request_id)
    assert answer.error_type == "Runtime.ExitError"
    summary = report(rt, result.request_id)
    assert summary["workerPid"] == pid
    assert summary["workerReplaced"] is True
    assert_still_serving(rt, template_pid, pid)
    assert wait_until_gone([pid]) == []


@pytest.mark.parametrize(
    ("action", "fields", "words", "signame", "function"),
    [
        ("segv", {}, "signal: segmentation fault", "SIGSEGV", "crash_here"),
        ("abort", {}, "signal: aborted", "SIGABRT", "handler"),
        ("signal", {"signal": "SIGBUS"}, "signal: bus error", "SIGBUS", "handler"),
        ("signal", {"signal": "SIGKILL"}, "signal: killed", "SIGKILL", None),
        ("signal", {"signal": "SIGTERM"}, "signal: terminated", "SIGTERM", None),
        ("_exit", {"code": 7}, "exit status 7", None, None),
    ],
)
def test_a_dying_worker_is_answered_in_lambdas_words_and_replaced(
    rt: RuntimeProcess,
    emulator: Emulator,
    action: str,
    fields: dict[str, Any],
    words: str,
    signame: str | None,
    function: str | None,
) -> None:
    """Segfault, abort, bus error, kill, os._exit: Runtime.ExitError as Lambda words it."""
    template_pid, pid = first_pid(rt)
    result = act(rt, action, **fields)
    assert result.kind == "error", rt.describe()
    error = body(result)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == exit_message(result.request_id, words)
    stack = error["stackTrace"]
    if function is None:
        assert stack == []
    else:  # faulthandler's traceback of the crashing thread, the runtime's frames left out
        frames = frame_lines(stack)
        assert any("app.py" in line and f"in {function}" in line for line in frames), stack
        assert not any("lambda_bulkhead" in line or "<frozen runpy>" in line for line in frames)
    (answer,) = posted(emulator, result.request_id)
    assert answer.error_type == "Runtime.ExitError"
    summary = report(rt, result.request_id)
    assert summary["outcome"] == "crash"
    assert summary.get("signal") == signame
    assert summary["workerPid"] == pid
    assert summary["workerReplaced"] is True
    assert summary["level"] == "ERROR"
    assert_still_serving(rt, template_pid, pid)
    assert wait_until_gone([pid]) == []


@pytest.mark.parametrize("then", ["segv", "exit", "_exit"])
def test_a_crash_leaving_threads_and_grandchildren_takes_the_whole_group(
    rt: RuntimeProcess, then: str
) -> None:
    """A handler that starts a thread, a subprocess and a fork, then dies: nothing survives."""
    template_pid, _ = first_pid(rt)
    result = act(rt, "leak", then=then)
    assert result.kind == "error"
    assert body(result)["errorType"] == "Runtime.ExitError"
    leak = rt.wait_for(lambda r: str(r.get("message", "")).startswith("leak "))
    assert leak["requestId"] == result.request_id
    worker, sleeper, forked = map(int, leak["message"].split()[1:])
    assert wait_until_gone([worker, sleeper, forked]) == []
    assert wait_until_group_gone(worker) == []
    assert_still_serving(rt, template_pid, worker)


def test_an_exception_message_with_undecodable_bytes_is_reported(rt: RuntimeProcess) -> None:
    """A lone surrogate (a surrogateescape'd file name) in a message does not break the answer."""
    template_pid, pid = first_pid(rt)
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    result = act(rt, "raise_text", text=f"bad file {name}")
    assert result.kind == "error", rt.describe()
    error = body(result)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == f"bad file {name}"
    assert assert_still_serving(rt, template_pid, None) == pid


# -- init --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "words", "function"),
    [
        ("import ctypes\n\ndef boom():\n    ctypes.string_at(0)\n\nboom()\n",
         "signal: segmentation fault", "boom"),
        ("import os\nos._exit(9)\n", "exit status 9", None),
        ("import sys\nsys.exit(4)\n", "exit status 4", None),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "signal: killed", None),
    ],
)
def test_a_crash_while_importing_the_handler_is_an_init_error(
    runtimes: Runtimes, emulator: Emulator, source: str, words: str, function: str | None
) -> None:
    """A handler module that dies at import: /init/error, exit non-zero, no /next polled."""
    module = source + "\ndef handler(event, context):\n    return 1\n"
    rt = runtimes.start("bad.handler", modules={"bad.py": module}, wait_for_poll=False)
    assert rt.wait() != 0
    (init_error,) = emulator.init_errors
    assert init_error.error_type == "Runtime.ExitError"
    error = json.loads(init_error.body)
    assert error["errorType"] == "Runtime.ExitError"
    assert f"Runtime exited with error: {words}" in error["errorMessage"]
    if function is not None:
        assert any("bad.py" in line and f"in {function}" in line for line in error["stackTrace"])
    assert emulator.deliveries == []
    assert emulator.invoke(b"{}", timeout=10).status == 502  # every invoke gets the init error
    assert leftovers(rt) == []


# -- the restart-storm guard ------------------------------------------------------------


def test_a_handler_that_crashes_on_every_event_makes_the_runtime_give_up(
    rt: RuntimeProcess, emulator: Emulator
) -> None:
    """Every crash is answered, back-off grows as RestartPolicy says, then the runtime exits 1."""
    policy = RestartPolicy()
    for _ in range(policy.give_up_after):
        result = act(rt, "segv")
        assert result.kind == "error"
        assert "signal: segmentation fault" in body(result)["errorMessage"]
    queued = emulator.submit(b'{"action": "ok"}')
    assert rt.wait(timeout=30) == 1
    backoffs = [(r["crashes"], r["delaySeconds"]) for r in records(rt, "restart back-off")]
    expected = [(n, policy.delay(n)) for n in range(policy.give_up_after)]
    assert backoffs == [(n, delay) for n, delay in expected if delay]
    assert records(rt, "fatal runtime error; exiting")
    assert not queued.done()  # never taken: the runtime gave up before polling again
    assert len(emulator.deliveries) == policy.give_up_after
    emulator.runtime_exited("exit status 1")  # what Lambda does next: the invoke fails, re-init
    assert queued.result(timeout=10).kind == "exit"
    assert leftovers(rt) == []


def test_a_completed_invocation_resets_the_crash_count(rt: RuntimeProcess) -> None:
    """Crashes, a success, crashes: the back-off count starts again from zero."""
    policy = RestartPolicy()
    free = policy.free_restarts
    for _ in range(free + 2):
        assert act(rt, "segv").kind == "error"
    assert act(rt, "ok").kind == "response"
    for _ in range(free + 1):
        assert act(rt, "segv").kind == "error"
    assert act(rt, "ok").kind == "response"
    counts = [r["crashes"] for r in records(rt, "restart back-off")]
    assert counts == [free + 1, free + 2, free + 1]
    assert rt.poll() is None


# -- shutdown and orphans ----------------------------------------------------------------


def test_sigterm_lets_an_invocation_finishing_within_the_grace_answer(
    rt: RuntimeProcess, emulator: Emulator, tmp_path: Path
) -> None:
    """SIGTERM while a handler runs; it finishes within the grace: its real answer is posted."""
    gate = tmp_path / "finish"
    future = emulator.submit(json.dumps({"action": "wait_file", "path": str(gate)}).encode())
    rt.wait_for(lambda r: r.get("message") == "started")
    rt.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    assert not future.done()
    gate.touch()
    result = future.result(timeout=10)
    assert (result.kind, result.body) == ("response", b'"finished"')
    assert rt.wait(timeout=10) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_answers_an_unfinished_invocation_and_exits_promptly(
    rt: RuntimeProcess, emulator: Emulator, signum: int
) -> None:
    """SIGTERM/SIGINT while a handler sleeps on: an error answer, exit 0 at once, no survivors."""
    future = emulator.submit(b'{"action": "grandchild_sleep"}')
    started = rt.wait_for(lambda r: str(r.get("message", "")).startswith("started "))
    grandchild = int(started["message"].split()[1])
    processes = [p.pid for p in rt.descendants()]
    assert grandchild in processes
    sent = time.monotonic()
    rt.send_signal(signum)
    status = rt.wait(timeout=10)
    took = time.monotonic() - sent
    assert status == 0
    assert took < 3.0, f"took {took:.2f} s to exit"  # the grace is 0.2 s; Lambda allows 0.3-0.5
    result = future.result(timeout=5)
    assert result.kind == "error"
    error = body(result)
    assert error["errorType"] == "Runtime.ExitError"
    assert "before the invocation finished" in error["errorMessage"]
    assert len(posted(emulator, result.request_id)) == 1
    assert wait_until_gone(processes) == []
    assert records(rt, "runtime stopped")


def test_sigterm_while_idle_reaps_every_process(rt: RuntimeProcess) -> None:
    """A normal shutdown leaves no template, worker or spare behind."""
    first_pid(rt)
    processes = wait_for_descendants(rt, 3)  # template, the slot's worker, the spare
    assert rt.stop(signal.SIGTERM) == 0
    assert wait_until_gone(processes) == []
    assert all(wait_until_group_gone(pid, timeout=0.5) == [] for pid in processes)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_a_sigkilled_supervisor_leaves_no_template_or_workers(
    rt: RuntimeProcess, emulator: Emulator, busy: bool
) -> None:
    """SIGKILL the supervisor: the template and its workers notice and exit on their own."""
    first_pid(rt)
    if busy:
        emulator.submit(b'{"action": "sleep", "seconds": 60}')
        rt.wait_for(lambda r: r.get("message") == "started")
    processes = wait_for_descendants(rt, 3)  # template, a worker (busy or idle), the spare
    rt.send_signal(signal.SIGKILL)
    assert rt.wait(timeout=10) == -signal.SIGKILL
    assert wait_until_gone(processes, timeout=3.0) == []


def test_a_sigkilled_supervisor_takes_a_busy_handlers_grandchild_down(
    rt: RuntimeProcess, emulator: Emulator
) -> None:
    """SIGKILL the supervisor mid-invocation: the template kills every worker's
    process group on its way out, so the handler's own child goes too."""
    first_pid(rt)
    emulator.submit(b'{"action": "grandchild_sleep"}')
    line = rt.wait_for(lambda r: str(r.get("message", "")).startswith("started "))
    grandchild = int(str(line["message"]).split()[1])
    processes = wait_for_descendants(rt, 4)  # template, busy worker, its sleep, the spare
    rt.send_signal(signal.SIGKILL)
    assert rt.wait(timeout=10) == -signal.SIGKILL
    assert wait_until_gone([*processes, grandchild], timeout=3.0) == []


def test_a_worker_killed_while_idle_is_replaced_before_the_next_invocation(
    rt: RuntimeProcess,
) -> None:
    """A worker that dies between invocations costs no invocation: the spare takes over."""
    template_pid, pid = first_pid(rt)
    os.kill(pid, signal.SIGKILL)
    assert wait_until_gone([pid]) == []
    new_pid = assert_still_serving(rt, template_pid, pid)
    replaced = records(rt, "worker replaced")
    assert [(r["pid"], r["reason"]) for r in replaced] == [(pid, "died while idle")]
    assert new_pid != pid


def test_a_template_killed_from_outside_is_re_created(rt: RuntimeProcess) -> None:
    """Its workers follow it; the runtime imports the handler again in a new
    template, logs it, and serves on."""
    template_pid, _ = first_pid(rt)
    processes = wait_for_descendants(rt, 3)
    os.kill(template_pid, signal.SIGKILL)
    rt.wait_for(lambda r: r.get("message") == "template process re-created")
    assert wait_until_gone(processes, timeout=3.0) == []
    result = act(rt, "ok")
    assert result.kind == "response", rt.describe()
    assert rt.poll() is None
    assert records(rt, "template process died; re-creating it (the handler is imported again)")
    # Forked from a supervisor that is serving: none of its Runtime API
    # connections (nor any other fd of its) reached the new workers.
    assert body(act(rt, "connections")) == []


def test_a_handler_killing_its_template_gets_an_answer_and_the_runtime_serves_on(
    rt: RuntimeProcess,
) -> None:
    """The handler SIGKILLs its parent: that invocation is answered Runtime.ExitError
    (its worker went with the template), the template is re-created, and the next
    invocation is answered: no exit, no cold start for Lambda."""
    result = act(rt, "kill_template")
    assert result.kind == "error", rt.describe()
    assert body(result)["errorType"] == "Runtime.ExitError"
    following = act(rt, "ok")
    assert following.kind == "response", rt.describe()
    assert rt.poll() is None


def _on_second_import(statement: str) -> str:
    """The test handler's module, running ``statement`` when imported again."""
    return APP + (
        "\nimport pathlib as _pathlib\n"
        "_marker = _pathlib.Path(__file__).with_name('imported-once')\n"
        "if _marker.exists():\n"
        f"    {statement}\n"
        "_marker.touch()\n"
    )


def test_a_stop_signal_is_served_while_a_template_is_re_imported(
    runtimes: Runtimes,
) -> None:
    """SIGTERM while the re-created template is still importing (a slow import)
    stops the runtime at once, with nothing left behind."""
    rt = runtimes.start(modules={"app.py": _on_second_import("time.sleep(60)")})
    template_pid, _ = first_pid(rt)
    os.kill(template_pid, signal.SIGKILL)
    rt.wait_for(lambda r: r.get("message", "").startswith("template process died"))
    started = time.monotonic()
    assert rt.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 3
    assert leftovers(rt) == []


def test_a_template_that_cannot_be_re_created_ends_the_runtime(
    runtimes: Runtimes,
) -> None:
    """The handler's module dies when imported a second time: the runtime says so
    and exits 1 so that Lambda re-initialises the environment."""
    module = _on_second_import("os.kill(os.getpid(), signal.SIGKILL)")
    rt = runtimes.start(modules={"app.py": module})
    template_pid, _ = first_pid(rt)
    os.kill(template_pid, signal.SIGKILL)
    assert rt.wait(timeout=15) == 1
    assert records(rt, "template process cannot be re-created; exiting so Lambda re-initialises")


def _on_first_fork(hook: str, statement: str) -> str:
    """The test handler's module, running ``statement`` in ``hook``
    (``os.register_at_fork``) of the template's first fork only."""
    return APP + (
        "\nimport os as _os, pathlib as _pathlib\n"
        "_marker = _pathlib.Path(__file__).with_name('forked-once')\n"
        "def _once():\n"
        "    if not _marker.exists():\n"
        "        _marker.touch()\n"
        f"        {statement}\n"
        f"_os.register_at_fork({hook}=_once)\n"
    )


def test_a_template_dying_before_its_first_worker_is_re_created_and_serves(
    runtimes: Runtimes,
) -> None:
    """The template dies right after saying it is ready, before it answers the
    first worker's request: the runtime re-creates it, and the first invocation
    is served by a worker of the new one."""
    rt = runtimes.start(modules={"app.py": _on_first_fork("after_in_parent", "_os._exit(9)")})
    assert rt.invoke(b'{"action": "ok"}').kind == "response", rt.describe()
    rt.wait_for(lambda r: r.get("message") == "template process re-created")


def test_a_worker_forked_ahead_that_dies_is_replaced_by_a_fork(runtimes: Runtimes) -> None:
    """The worker the template forks as soon as it is ready dies before it is
    asked for (the template waits 0.2 s after that fork: long enough): the first
    request forks another, which serves."""
    module = _on_first_fork("after_in_child", "_os._exit(9)") + (
        "_parent_marker = _pathlib.Path(__file__).with_name('waited-once')\n"
        "def _wait_once():\n"
        "    if not _parent_marker.exists():\n"
        "        _parent_marker.touch()\n"
        "        __import__('time').sleep(0.2)\n"
        "_os.register_at_fork(after_in_parent=_wait_once)\n"
    )
    rt = runtimes.start(modules={"app.py": module})
    assert rt.invoke(b'{"action": "ok"}').kind == "response", rt.describe()
    assert (Path(rt.cwd) / "forked-once").exists()  # the worker forked ahead did die
    started_record(rt)
    assert not [r for r in rt.records() if "template process" in r.get("message", "")]


GC_STATE = (
    "import gc\n"
    "AT_IMPORT = gc.isenabled()\n"
    "{statement}\n"
    "def handler(event, context):\n"
    "    return {{'atImport': AT_IMPORT, 'now': gc.isenabled()}}\n"
)


@pytest.mark.parametrize(("statement", "expected"), [("", True), ("gc.disable()", False)],
                         ids=["as-python-starts-it", "turned-off-by-the-module"])
def test_the_handler_sees_the_garbage_collector_as_it_left_it(
    runtimes: Runtimes, statement: str, expected: bool
) -> None:
    """The runtime turns the collector off for its own start-up only: the handler's
    module is imported with it on, and what the module sets holds in the workers."""
    rt = runtimes.start(modules={"app.py": GC_STATE.format(statement=statement)})
    seen = json.loads(rt.invoke(b"{}").body)
    assert seen == {"atImport": True, "now": expected}


def test_start_called_with_the_collector_off_leaves_it_off(
    script: Callable[[str], RuntimeProcess],
) -> None:
    """``start()`` from a process that turned the collector off: its workers run
    the handler with it off, as the caller left it."""
    proc = script("""
        import gc
        from lambda_bulkhead import start

        gc.disable()

        def handler(payload, context):
            return b"on" if gc.isenabled() else b"off"

        start(handler)
    """)
    result = proc.invoke(b"x", content_type="application/octet-stream")
    assert result.body == b"off", proc.describe()


# -- payloads -------------------------------------------------------------------------


def test_a_5_mb_event_reaches_the_worker_whole(rt: RuntimeProcess) -> None:
    """A 5 MB event crosses the invoke pipe intact."""
    import hashlib  # noqa: PLC0415

    data = random.Random(5).randbytes(5 * 1024 * 1024 // 2).hex()
    result = act(rt, "digest", data=data)
    assert result.kind == "response", rt.describe()
    assert body(result) == {
        "size": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()
    }


def test_a_5_mb_result_comes_back_whole(rt: RuntimeProcess) -> None:
    """A 5 MB result crosses the result pipe intact."""
    size = 5 * 1024 * 1024
    result = act(rt, "big", seed=7, size=size)
    assert result.kind == "response", rt.describe()
    assert body(result) == random.Random(7).randbytes(size // 2).hex()


def test_a_7_mb_result_is_too_large_and_the_worker_keeps_serving(rt: RuntimeProcess) -> None:
    """A result over Lambda's 6 MB: Function.ResponseSizeTooLarge, same worker after."""
    template_pid, pid = first_pid(rt)
    result = act(rt, "big", seed=1, size=7 * 1024 * 1024)
    assert result.kind == "error"
    error = body(result)
    assert error["errorType"] == "Function.ResponseSizeTooLarge"
    assert "exceeded maximum allowed payload size" in error["errorMessage"]
    assert report(rt, result.request_id)["workerReplaced"] is False
    assert assert_still_serving(rt, template_pid, None) == pid


# -- a worker that corrupts its result pipe ----------------------------------------------


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("garbage", "frame version"),
        ("huge_prefix", "maximum"),
        ("other_id", "unexpected answer"),
    ],
)
def test_a_worker_writing_garbage_on_its_result_pipe_is_replaced(
    rt: RuntimeProcess, action: str, reason: str
) -> None:
    """Garbage, a huge length prefix, another request's answer: the worker is cut off."""
    template_pid, pid = first_pid(rt)
    result = act(rt, action)
    assert result.kind == "error"
    error = body(result)
    assert error["errorType"] == "Runtime.ExitError"
    assert "worker protocol violation" in error["errorMessage"]
    assert reason in error["errorMessage"]
    assert [r["pid"] for r in records(rt, "worker protocol violation")] == [pid]
    assert_still_serving(rt, template_pid, pid)
    assert wait_until_gone([pid]) == []


def test_a_frame_that_never_ends_is_cut_off_at_the_deadline(
    runtimes: Runtimes, make_emulator: MakeEmulator
) -> None:
    """A length prefix whose body never comes: the deadline still ends the invocation."""
    emulator = make_emulator(timeout_s=1.5)
    rt = runtimes.start(emulator=emulator)
    template_pid, pid = first_pid(rt)
    result = act(rt, "endless_frame")
    assert result.kind == "error"
    assert body(result)["errorType"] == "Sandbox.Timedout"
    assert_still_serving(rt, template_pid, pid)


# -- exactly one answer ----------------------------------------------------------------

_EXPECTED = {
    "ok": ("response", None),
    "raise": ("error", "boom"),
    "exit": ("error", "exit status 3"),
    "segv": ("error", "signal: segmentation fault"),
    "abort": ("error", "signal: aborted"),
}


@pytest.mark.soak
def test_exactly_one_answer_per_invocation_over_mixed_crashes(
    runtimes: Runtimes, emulator: Emulator
) -> None:
    """300 invocations mixing success, exception, sys.exit, segfault, abort on 2 workers."""
    rt = runtimes.start(env={"BULKHEAD_WORKERS": "2"})
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    actions = [rng.choice(sorted(_EXPECTED)) for _ in range(300)]
    futures = [
        emulator.submit(json.dumps({"action": action, "n": n}).encode())
        for n, action in enumerate(actions)
    ]
    results: list[InvokeResult] = [future.result(timeout=90) for future in futures]
    for n, (action, result) in enumerate(zip(actions, results, strict=True)):
        kind, words = _EXPECTED[action]
        assert result.kind == kind, (seed, n, action, result)
        if kind == "response":
            assert body(result)["n"] == n
            assert body(result)["requestId"] == result.request_id
        else:
            assert words is not None
            assert words in body(result)["errorMessage"], (seed, n, action, result)
            assert body(result)["requestId"] == result.request_id
    counts: dict[str, int] = {}
    for answer in emulator.answers:
        assert answer.status == 202, answer
        counts[answer.request_id] = counts.get(answer.request_id, 0) + 1
    assert counts == {result.request_id: 1 for result in results}, f"seed {seed}"
    assert rt.poll() is None


# -- recycling ---------------------------------------------------------------------------


def test_workers_are_recycled_after_max_invocations(runtimes: Runtimes) -> None:
    """BULKHEAD_MAX_INVOCATIONS=3: a fresh worker every third invocation."""
    rt = runtimes.start(env={"BULKHEAD_MAX_INVOCATIONS": "3"})
    results = [act(rt, "ok") for _ in range(7)]
    pids = [body(result)["pid"] for result in results]
    assert pids[0:3] == [pids[0]] * 3
    assert pids[3:6] == [pids[3]] * 3
    assert len({pids[0], pids[3], pids[6]}) == 3
    replaced = [report(rt, result.request_id)["workerReplaced"] for result in results]
    assert replaced == [False, False, True, False, False, True, False]
    assert [r["reason"] for r in records(rt, "worker replaced")] == ["recycled", "recycled"]


def test_recycling_jitter_stays_within_ten_percent(runtimes: Runtimes) -> None:
    """BULKHEAD_MAX_INVOCATIONS=20: each worker serves 20 or 21 (20 + up to 10 %) invocations."""
    rt = runtimes.start(env={"BULKHEAD_MAX_INVOCATIONS": "20"})
    pids = [body(act(rt, "ok"))["pid"] for _ in range(70)]
    runs: list[int] = []
    for index, pid in enumerate(pids):
        if index and pid == pids[index - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    complete = runs[:-1]
    most = recycle_after(20, 0.999999)
    assert most == 21
    assert len(complete) >= 2
    assert all(20 <= run <= most for run in complete), runs
    assert len(set(pids)) == len(runs)  # a recycled worker never comes back


# -- in-process mode ---------------------------------------------------------------------


@pytest.mark.parametrize("action", ["const", "raise", "raise_text"])
def test_in_process_mode_answers_like_supervised_mode(
    runtimes: Runtimes, make_emulator: MakeEmulator, action: str
) -> None:
    """--isolation none gives the same answer as a worker for a success and an exception."""
    answers = []
    for isolation in ("process", "none"):
        emulator = make_emulator(timeout_s=3.0)
        rt = runtimes.start(emulator=emulator, isolation=isolation)
        result = act(rt, action, text="bad file caf\udce9")
        error = json.loads(result.body)
        if isinstance(error, dict):
            error.pop("requestId", None)
        answers.append((result.kind, error))
        rt.stop()
    assert answers[0] == answers[1]


def test_in_process_segfault_kills_the_runtime(
    runtimes: Runtimes, emulator: Emulator
) -> None:
    """--isolation none: a segfault ends the runtime, no answer is posted, the invoke gets 502."""
    rt = runtimes.start(isolation="none")
    assert act(rt, "const").kind == "response"
    future = emulator.submit(b'{"action": "segv"}')
    assert rt.wait(timeout=10) == -signal.SIGSEGV
    assert len(emulator.answers) == 1  # only the first invocation's
    emulator.runtime_exited("signal: segmentation fault")  # what Lambda (and `invoke`) does
    result = future.result(timeout=10)
    assert (result.kind, result.status) == ("exit", 502)
    assert body(result)["errorMessage"] == exit_message(
        result.request_id, "signal: segmentation fault"
    )


def test_cli_invoke_in_process_segfault_is_a_runtime_exit_error(
    write_modules: Any, task_root: Path, tmp_path: Path
) -> None:
    """`lambda-bulkhead invoke --isolation none` on a segfault prints Lambda's ExitError."""
    from _supervised import APP  # noqa: PLC0415

    write_modules({"app.py": APP})
    event = tmp_path / "event.json"
    event.write_text('{"action": "segv"}')
    completed = subprocess.run(
        [sys.executable, "-m", "lambda_bulkhead", "invoke", "app.handler",
         "--isolation", "none", "--event", str(event), "--timeout", "10"],
        cwd=task_root, env=runtime_env(None, task_root), capture_output=True, timeout=60,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr.decode()
    error = json.loads(completed.stdout)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith(
        "Error: Runtime exited with error: signal: segmentation fault"
    )


def test_supervised_mode_pgids_are_per_worker(rt: RuntimeProcess) -> None:
    """Each worker leads its own process group (so killpg takes only its family)."""
    template_pid, pid = first_pid(rt)
    assert os.getpgid(pid) == pid
    assert os.getpgid(template_pid) != pid
    assert group_members(pid) == [pid]


CLOSING_APP = """
import os
import subprocess


def handler(event, context):
    if event.get("close"):
        if event.get("child"):
            subprocess.Popen(["sleep", "30"])  # holds the stdout pipe open
        os.close(event["close"])
        return {"pid": os.getpid()}
    print("still heard", event["tag"])
    return {"pid": os.getpid()}
"""


@pytest.mark.parametrize("child", [False, True], ids=["alone", "child-holds-the-pipe"])
@pytest.mark.parametrize("fd", [1, 2])
def test_a_handler_closing_its_stdout_or_stderr_gets_its_worker_replaced(
    runtimes: Runtimes, fd: int, child: bool
) -> None:
    """A handler that closes fd 1 or 2 is answered, its worker replaced, and the
    next invocation's output is logged, also when a process it started keeps
    the pipe open (so the supervisor never sees it end)."""
    rt = runtimes.start(modules={"app.py": CLOSING_APP})
    closed = rt.invoke(json.dumps({"close": fd, "child": child}))
    assert closed.kind == "response", rt.describe()
    assert report(rt, closed.request_id)["workerReplaced"] is True
    after = rt.invoke(json.dumps({"tag": "after"}))
    assert after.kind == "response", rt.describe()
    assert body(after)["pid"] != body(closed)["pid"]
    rt.wait_for(lambda r: r.get("message") == "still heard after"
                and r.get("requestId") == after.request_id)
    replaced = rt.wait_for(lambda r: r.get("message") == "worker replaced")
    assert (replaced["pid"], replaced["reason"]) == (
        body(closed)["pid"], "closed its stdout/stderr"
    )
    assert len(records(rt, "worker replaced")) == 1
