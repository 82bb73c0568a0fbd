"""End to end: what a real supervised runtime writes to its stdout (and to the
telemetry fd), parsed line by line.

Each test starts ``python -m lambda_bulkhead run --isolation process`` against the
emulator with the handler of :mod:`_log_helpers` and reads the runtime's actual
stdout.  Every line must be one JSON object (or, in Text mode, one Text record);
each captured line must carry the request id of the invocation that wrote it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import pytest
from _log_helpers import (
    SOURCES_APP,
    TEXT_LINE,
    RawRuntime,
    one,
    open_fd_targets,
    parse_json_lines,
    pipe_inode,
    read_all,
    read_frames,
    reports,
    stream_lines,
    with_message,
)
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator, InvokeResult
from lambda_bulkhead.logs._format import DEFAULT_MAX_LINE_BYTES

MODULES = {"app.py": SOURCES_APP}


def _start(runtime: StartRuntime, emulator: Emulator | None = None, **env: str) -> RuntimeProcess:
    return runtime("app.handler", modules=MODULES, isolation="process", env=env,
                   emulator=emulator)


def _act(rt: RuntimeProcess, action: str, timeout: float = 30.0, **fields: Any) -> InvokeResult:
    return rt.invoke(json.dumps({"action": action, **fields}), timeout=timeout)


def _wait_for_reports(rt: RuntimeProcess, request_ids: set[str], timeout: float = 30.0) -> None:
    """Wait until every one of ``request_ids`` has its summary line on stdout
    (a cheap scan: these runs write megabytes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {
            rid for line in rt.lines if '"bulkhead.report"' in line
            for rid in request_ids if rid in line
        }
        if seen == request_ids:
            return
        time.sleep(0.1)
    dropped = [line for line in rt.lines if "log records dropped" in line]
    pytest.fail(f"reports missing for {request_ids - seen}; dropped notices: {dropped}")


def _records_until_report(rt: RuntimeProcess, request_id: str) -> list[dict[str, Any]]:
    """Every stdout line so far, parsed (all must be JSON), once ``request_id``'s
    summary record is out (it is written after the invocation's output)."""
    rt.wait_for(lambda r: r.get("type") == "bulkhead.report" and r.get("requestId") == request_id)
    return parse_json_lines(rt.lines)


@pytest.fixture
def raw_runtimes(task_root: Path) -> Iterator[list[RawRuntime]]:
    """Runtimes started by hand (RawRuntime), stopped and checked for leftovers."""
    started: list[RawRuntime] = []
    yield started
    for rt in started:
        rt.cleanup()


# -- every source, JSON -------------------------------------------------------------


def test_every_source_is_one_json_line_with_its_request_id(runtime: StartRuntime) -> None:
    """print, sys.stderr, os.write, C printf/fprintf and logging each give one JSON record."""
    rt = _start(runtime, AWS_LAMBDA_LOG_LEVEL="INFO")
    result = _act(rt, "sources")
    assert result.kind == "response"
    rid = result.request_id
    records = _records_until_report(rt, rid)

    expected = {
        f"print {rid}": ("INFO", "stdout"),
        f"stderr {rid}": ("WARNING", "stderr"),
        f"os.write {rid}": ("INFO", "stdout"),
        f"printf {rid} 42": ("INFO", "stdout"),
        f"fprintf {rid}": ("WARNING", "stderr"),
        f"ValueError: shaped like an error {rid}": ("ERROR", "stderr"),
    }
    for message, (level, stream) in expected.items():
        record = one(records, message)
        assert list(record) == ["timestamp", "level", "message", "requestId", "stream"]
        assert (record["level"], record["stream"], record["requestId"]) == (level, stream, rid)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["timestamp"])
    info = one(records, f"info {rid}")
    assert info == {
        "timestamp": info["timestamp"], "level": "INFO", "message": f"info {rid}",
        "logger": "app", "requestId": rid, "orderId": 7,
    }
    assert one(records, f"error {rid}")["level"] == "ERROR"
    # The module's import-time print went through the template's pipes: a record
    # like the others, outside any invocation.
    imported = one(records, "imported")
    assert (imported["requestId"], imported["stream"], imported["level"]) == ("", "stdout", "INFO")


