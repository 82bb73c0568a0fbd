"""Helpers for the supervised-runtime tests: a handler that misbehaves on request,
and ways to read what the supervisor reported and which processes remain.

The handler module :data:`APP` does what the event's ``"action"`` says, so one
runtime can be driven through several failures in a row.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import RuntimeProcess, runtime_env, write_module_files

from lambda_bulkhead.emulator import Emulator, InvokeResult

APP = r'''
"""Test handler: the event's "action" says how to behave (or misbehave)."""
import ctypes
import hashlib
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time


class CustomBaseException(BaseException):
    pass


def crash_here():
    ctypes.string_at(0)


def inner(key):
    raise KeyError(key)


def worker_local(name, default=LookupError):
    # A local of the worker loop, found by walking the stack: what a handler
    # that scribbles on the wrong fd, or forges an answer, would do.
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "run_worker" and name in frame.f_locals:
            return frame.f_locals[name]
        frame = frame.f_back
    if default is LookupError:
        raise LookupError(f"no {name} in a run_worker frame on the stack")
    return default


def result_fd():
    return worker_local("fds").result


def forged_result(request_id, turn, body):
    from lambda_bulkhead.wire._frames import Result, encode
    fields = {"request_id": request_id, "content_type": "application/json", "body": body}
    if "turn" in Result._fields:  # (a runtime without turns: the frame as it was)
        fields["turn"] = turn
    return b"".join(encode(Result(**fields)))


def write_later(fd, data, trigger, done):
    # A thread left running: it writes once the test says so, then says it did.
    def run():
        end = time.monotonic() + 30
        while not os.path.exists(trigger) and time.monotonic() < end:
            time.sleep(0.001)
        os.write(fd, data)
        open(done, "w").close()
    threading.Thread(target=run, daemon=True).start()


