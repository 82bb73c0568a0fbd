"""What logging costs per invocation in the supervised runtime (issue 5's benchmark).

    python benchmarks/logging_cost.py                 # 3 rounds x 1000 invocations per case
    python benchmarks/logging_cost.py --quick         # one short round: a smoke run
    python benchmarks/logging_cost.py --rounds 5 -n 2000
    python benchmarks/logging_cost.py --micro         # per record and import costs only

One handler, five cases (the event says which):

* ``silent``: writes nothing (the baseline);
* ``print10``: ``print()`` 10 lines of ~60 bytes;
* ``logging10``: 10 ``logging`` records (``logger.info``, ``AWS_LAMBDA_LOG_LEVEL=INFO``);
* ``print10-text``: ``print10`` with ``AWS_LAMBDA_LOG_FORMAT=Text``;
* ``print10-filtered``: ``print10`` with ``AWS_LAMBDA_LOG_LEVEL=ERROR`` (every line dropped).

Each run starts ``python -m lambda_bulkhead run`` (supervised, one worker)
against the project's emulator, its stdout piped into ``wc -l`` (a reader that
keeps up, as Lambda's does); after ``--warm`` invocations it times ``-n``
sequential invocations end to end (``Emulator.invoke``: queued -> answer back)
and the CPU time of the runtime's whole process tree over the same window
(every thread of the supervisor, template and worker, from
``/proc/*/task/*/schedstat``).  Cases are interleaved over the rounds
(A B C ... A B C ...); the table shows the median over rounds of each round's
median latency, p99, and CPU per invocation, and the difference from ``silent``.
The line count ``wc`` saw is checked against what the handler and the
supervisor wrote, so a case that lost its output fails.

``--micro`` (issue 19, "One log pipeline") times single records in this
process instead, best of 40 short repeats: the invocation report through the structlog
chain against the direct f-string renderer it replaced (kept below as
:func:`previous_report_json`, the baseline), a runtime record, a filtered one,
a captured stdout line and a worker's ``logging`` record; then what importing
structlog costs a fresh interpreter (fastest of 15 runs, ``python -c pass``
subtracted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambda_bulkhead.emulator import Emulator  # noqa: E402
from lambda_bulkhead.logs._format import utc_seconds  # noqa: E402

HANDLER = '''
import logging

log = logging.getLogger("bench")
LINES = [f"processed item {i:02d} of the batch: status=ok elapsed_ms=0.0{i}" for i in range(10)]


def handler(event, context):
    case = event["case"]
    if case == "print":
        for line in LINES:
            print(line)
    elif case == "logging":
        for line in LINES:
            log.info(line)
    return "ok"
'''

CASES: dict[str, tuple[str, dict[str, str], int]] = {
    # name: (what the handler does, extra environment, lines per invocation on stdout)
    "silent": ("none", {}, 0),
    "print10": ("print", {}, 10),
    "logging10": ("logging", {"AWS_LAMBDA_LOG_LEVEL": "INFO"}, 10),
    "print10-text": ("print", {"AWS_LAMBDA_LOG_FORMAT": "Text"}, 10),
    "print10-filtered": ("print", {"AWS_LAMBDA_LOG_LEVEL": "ERROR"}, 0),
}


@dataclass
class Run:
    median_us: float
    p99_us: float
    cpu_us: float


def tree_cpu(pid: int) -> float:
    """CPU seconds run so far by every thread of ``pid`` and its live descendants
    (``/proc/<pid>/task/<tid>/schedstat``: nanoseconds, not clock ticks)."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        try:
            tasks = os.listdir(f"/proc/{proc.pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{proc.pid}/task/{tid}/schedstat") as stat:
                    total += int(stat.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total / 1e9


def one_run(case: str, task_root: Path, n: int, warm: int) -> Run:
    action, extra_env, lines_each = CASES[case]
    with Emulator(timeout_s=30) as emu:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BULKHEAD_", "AWS_LAMBDA_"))
        }
        env.update(emu.function_env())
        env.update({"LAMBDA_TASK_ROOT": str(task_root), "PYTHONPATH": str(ROOT), **extra_env})
        counter = subprocess.Popen(["wc", "-l"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        runtime = subprocess.Popen(
            [sys.executable, "-m", "lambda_bulkhead", "run", "app.handler",
             "--isolation", "process", "--workers", "1"],
            env=env, cwd=task_root, stdin=subprocess.DEVNULL, stdout=counter.stdin,
        )
        assert counter.stdin is not None
        counter.stdin.close()  # the runtime (and its children) hold the only write end
        counter.stdin = None
        try:
            event = json.dumps({"case": action}).encode()
            for _ in range(warm):
                emu.invoke(event, timeout=30)
            latencies = []
            cpu_before = tree_cpu(runtime.pid)
            for _ in range(n):
                started = time.perf_counter()
                result = emu.invoke(event, timeout=30)
                latencies.append(time.perf_counter() - started)
                assert result.kind == "response", result
            cpu = tree_cpu(runtime.pid) - cpu_before
        finally:
            runtime.terminate()
            runtime.wait(10)
        out, _ = counter.communicate(timeout=10)
    invocations = warm + n
    # Per invocation: the handler's lines and a summary record (filtered at ERROR);
    # plus "runtime started", "worker start", "runtime stopped" and two "worker
    # forked" (the worker and its spare), all INFO.
    reports = 0 if extra_env.get("AWS_LAMBDA_LOG_LEVEL") == "ERROR" else 1
    expected = invocations * (lines_each + reports) + 5 * reports
    seen = int(out.split()[0])
    if seen != expected:
        raise SystemExit(f"{case}: stdout had {seen} lines, expected {expected}")
    latencies.sort()
    return Run(
        median_us=statistics.median(latencies) * 1e6,
        p99_us=latencies[int(len(latencies) * 0.99) - 1] * 1e6,
        cpu_us=cpu / n * 1e6,
    )


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average at start "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


_QUOTE = json.JSONEncoder(ensure_ascii=False)


def previous_report_json(report: object, now: float) -> bytes:
    """The success report as ``supervisor/_report.py`` rendered it before issue 19
    (an f-string, bypassing structlog): the baseline of ``--micro``."""
    r: Any = report
    quote = _QUOTE.encode
    tenant = f'"tenantId": {quote(r.tenant_id)}, ' if r.tenant_id else ""
    replaced = "true" if r.worker_replaced else "false"
    return (
        f'{{"timestamp": "{utc_seconds(now)}", "level": "INFO", '
        f'"message": "invocation report", "logger": "lambda_bulkhead.supervisor", '
        f'"requestId": {quote(r.request_id)}, {tenant}'
        f'"type": "bulkhead.report", '
        f'"outcome": "success", "durationMs": {round(r.duration_ms, 3)!r}, '
        f'"maxMemoryUsedMB": {round(r.max_memory_mb, 1)!r}, '
        f'"workerPid": {r.worker_pid}, "workerReplaced": {replaced}}}\n'
    ).encode("utf-8", "backslashreplace")


def best_us(call: Callable[[], object], number: int = 2_000) -> float:
    """Best of 40 short repeats, µs per call (on a shared machine the fastest
    repeat is the one least disturbed)."""
    return min(timeit.repeat(call, number=number, repeat=40)) / number * 1e6


def import_ms(statement: str, runs: int = 15) -> float:
    """Fastest wall time of ``python -c statement`` minus that of ``python -c
    pass``, in ms."""

    def fastest_run(code: str) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            times.append(time.perf_counter() - started)
        return min(times)

    return (fastest_run(statement) - fastest_run("pass")) * 1000


def micro() -> None:
    import logging  # noqa: PLC0415

    from lambda_bulkhead.logs._format import (  # noqa: PLC0415
        LogFormat,
        format_captured_line,
    )
    from lambda_bulkhead.logs._stdlib import LambdaLogFormatter  # noqa: PLC0415
    from lambda_bulkhead.logs._structlog import configure  # noqa: PLC0415
    from lambda_bulkhead.supervisor._decisions import InvocationReport, Outcome  # noqa: PLC0415
    from lambda_bulkhead.supervisor._report import emit_report  # noqa: PLC0415

    print(machine(), flush=True)
    request_id = "8f5c1c8e-2f43-4d59-9a3e-0c8b8a1b2c3d"
    report = InvocationReport(
        request_id=request_id, tenant_id=None, outcome=Outcome.SUCCESS, duration_ms=1.2345,
        max_memory_mb=41.27, worker_pid=4321, worker_replaced=False,
    )
    written: list[str] = []
    sink = written.append
    json_log = configure(LogFormat.JSON, None, sink)
    text_log = configure(LogFormat.TEXT, None, sink)
    error_only = configure(LogFormat.JSON, logging.ERROR, sink)
    record = logging.LogRecord("bench", logging.INFO, "/var/task/app.py", 7,
                               "processed item %d", (1,), None)
    record.aws_request_id, record.tenant_id = request_id, None
    formatter = LambdaLogFormatter(LogFormat.JSON)
    line = b"processed item 01 of the batch: status=ok elapsed_ms=0.01"

    cases: list[tuple[str, Callable[[], object]]] = [
        ("report, previous direct f-string (baseline)",
         lambda: previous_report_json(report, time.time())),
        ("report, structlog chain, ids as fields (emit_report)",
         lambda: emit_report(json_log, report, LogFormat.JSON)),
        ("runtime record, structlog chain, JSON", lambda: json_log.info(
            "worker forked", pid=1234, forkMs=2.37, baselineRssMB=14.1)),
        ("runtime record, structlog chain, Text", lambda: text_log.info(
            "worker forked", pid=1234, forkMs=2.37, baselineRssMB=14.1)),
        ("runtime record below the level (filtered)", lambda: error_only.info(
            "worker forked", pid=1234, forkMs=2.37, baselineRssMB=14.1)),
        ("captured stdout line (format_captured_line)", lambda: format_captured_line(
            line, stream="stdout", request_id=request_id, tenant_id=None,
            fmt=LogFormat.JSON, min_level=0, now=time.time())),
        ("worker logging record (LambdaLogFormatter)", lambda: formatter.format(record)),
    ]
    print()
    print("| per record | µs |")
    print("|---|---:|")
    for name, call in cases:
        print(f"| {name} | {best_us(call):.2f} |", flush=True)
        written.clear()
    print()
    print("| import, fresh interpreter | ms |")
    print("|---|---:|")
    for name, statement in [
        ("structlog", "import structlog"),
        ("the runtime log (logs._structlog: structlog + logging)",
         "import lambda_bulkhead.logs._structlog"),
    ]:
        print(f"| {name} | {import_ms(statement):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=1000, help="timed invocations per run")
    parser.add_argument("--warm", type=int, default=100, help="untimed invocations first")
    parser.add_argument("--quick", action="store_true", help="1 round, n=200, warm=20")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--micro", action="store_true", help="per-record and import costs")
    args = parser.parse_args()
    if args.micro:
        micro()
        return
    if args.quick:
        args.rounds, args.n, args.warm = 1, 200, 20
    cases = args.only.split(",")
    print(machine(), flush=True)
    results: dict[str, list[Run]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        task_root = Path(tmp)
        (task_root / "app.py").write_text(HANDLER)
        for round_no in range(args.rounds):
            for case in cases:
                run = one_run(case, task_root, args.n, args.warm)
                results[case].append(run)
                print(f"round {round_no + 1} {case:17} median {run.median_us:7.0f} us  "
                      f"p99 {run.p99_us:7.0f} us  cpu {run.cpu_us:6.0f} us/inv", flush=True)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    def med(case: str, field: str) -> float:
        return statistics.median(getattr(run, field) for run in results[case])

    base = "silent" if "silent" in results else cases[0]
    print()
    print("| case | median latency (µs) | p99 (µs) | runtime CPU per invocation (µs) "
          "| latency vs silent (µs) | CPU vs silent (µs) |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in cases:
        print(
            f"| `{case}` | {med(case, 'median_us'):.0f} | {med(case, 'p99_us'):.0f} "
            f"| {med(case, 'cpu_us'):.0f} "
            f"| {med(case, 'median_us') - med(base, 'median_us'):+.0f} "
            f"| {med(case, 'cpu_us') - med(base, 'cpu_us'):+.0f} |"
        )


if __name__ == "__main__":
    main()