def test_c_printf_is_line_buffered_and_output_survives_sigkill(runtime: StartRuntime) -> None:
    """printf and print lines written right before the worker SIGKILLs itself arrive (no flush)."""
    rt = _start(runtime)
    result = _act(rt, "sigkill_self")
    assert result.kind == "error"
    rid = result.request_id
    records = _records_until_report(rt, rid)
    for message in (f"printf then SIGKILL {rid}", f"print then SIGKILL {rid}"):
        assert one(records, message)["requestId"] == rid
    assert reports(records)[rid]["signal"] == "SIGKILL"
    died = rt.wait_for(lambda r: r.get("message") == "worker died")
    assert died["suspectedCause"].startswith("memory")  # an outside SIGKILL: the OOM killer's


# -- the template's output (import time) ---------------------------------------------


def test_import_time_output_is_logged_even_when_the_import_crashes(
    runtime: StartRuntime,
) -> None:
    """What the module prints before segfaulting at import arrives as records, then init failed."""
    rt = runtime("crashy.handler", isolation="process", wait_for_poll=False, modules={
        "crashy.py": """
            import ctypes, sys
            print("loading config")
            sys.stderr.write("about to crash\\n")
            ctypes.string_at(0)
        """,
    })
    assert rt.wait() == 1
    records = parse_json_lines(rt.lines)
    assert one(records, "loading config")["requestId"] == ""
    assert one(records, "about to crash")["stream"] == "stderr"
    failed = one(records, "init failed")
    assert failed["level"] == "ERROR"
    assert failed["errorType"] == "Runtime.ExitError"
    assert records.index(failed) > records.index(one(records, "loading config"))


def test_a_module_printing_more_than_a_pipe_holds_at_import_starts(
    runtime: StartRuntime,
) -> None:
    """300 KB printed at import: the supervisor reads while it waits, so start-up goes on."""
    rt = runtime("chatty.handler", isolation="process", modules={
        "chatty.py": """
            for i in range(3000):
                print(f"import line {i} " + "z" * 90)

            def handler(event, context):
                return "ok"
        """,
    })
    assert rt.invoke(b"{}").body == b'"ok"'
    rt.wait_for(lambda r: r.get("message") == "import line 2999 " + "z" * 90)
    lines = [r for r in parse_json_lines(rt.lines) if str(r["message"]).startswith("import line")]
    assert len(lines) == 3000


def test_output_written_just_before_a_segfault_is_logged(runtime: StartRuntime) -> None:
    """Lines written in the instant before a segfault arrive with the request id; then the
    crash report (signal, faulthandler stack) and the worker-death record."""
    rt = _start(runtime)
    result = _act(rt, "segv")
    assert result.kind == "error"
    rid = result.request_id
    records = _records_until_report(rt, rid)
    for message, stream in (
        (f"before segfault {rid}", "stdout"),
        (f"printf before segfault {rid}", "stdout"),
        (f"stderr before segfault {rid}", "stderr"),
    ):
        record = one(records, message)
        assert (record["requestId"], record["stream"]) == (rid, stream)
    report = reports(records)[rid]
    assert report["outcome"] == "crash"
    assert report["signal"] == "SIGSEGV"
    assert report["level"] == "ERROR"
    assert report["errorType"] == "Runtime.ExitError"
    assert "signal: segmentation fault" in report["errorMessage"]
    assert any("app.py" in line and "in handler" in line for line in report["stackTrace"])
    assert report["workerReplaced"] is True
    died = rt.wait_for(lambda r: r.get("message") == "worker died")
    assert died["level"] == "WARNING"
    assert died["pid"] == report["workerPid"]
    assert died["signal"] == "SIGSEGV"
    assert died["suspectedCause"].startswith("native code")


def test_partial_line_is_flushed_at_invocation_end(runtime: StartRuntime) -> None:
    """Output without a final newline is logged at the end of its own invocation."""
    rt = _start(runtime)
    first = _act(rt, "partial")
    second = _act(rt, "partial")
    records = _records_until_report(rt, second.request_id)
    for result in (first, second):
        record = one(records, f"partial {result.request_id}")
        assert record["requestId"] == result.request_id