def pattern(seed, size):
    return random.Random(seed).randbytes(size // 2).hex()


def handler(event, context):
    action = event.get("action", "ok")
    if action == "ok":
        return {"pid": os.getpid(), "n": event.get("n"), "requestId": context.aws_request_id}
    if action == "remaining":
        return context.get_remaining_time_in_millis()
    if action == "const":
        return {"answer": 42}
    if action == "raise":
        try:
            inner("k")
        except KeyError as exc:
            raise ValueError("boom") from exc
    if action == "raise_text":
        raise ValueError(event["text"])
    if action == "exit":
        sys.exit(event.get("code", 3))
    if action == "kbi":
        raise KeyboardInterrupt
    if action == "base":
        raise CustomBaseException("custom")
    if action == "segv":
        crash_here()
    if action == "abort":
        os.abort()
    if action == "signal":
        os.kill(os.getpid(), getattr(signal, event["signal"]))
        time.sleep(10)
    if action == "_exit":
        os._exit(event.get("code", 7))
    if action == "leak":
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        sleeper = subprocess.Popen(["sleep", "60"])
        forked = os.fork()
        if forked == 0:
            time.sleep(60)
            os._exit(0)
        print(f"leak {os.getpid()} {sleeper.pid} {forked}", flush=True)
        then = event["then"]
        if then == "segv":
            crash_here()
        if then == "exit":
            sys.exit(5)
        os._exit(7)
    if action == "wait_file":
        print("started", flush=True)
        end = time.monotonic() + 30
        while not os.path.exists(event["path"]) and time.monotonic() < end:
            time.sleep(0.001)
        return "finished"
    if action == "sleep":
        print("started", flush=True)
        time.sleep(event["seconds"])
        return "slept"
    if action == "grandchild_sleep":
        sleeper = subprocess.Popen(["sleep", "60"])
        print(f"started {sleeper.pid}", flush=True)
        time.sleep(60)
    if action == "digest":
        data = event["data"]
        return {"size": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()}
    if action == "big":
        return pattern(event["seed"], event["size"])
    if action == "connections":
        # Connected stream sockets this worker holds (it opened none itself).
        from lambda_bulkhead.worker._forksafe import inherited_connections
        return [connection.peer for connection in inherited_connections(set())]
    if action == "kill_template":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(5)
        return "outlived its template"
    if action == "garbage":
        os.write(result_fd(), b"Traceback (most recent call last):\n")
        return "after garbage"
    if action == "huge_prefix":
        from lambda_bulkhead.wire._frames import VERSION
        os.write(result_fd(), struct.pack(">IBBH", 0xFFFFFFF0, VERSION, 2, 0))
        time.sleep(1)
        return "after huge prefix"
    if action == "endless_frame":
        from lambda_bulkhead.wire._frames import VERSION
        os.write(result_fd(), struct.pack(">IBBH", 10_000_000, VERSION, 2, 0))
        return "after endless frame"
    if action == "other_id":
        # In turn (the turn read from the worker loop), for another request id.
        turn = worker_local("turn", 0)
        os.write(result_fd(), forged_result("not-" + context.aws_request_id, turn, b"{}"))
        time.sleep(1)
        return "after other id"
    if action == "forge":
        # A valid Result for its own request id, then its own return value: the
        # turn either read from the worker loop or not known (0).
        turn = worker_local("turn", 0) if event["in_turn"] else 0
        os.write(result_fd(), forged_result(context.aws_request_id, turn, b'"forged"'))
        return "returned"
    if action == "forge_later":
        # A thread left running writes a Result frame (for this request id, in
        # this invocation's turn) once the test creates event["trigger"].
        data = forged_result(context.aws_request_id, worker_local("turn", 0), b'"stale"')
        write_later(result_fd(), data, event["trigger"], event["done"])
        return "returned"
    if action == "print_later":
        # A thread left running prints event["lines"] lines after the answer.
        def chatter():
            time.sleep(0.05)
            for index in range(event["lines"]):
                print(f"late {index}", flush=True)
            sys.stdout.write("late partial")
            sys.stdout.flush()
            open(event["done"], "w").close()
        threading.Thread(target=chatter, daemon=True).start()
        return "returned"
    raise AssertionError(f"unknown action {action!r}")
'''


class Runtimes:
    """Starts ``lambda-bulkhead run`` subprocesses; :meth:`close` stops them all.

    Like the ``runtime`` fixture of ``conftest``, but the clean-up does not wait
    for zombies: PID 1 of the test machine reaps orphans lazily (a second or
    two), and a zombie is no leaked process.
    """

    def __init__(self, task_root: Path, default_emulator: Callable[[], Emulator]) -> None:
        self._task_root = task_root
        self._default_emulator = default_emulator
        self._started: list[RuntimeProcess] = []

    def start(
        self,
        handler: str = "app.handler",
        *,
        modules: Mapping[str, str] | None = None,
        emulator: Emulator | None = None,
        env: Mapping[str, str | None] | None = None,
        isolation: str = "process",
        wait_for_poll: bool = True,
    ) -> RuntimeProcess:
        """A runtime serving ``handler`` (default: :data:`APP`), polling ``/next`` unless
        ``wait_for_poll`` is False."""
        write_module_files(self._task_root, {"app.py": APP} if modules is None else modules)
        emu = emulator if emulator is not None else self._default_emulator()
        argv = [sys.executable, "-m", "lambda_bulkhead", "run", handler, "--isolation", isolation]
        proc = RuntimeProcess(argv, runtime_env(emu, self._task_root, env), self._task_root, emu)
        self._started.append(proc)
        if wait_for_poll:
            proc.wait_until_polling()
        return proc

    def close(self) -> None:
        for proc in reversed(self._started):
            proc.stop()
            for pid in leftovers(proc, timeout=2.0):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def leftovers(rt: RuntimeProcess, timeout: float = 3.0) -> list[int]:
    """Processes ``rt`` started (seen while it ran) still alive, not zombies, after
    ``timeout`` s."""
    return wait_until_gone([proc.pid for proc in rt.leftovers(grace=0)], timeout)


def act(rt: RuntimeProcess, action: str, *, timeout: float = 20.0, **fields: Any) -> InvokeResult:
    """Invoke ``rt``'s function with ``{"action": action, **fields}``."""
    return rt.invoke(json.dumps({"action": action, **fields}), timeout=timeout)


def body(result: InvokeResult) -> Any:
    """The result's body as JSON."""
    return json.loads(result.body)


def report(rt: RuntimeProcess, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The supervisor's summary record (``"type": "bulkhead.report"``) for ``request_id``."""
    return rt.wait_for(
        lambda r: r.get("type") == "bulkhead.report" and r.get("requestId") == request_id,
        timeout,
    )


def records(rt: RuntimeProcess, message: str) -> list[dict[str, Any]]:
    """The runtime's log records with this ``message``, in order."""
    return [r for r in rt.records() if r.get("message") == message]


def started_record(rt: RuntimeProcess) -> dict[str, Any]:
    """The supervisor's "runtime started" record."""
    return rt.wait_for(lambda r: r.get("message") == "runtime started")


def is_alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return members


def wait_for_descendants(rt: RuntimeProcess, count: int, timeout: float = 10.0) -> list[int]:
    """The pids of ``rt``'s descendants once there are at least ``count`` (the spare
    worker is forked in the background); fails the test after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        pids = [proc.pid for proc in rt.descendants() if is_alive(proc.pid)]
        if len(pids) >= count:
            return pids
        if time.monotonic() > end:
            pytest.fail(f"{len(pids)} descendants after {timeout} s, expected {count}")
        time.sleep(0.02)


def wait_until_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait up to ``timeout`` s for ``pids`` to be gone (or zombies); those still alive."""
    end = time.monotonic() + timeout
    alive = [pid for pid in pids if is_alive(pid)]
    while alive and time.monotonic() < end:
        time.sleep(0.02)
        alive = [pid for pid in alive if is_alive(pid)]
    return alive


def wait_until_group_gone(pgid: int, timeout: float = 5.0) -> list[int]:
    """Wait up to ``timeout`` s for process group ``pgid`` to be empty; its live members."""
    end = time.monotonic() + timeout
    members = group_members(pgid)
    while members and time.monotonic() < end:
        time.sleep(0.02)
        members = group_members(pgid)
    return members
