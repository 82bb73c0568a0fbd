"""Helpers for the logging tests: a handler that writes through every path, and
ways to read a runtime's stdout (or telemetry fd) as records.

:data:`SOURCES_APP` does what the event's ``"action"`` says; every line it
writes names the invocation's request id, so a test can check that each line
landed on the record of the invocation that wrote it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
from conftest import runtime_env

from lambda_bulkhead.emulator import Emulator
from lambda_bulkhead.logs._telemetry import TelemetryFrame, decode_frame

SOURCES_APP = r'''
"""Test handler: writes to fd 1 and fd 2 in every way a handler can."""
import ctypes
import logging
import mmap
import os
import signal
import sys
import time

libc = ctypes.CDLL(None)
c_stderr = ctypes.c_void_p.in_dll(libc, "stderr")
log = logging.getLogger("app")

print("imported", flush=True)


def every_source(rid):
    print(f"print {rid}")
    sys.stderr.write(f"stderr {rid}\n")
    os.write(1, f"os.write {rid}\n".encode())
    libc.printf(b"printf %s %d\n", rid.encode(), 42)
    libc.fprintf(c_stderr, b"fprintf %s\n", rid.encode())
    sys.stderr.write(f"ValueError: shaped like an error {rid}\n")
    log.info("info %s", rid, extra={"orderId": 7})
    log.error("error %s", rid)


def handler(event, context):
    rid = context.aws_request_id
    action = event.get("action", "sources")
    if action == "sources":
        every_source(rid)
        return {"pid": os.getpid()}
    if action == "records":
        log.info("hello %s", rid, extra={"orderId": 7, "tags": ["a", "b"]})
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed %s", rid)
        log.warning({"event": "dict", "requestId": rid, "n": [1, 2]})
        return {"pid": os.getpid()}
    if action == "partial":
        sys.stdout.write(f"partial {rid}")
        return {"pid": os.getpid()}
    if action == "long":
        sys.stdout.write("L" * event["size"] + "\n")
        return {"pid": os.getpid()}
    if action == "lines":
        for i in range(event["count"]):
            print(f"{rid} line {i} " + "y" * (i * 37 % event.get("width", 1)))
        return {"pid": os.getpid()}
    if action == "segv":
        print(f"before segfault {rid}")
        libc.printf(b"printf before segfault %s\n", rid.encode())
        sys.stderr.write(f"stderr before segfault {rid}\n")
        ctypes.string_at(0)
    if action == "sigkill_self":
        libc.printf(b"printf then SIGKILL %s\n", rid.encode())
        print(f"print then SIGKILL {rid}")
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "raise":
        raise ValueError(f"boom {rid}")
    if action == "sleep":
        print(f"sleeping {rid}")
        time.sleep(event["seconds"])
        return "slept"
    if action == "grow":
        # Shared anonymous memory: not counted by RLIMIT_DATA, so it is the
        # supervisor's RSS cap that stops it.
        chunks = []
        while True:
            chunk = mmap.mmap(-1, 1 << 20)
            chunk.write(b"m" * (1 << 20))
            chunks.append(chunk)
    if action == "env":
        fds = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                fds[name] = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                pass
        return {
            "pid": os.getpid(),
            "telemetry": os.environ.get("_LAMBDA_TELEMETRY_LOG_FD"),
            "fds": fds,
        }
    raise AssertionError(f"unknown action {action!r}")
'''

#: ``[LEVEL]\t<ISO>.<ms>Z\t<request id>\t<message>``
TEXT_LINE = re.compile(
    r"\[(?P<level>[A-Z]+)\]\t(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t"
    r"(?P<rid>[^\t]*)\t(?P<message>.*)"
)


def parse_json_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Each line as a JSON object; fails (AssertionError) on any line that is not one."""
    records = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:300]!r}") from None
        assert isinstance(value, dict), f"not a JSON object: {line[:300]!r}"
        records.append(value)
    return records


def with_message(records: Iterable[dict[str, Any]], message: object) -> list[dict[str, Any]]:
    """The records whose ``message`` equals ``message``."""
    return [r for r in records if r.get("message") == message]


def one(records: Sequence[dict[str, Any]], message: object) -> dict[str, Any]:
    """The one record with this message (fails if there are none or several)."""
    found = with_message(records, message)
    assert len(found) == 1, f"{len(found)} records with message {message!r}: {found}"
    return found[0]


def reports(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The summary records by request id."""
    return {r["requestId"]: r for r in records if r.get("type") == "bulkhead.report"}


def read_frames(data: bytes) -> list[TelemetryFrame]:
    """Every frame in ``data``, which must hold whole frames only."""
    frames = []
    while data:
        decoded = decode_frame(data)
        assert decoded is not None, f"a cut frame at the end: {data[:64]!r}"
        frame, data = decoded
        frames.append(frame)
    return frames


def read_all(fd: int) -> bytes:
    """What a non-blocking fd holds now."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def pipe_inode(fd: int) -> str:
    """``pipe:[<inode>]``, how /proc names the pipe ``fd`` is an end of."""
    return os.readlink(f"/proc/self/fd/{fd}")


def open_fd_targets(pid: int) -> list[str]:
    """What each of process ``pid``'s fds points at (as /proc shows it)."""
    targets = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            targets.append(os.readlink(f"/proc/{pid}/fd/{name}"))
    return targets


class RawRuntime:
    """A ``lambda-bulkhead run`` subprocess whose stdout nobody reads until asked,
    and which can be handed extra fds (what the conftest runtime cannot do)."""

    def __init__(
        self,
        emulator: Emulator,
        task_root: Path,
        *,
        env: dict[str, str | None] | None = None,
        pass_fds: Sequence[int] = (),
        handler: str = "app.handler",
    ) -> None:
        argv = [sys.executable, "-m", "lambda_bulkhead", "run", handler, "--isolation", "process"]
        self.process = subprocess.Popen(
            argv, env=runtime_env(emulator, task_root, env), cwd=task_root,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=tuple(pass_fds),
        )
        self.seen: dict[int, psutil.Process] = {}

    def descendants(self) -> list[psutil.Process]:
        """The runtime's live descendants (remembered for the leak check)."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            self.seen.setdefault(child.pid, child)
        return children

    def stop(self) -> tuple[int, bytes, bytes]:
        """SIGTERM, wait (then SIGKILL); the status and the rest of stdout/stderr."""
        self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return self.process.returncode, out, err

    def leftovers(self) -> list[psutil.Process]:
        """Descendants seen while it ran that are still alive a moment after it ended."""
        _, alive = psutil.wait_procs(list(self.seen.values()), timeout=3)
        return alive

    def cleanup(self) -> None:
        self.stop()
        for proc in self.leftovers():
            with contextlib.suppress(psutil.Error):
                proc.kill()


def stream_lines(data: bytes) -> Iterator[str]:
    """The newline-terminated lines of ``data`` (asserting nothing trails them)."""
    assert not data or data.endswith(b"\n"), f"output ends mid-line: {data[-200:]!r}"
    for raw in data.split(b"\n")[:-1]:
        yield raw.decode("utf-8")