def test_over_long_line_is_split_with_continued_markers(runtime: StartRuntime) -> None:
    """A 600 KiB line arrives whole, in chunks that fit a CloudWatch event, all but the
    last marked continued."""
    rt = _start(runtime)
    size = 600 * 1024
    result = _act(rt, "long", size=size)
    rid = result.request_id
    records = _records_until_report(rt, rid)
    raw = [line for line in rt.lines if '"message": "LL' in line]
    assert all(len(line.encode()) <= DEFAULT_MAX_LINE_BYTES for line in raw)
    chunks = [r for r in records if str(r.get("message", "")).startswith("L")]
    assert len(chunks) >= 3  # at least 600 KiB / 255 KiB
    assert "".join(c["message"] for c in chunks) == "L" * size
    assert [c.get("continued") for c in chunks] == [True] * (len(chunks) - 1) + [None]
    assert all(c["requestId"] == rid for c in chunks)


def test_logging_records_keep_the_official_keys_and_order(runtime: StartRuntime) -> None:
    """logging records: official key order with exc_info fields and extras; a dict stays a dict."""
    rt = _start(runtime, AWS_LAMBDA_LOG_LEVEL="INFO")
    result = rt.invoke(json.dumps({"action": "records"}), tenant_id="tenant-7")
    rid = result.request_id
    records = _records_until_report(rt, rid)

    hello = one(records, f"hello {rid}")
    assert list(hello) == [
        "timestamp", "level", "message", "logger", "requestId", "tenantId", "orderId", "tags",
    ]
    assert hello["tenantId"] == "tenant-7"
    assert hello["tags"] == ["a", "b"]

    failed = one(records, f"lookup failed {rid}")
    assert list(failed) == [
        "timestamp", "level", "message", "logger", "stackTrace", "errorType", "errorMessage",
        "requestId", "location", "tenantId",
    ]
    assert failed["level"] == "ERROR"
    assert failed["errorType"] == "KeyError"
    assert failed["errorMessage"] == "'missing'"
    assert "in handler" in failed["stackTrace"][0]
    assert re.fullmatch(r".*app\.py:handler:\d+", failed["location"])

    as_dict = one(records, {"event": "dict", "requestId": rid, "n": [1, 2]})
    assert (as_dict["level"], as_dict["requestId"]) == ("WARNING", rid)


LATE_LOGGING_APP = """
import sys

def handler(event, context):
    imported_before = "logging" in sys.modules
    import logging
    logging.getLogger("late").warning("late %s", context.aws_request_id)
    return {"imported_before": imported_before}
"""


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_logging_is_set_up_only_once_something_imports_it(
    runtime: StartRuntime, isolation: str
) -> None:
    """A handler whose module never imports logging does not pay for it on the cold
    start; importing it later (here, inside the handler) still routes its records
    through the official layout (the ``logger`` key is the handler's, not the
    captured-stderr fallback)."""
    rt = runtime("late.handler", modules={"late.py": LATE_LOGGING_APP}, isolation=isolation)
    result = rt.invoke("{}")
    assert json.loads(result.body) == {"imported_before": False}
    rid = result.request_id
    record = rt.wait_for(lambda r: r.get("message") == f"late {rid}")
    assert (record["level"], record["logger"], record["requestId"]) == ("WARNING", "late", rid)


BASIC_CONFIG_APP = """
import logging

logging.basicConfig(level=logging.INFO, format="plain %(message)s")

def handler(event, context):
    logging.warning("configured %s", context.aws_request_id)
    return {}
"""


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_basic_config_at_import_finds_the_handler_already_there(
    runtime: StartRuntime, isolation: str
) -> None:
    """As on Lambda, a module's logging.basicConfig() is a no-op: the runtime's
    handler is installed as soon as logging is imported, before the call."""
    rt = runtime("basic.handler", modules={"basic.py": BASIC_CONFIG_APP}, isolation=isolation)
    rid = rt.invoke("{}").request_id
    record = rt.wait_for(lambda r: r.get("message") == f"configured {rid}")
    assert (record["level"], record["logger"], record["requestId"]) == ("WARNING", "root", rid)
    assert not any("plain configured" in line for line in rt.lines)


# -- Text mode and levels -------------------------------------------------------------


def test_text_mode_gives_the_official_layout_for_every_source(runtime: StartRuntime) -> None:
    """AWS_LAMBDA_LOG_FORMAT=Text: every stdout line is [LEVEL]\\t<ts>\\t<requestId>\\t<msg>."""
    rt = _start(runtime, AWS_LAMBDA_LOG_FORMAT="Text", AWS_LAMBDA_LOG_LEVEL="INFO")
    result = _act(rt, "sources")
    rid = result.request_id
    rt.wait_for_line(lambda line: f"REPORT RequestId: {rid}" in line)
    rt.wait_for_line(lambda line: "\truntime started " in line)
    parsed = []
    for line in rt.lines:
        match = TEXT_LINE.fullmatch(line)
        assert match, f"not a Text record: {line!r}"
        parsed.append((match["level"], match["rid"], match["message"]))
    expected = [
        ("INFO", "", "imported"),
        ("INFO", rid, f"print {rid}"),
        ("WARNING", rid, f"stderr {rid}"),
        ("INFO", rid, f"os.write {rid}"),
        ("INFO", rid, f"printf {rid} 42"),
        ("WARNING", rid, f"fprintf {rid}"),
        ("ERROR", rid, f"ValueError: shaped like an error {rid}"),
        ("INFO", rid, f"info {rid}"),
        ("ERROR", rid, f"error {rid}"),
    ]
    for entry in expected:
        assert parsed.count(entry) == 1, f"{entry} in {parsed}"
    [report] = [p for p in parsed if p[2].startswith("REPORT ")]
    assert report[:2] == ("INFO", rid)
    assert report[2].startswith(f"REPORT RequestId: {rid}\tOutcome: success\tDuration: ")
    started = [p for p in parsed if p[2].startswith("runtime started ")]
    assert started
    assert started[0][:2] == ("INFO", "")


def test_level_error_keeps_only_errors_from_every_source(runtime: StartRuntime) -> None:
    """AWS_LAMBDA_LOG_LEVEL=ERROR drops INFO/WARNING lines of every source, the supervisor's too."""
    rt = _start(runtime, AWS_LAMBDA_LOG_LEVEL="ERROR")
    ok = _act(rt, "sources")
    crash = _act(rt, "segv")
    rid = ok.request_id
    records = _records_until_report(rt, crash.request_id)
    assert {(r["level"], r["message"]) for r in records} == {
        ("ERROR", f"ValueError: shaped like an error {rid}"),
        ("ERROR", f"error {rid}"),
        ("ERROR", "invocation report"),
    }
    [report] = records[-1:]
    assert (report["requestId"], report["outcome"]) == (crash.request_id, "crash")


# -- the summary record -----------------------------------------------------------------


def test_summary_record_for_every_outcome(
    runtime: StartRuntime, make_emulator: MakeEmulator
) -> None:
    """success, error, crash, timeout and oom each get one summary record with its fields."""
    emulator = make_emulator(timeout_s=2.0)
    rt = _start(runtime, emulator, BULKHEAD_MEMORY_LIMIT_MB="64")
    results = {
        "success": _act(rt, "sources"),
        "error": _act(rt, "raise"),
        "crash": _act(rt, "segv"),
        "timeout": _act(rt, "sleep", seconds=30),
        "oom": _act(rt, "grow"),
    }
    last = results["oom"].request_id
    records = _records_until_report(rt, last)
    by_id = reports(records)
    pids = {"success": json.loads(results["success"].body)["pid"]}
    for outcome, result in results.items():
        report = by_id[result.request_id]
        assert report["outcome"] == outcome
        assert report["message"] == "invocation report"
        assert report["level"] == ("INFO" if outcome == "success" else "ERROR")
        assert report["durationMs"] >= 0
        assert report["maxMemoryUsedMB"] > 0
        assert isinstance(report["workerPid"], int)
        assert report["workerReplaced"] is (outcome in ("crash", "timeout", "oom"))
    assert by_id[results["success"].request_id]["workerPid"] == pids["success"]
    assert "errorType" not in by_id[results["success"].request_id]

    error = by_id[results["error"].request_id]
    assert (error["errorType"], error["errorMessage"]) == (
        "ValueError", f"boom {results['error'].request_id}"
    )
    assert any("in handler" in line for line in error["stackTrace"])

    crash = by_id[results["crash"].request_id]
    assert (crash["errorType"], crash["signal"]) == ("Runtime.ExitError", "SIGSEGV")
    assert any("string_at" in line for line in crash["stackTrace"])

    timeout = by_id[results["timeout"].request_id]
    assert timeout["errorType"] == "Sandbox.Timedout"
    assert 1000 < timeout["durationMs"] < 10_000
    assert any("in handler" in line for line in timeout["stackTrace"])  # faulthandler's dump

    oom = by_id[results["oom"].request_id]
    assert oom["errorType"] == "Runtime.OutOfMemory"
    assert oom["maxMemoryUsedMB"] >= 64
    assert len(by_id) == len(results)


def test_first_report_follows_the_start_up_record_with_its_own_time(
    runtime: StartRuntime,
) -> None:
    """The first invocation's report waits for the runtime log (structlog, loaded
    after the first answer): it comes after "runtime started", its request id
    bound, stamped with the time the invocation ended."""
    rt = _start(runtime)
    result = _act(rt, "sources")
    records = _records_until_report(rt, result.request_id)
    messages = [r.get("message") for r in records]
    started = messages.index("runtime started")
    report = messages.index("invocation report")
    assert started < report
    assert records[report]["requestId"] == result.request_id
    assert records[report]["timestamp"] <= records[started]["timestamp"]


def test_start_up_record_names_the_runtime_and_its_config(runtime: StartRuntime) -> None:
    """The supervisor's start-up record: versions, workers, memory cap, template pid."""
    rt = _start(runtime, BULKHEAD_WORKERS="2", BULKHEAD_MEMORY_LIMIT_MB="256")
    started = rt.wait_for(lambda r: r.get("message") == "runtime started")
    assert started["level"] == "INFO"
    assert started["logger"] == "lambda_bulkhead.supervisor"
    assert started["isolation"] == "process"
    assert started["workers"] == 2
    assert started["memoryLimitMB"] == 256
    assert started["python"].count(".") == 2
    template = [p for p in rt.descendants() if p.pid == started["templatePid"]]
    assert template, "templatePid names a live child of the runtime"


def test_worker_forks_are_logged_after_the_start_up_record(runtime: StartRuntime) -> None:
    """Each fork of a worker is one record (pid, fork time, baseline); those made
    before the first answer wait for the start-up record, so structlog is not
    imported on the first invocation's path."""
    rt = _start(runtime, BULKHEAD_WORKERS="2")
    rt.invoke(b'{"action": "ok"}')
    rt.wait_for(lambda r: r.get("message") == "runtime started")
    # two slots' workers and the spare
    rt.wait_for(lambda _r: len(with_message(rt.records(), "worker forked")) >= 3)
    messages = [r.get("message") for r in rt.records()]
    forks = with_message(rt.records(), "worker forked")
    assert messages.index("runtime started") < messages.index("worker forked")
    assert all(r["level"] == "INFO" and r["forkMs"] > 0 and r["baselineRssMB"] > 0
               for r in forks)
    live = {p.pid for p in rt.descendants()}
    assert {r["pid"] for r in forks} <= live


# -- concurrency ----------------------------------------------------------------------


def test_concurrent_workers_never_interleave_lines(runtime: StartRuntime) -> None:
    """4 workers printing long lines at once: each line whole, with its own request id."""
    rt = _start(runtime, BULKHEAD_WORKERS="4")
    assert rt.emulator is not None
    # Lines up to 6 KB: longer than PIPE_BUF.  About 2.4 MB in all, well under
    # what the writer holds for a reader that falls behind (4 MiB; past that
    # it drops records, by design), which this test's reader, a thread of the
    # busy test process, can on a loaded machine.
    count, width = 100, 6000
    event = json.dumps({"action": "lines", "count": count, "width": width}).encode()
    futures = [rt.emulator.submit(event) for _ in range(8)]
    done, _ = wait(futures, timeout=60)
    assert len(done) == 8
    results = [f.result() for f in futures]
    assert {r.kind for r in results} == {"response"}
    assert len({json.loads(r.body)["pid"] for r in results}) > 1, "ran on several workers"
    _wait_for_reports(rt, {r.request_id for r in results})
    records = parse_json_lines(rt.lines)
    for result in results:
        rid = result.request_id
        mine = [r for r in records if str(r.get("message", "")).startswith(rid)]
        assert len(mine) == count
        for index, record in enumerate(mine):
            assert record["requestId"] == rid
            assert record["message"] == f"{rid} line {index} " + "y" * (index * 37 % width)


# -- the telemetry fd -------------------------------------------------------------------


def test_telemetry_fd_gets_every_record_framed_and_workers_never_see_it(
    emulator: Emulator, task_root: Path, raw_runtimes: list[RawRuntime]
) -> None:
    """With _LAMBDA_TELEMETRY_LOG_FD every record is a frame with its level; stdout stays
    empty; the template and workers have neither the fd nor the variable."""
    (task_root / "app.py").write_text(SOURCES_APP)
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    inode = pipe_inode(write_end)
    try:
        rt = RawRuntime(
            emulator, task_root, pass_fds=[write_end],
            env={"_LAMBDA_TELEMETRY_LOG_FD": str(write_end), "AWS_LAMBDA_LOG_LEVEL": "INFO"},
        )
        raw_runtimes.append(rt)
        os.close(write_end)
        sources = emulator.invoke(json.dumps({"action": "sources"}).encode(), timeout=30)
        env = emulator.invoke(json.dumps({"action": "env"}).encode(), timeout=30)
        seen = json.loads(env.body)
        assert seen["telemetry"] is None
        assert inode not in seen["fds"].values()
        for proc in rt.descendants():  # the template and the workers
            assert inode not in open_fd_targets(proc.pid), proc
        assert inode in open_fd_targets(rt.process.pid)
        rid = sources.request_id

        frames: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = read_all(read_end)
            frames += read_frames(data)
            if any(b"invocation report" in f.payload and rid.encode() in f.payload
                   for f in frames):
                break
            time.sleep(0.05)
        status, out, _ = rt.stop()
    finally:
        frames_after = read_frames(read_all(read_end))
        os.close(read_end)
    frames += frames_after
    assert out == b"", "nothing goes to stdout when the telemetry fd is there"
    levels = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
    records = []
    for frame in frames:
        assert not frame.payload.endswith(b"\n")
        record = json.loads(frame.payload)
        assert frame.level == levels[record["level"]]
        assert frame.frame_type & 0xFFFFFF03 == 0xA55A0002  # JSON frames
        assert abs(frame.timestamp_us / 1e6 - time.time()) < 120
        records.append(record)
    assert one(records, f"print {rid}")["requestId"] == rid
    assert one(records, f"stderr {rid}")["level"] == "WARNING"
    assert one(records, f"error {rid}")["level"] == "ERROR"
    assert one(records, "imported")["requestId"] == ""
    assert reports(records)[rid]["outcome"] == "success"
    assert with_message(records, "runtime started")
    assert with_message(records, "runtime stopped")
    assert status == 0
    assert rt.leftovers() == []


# -- a full stdout pipe -------------------------------------------------------------------


def test_a_stalled_stdout_reader_never_blocks_invocations(
    emulator: Emulator, task_root: Path, raw_runtimes: list[RawRuntime]
) -> None:
    """stdout nobody reads: invocations still complete; lines are dropped whole and
    counted, never torn, and a notice says how many."""
    (task_root / "app.py").write_text(SOURCES_APP)
    rt = RawRuntime(emulator, task_root)
    raw_runtimes.append(rt)
    invocations, per_invocation = 60, 60
    event = json.dumps({"action": "lines", "count": per_invocation, "width": 3000}).encode()
    started = time.monotonic()
    results = [emulator.invoke(event, timeout=30) for _ in range(invocations)]
    elapsed = time.monotonic() - started
    assert {r.kind for r in results} == {"response"}
    # ~4.6 MB of records against a 64 KiB pipe and a 4 MiB buffer: with a
    # blocking writer the invocations would stall once the pipe filled.
    assert elapsed < 60

    # Now read: the held records come out, then the notice.
    collected: list[bytes] = []
    noticed = threading.Event()
    assert rt.process.stdout is not None
    stdout = rt.process.stdout

    def read() -> None:
        for line in stdout:
            collected.append(line)
            if b'"droppedRecords"' in line:
                noticed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert noticed.wait(30), "no dropped-records notice"
    rt.descendants()  # remembered for the leak check
    rt.process.terminate()
    rt.process.wait(10)
    reader.join(10)
    assert rt.leftovers() == []
    records = parse_json_lines(stream_lines(b"".join(collected)))

    notices = [r for r in records if "droppedRecords" in r]
    assert notices, "a notice tells how many records were dropped"
    dropped = sum(n["droppedRecords"] for n in notices)
    assert all(n["level"] == "WARNING" for n in notices)
    kept = [r for r in records if "droppedRecords" not in r]
    # lines, reports, the import-time print, runtime started and stopped, the
    # worker start, and two workers forked (the slot's and the spare)
    produced = invocations * (per_invocation + 1) + 6
    assert len(kept) + dropped == produced
    assert dropped > 0
    lines = [r for r in kept if r.get("stream") == "stdout" and r["requestId"]]
    by_id = {r.request_id: r for r in results}
    for record in lines:  # whole: each line is exactly what its handler printed
        rid, _, index, _ = record["message"].split(" ", 3)
        assert record["requestId"] == rid
        assert rid in by_id
        width = int(index) * 37 % 3000
        assert record["message"] == f"{rid} line {index} " + "y" * width


POWERTOOLS_APP = {"app.py": """\
    import json

    from aws_lambda_powertools import Logger

    logger = Logger(service="orders")


    @logger.inject_lambda_context
    def handler(event, context):
        logger.info("order stored", extra={"orderId": 42})
        print(json.dumps({"event": "printed", "n": 1}))
        print(json.dumps({"event": "own id", "requestId": "mine"}))
        print("{not json")
        return {"ok": True}
"""}


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_powertools_and_printed_json_lines_stay_json_objects(
    runtime: StartRuntime, isolation: str
) -> None:
    """The real Powertools Logger and print(json.dumps(...)): each line is the same
    JSON object with every key top level (supervised: plus requestId unless it has
    one; in-process: untouched, as under the official runtime); "{not json" is an
    ordinary line."""
    rt = runtime("app.handler", modules=POWERTOOLS_APP, isolation=isolation)
    result = rt.invoke(b"{}")
    assert result.kind == "response", rt.describe()
    request_id = result.request_id
    line = rt.wait_for_line(lambda line: '"order stored"' in line)
    record = json.loads(line)
    assert record["service"] == "orders"
    assert record["message"] == "order stored"
    assert record["cold_start"] is True
    assert record["function_request_id"] == request_id
    assert record["orderId"] == 42
    printed = json.loads(rt.wait_for_line(lambda line: '"printed"' in line))
    own = json.loads(rt.wait_for_line(lambda line: '"own id"' in line))
    assert own["requestId"] == "mine"
    not_json = rt.wait_for_line(lambda line: "{not json" in line)
    if isolation == "process":
        assert record["requestId"] == request_id
        assert printed == {"event": "printed", "n": 1, "requestId": request_id}
        assert json.loads(not_json) == {**json.loads(not_json), "message": "{not json",
                                        "stream": "stdout", "requestId": request_id}
    else:
        assert "requestId" not in record
        assert printed == {"event": "printed", "n": 1}
        assert not_json == "{not json"


def test_json_lines_in_text_mode_are_written_as_they_are(runtime: StartRuntime) -> None:
    """AWS_LAMBDA_LOG_FORMAT=Text: a JSON line is emitted as written; other lines get
    the Text layout."""
    rt = runtime("app.handler", modules=POWERTOOLS_APP, isolation="process",
                 env={"AWS_LAMBDA_LOG_FORMAT": "Text"})
    result = rt.invoke(b"{}")
    assert result.kind == "response", rt.describe()
    assert rt.wait_for_line(lambda line: '"printed"' in line) == '{"event": "printed", "n": 1}'
    record = json.loads(rt.wait_for_line(lambda line: '"order stored"' in line))
    assert "requestId" not in record
    assert record["service"] == "orders"
    not_json = rt.wait_for_line(lambda line: "{not json" in line)
    assert not_json.startswith("[INFO]\t")
    assert not_json.endswith(f"\t{result.request_id}\t{{not json")
