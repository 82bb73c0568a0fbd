"""What the memory cap, the deadline enforcement and concurrent workers cost (issue 4).

    python benchmarks/limits.py            # the full run, about 8 minutes
    python benchmarks/limits.py --quick    # fewer repetitions: a smoke run

Each measurement starts the project's ``Emulator`` on a thread of this process
and ``python -m lambda_bulkhead run`` (supervised) against it, with the
handlers below written to a temporary ``LAMBDA_TASK_ROOT``.  The runtime's logs
go to ``/dev/null``.  Prints Markdown tables (the figures in
``docs/benchmarks.md`` (memory cap, deadlines and concurrent workers) come from this script):

1. **Memory watch cost.**  Throughput of a trivial handler with the cap on
   (``BULKHEAD_MEMORY_LIMIT_MB=256``, sampled every 10 ms) and off (``0``); and
   the supervisor's own CPU time per second of a running invocation (a 100 ms
   sleep) for each sampling interval, from ``/proc/<pid>/task/*/schedstat``.
2. **Overshoot.**  How far past a 256 MB cap a fast allocator gets before the
   kill: a loop touching one byte per page of an anonymous ``MAP_SHARED`` map
   (shared memory: ``RLIMIT_DATA`` does not count it, the RSS watch must catch
   it).  The handler records how many MB it has touched in a file-backed map
   that outlives it, so the figure is what it really touched, not what the
   watch sampled.  Private memory is stopped by ``RLIMIT_DATA`` at the cap
   (``MemoryError``), shown for comparison.
3. **Timeout margin.**  The time from the kill decision to the ``/error`` being
   accepted by the emulator.  Runs with a 200 ms margin (so that a slow
   outlier is measured rather than lost to the emulator's own timeout); the
   decision is taken at ``deadline - margin``, the emulator notes when the
   invocation was answered (a future's done-callback, on its loop thread), so
   ``latency = margin - (deadline - answered)``.
4. **Throughput with 1, 2 and 4 workers** for a handler that sleeps 10 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path.insert(0, str(_ROOT))

from lambda_bulkhead.emulator import Emulator, InvokeResult  # noqa: E402

HANDLERS = r'''
import ctypes
import mmap
import os
import struct
import time

MB = 1 << 20


def trivial(event, context):
    return {"ok": True}


def sleep(event, context):
    time.sleep(event["seconds"])
    return {"ok": True}


def busy(event, context):
    while True:
        pass


def c_sleep(event, context):
    ctypes.CDLL(None).sleep(60)


def big_then_busy(event, context):
    region = mmap.mmap(-1, event["mb"] * MB, flags=mmap.MAP_PRIVATE | mmap.MAP_POPULATE)
    while True:
        pass


def shared_fast(event, context):
    # Progress, in MB touched, in a file-backed map that survives the SIGKILL.
    with open(event["progress"], "r+b") as file:
        progress = mmap.mmap(file.fileno(), 8)
    size = event["mb"] * MB
    region = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
    page = mmap.PAGESIZE
    started = time.perf_counter()
    for mb in range(event["mb"]):
        base = mb * MB
        for offset in range(base, base + MB, page):
            region[offset] = 1
        struct.pack_into("<q", progress, 0, mb + 1)
    return {"seconds": time.perf_counter() - started}


def private_steps(event, context):
    chunks = []
    while True:
        chunks.append(b"x" * (10 * MB))
'''


# -- machinery -------------------------------------------------------------------


@dataclass
class Runtime:
    emulator: Emulator
    process: subprocess.Popen[bytes]
    task_root: Path

    def call(self, event: object, timeout: float = 60.0) -> InvokeResult:
        return self.emulator.invoke(json.dumps(event).encode(), timeout=timeout)

    def submit(self, event: object) -> Future[InvokeResult]:
        return self.emulator.submit(json.dumps(event).encode())


@contextlib.contextmanager
def supervised(
    handler: str, env: Mapping[str, str], *, timeout_s: float = 60.0, workers: int = 1
) -> Iterator[Runtime]:
    """An emulator and a supervised runtime serving ``handlers.<handler>``."""
    with tempfile.TemporaryDirectory(prefix="bulkhead-limits-") as root, \
            Emulator(timeout_s=timeout_s, max_history=None) as emu:
        Path(root, "handlers.py").write_text(HANDLERS)
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BULKHEAD_", "AWS_"))},
            **emu.function_env(),
            "LAMBDA_TASK_ROOT": root,
            "PYTHONPATH": str(_ROOT),
            "BULKHEAD_WORKERS": str(workers),
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "lambda_bulkhead", "run", f"handlers.{handler}"],
            env=full_env, cwd=root, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            if not emu.wait_for_next_poll(timeout=30, polls=workers):
                raise RuntimeError("the runtime did not start")
            yield Runtime(emu, process, Path(root))
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_ns(pid: int) -> int:
    """On-CPU time of every thread of ``pid`` (``schedstat``, ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError, IndexError), \
                open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as stat:
            total += int(stat.read().split()[0])
    return total


def throughput(rt: Runtime, event: object, n: int, warm: int) -> float:
    """Invocations per second over ``n`` events queued at once (after ``warm``)."""
    for future in [rt.submit(event) for _ in range(warm)]:
        future.result(120)
    started = time.perf_counter()
    futures = [rt.submit(event) for _ in range(n)]
    for future in futures:
        if future.result(300).kind != "response":
            raise RuntimeError("an invocation failed")
    return n / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- 1. memory watch cost ---------------------------------------------------------


def watch_cost(rounds: int, n: int) -> str:
    configs = {
        "on (256 MB, sampled every 10 ms)": {"BULKHEAD_MEMORY_LIMIT_MB": "256"},
        "off (BULKHEAD_MEMORY_LIMIT_MB=0)": {"BULKHEAD_MEMORY_LIMIT_MB": "0"},
    }
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):  # interleaved, so drift hits both alike
        for name, env in configs.items():
            with supervised("trivial", env) as rt:
                rates[name].append(throughput(rt, {}, n, warm=200))
    rows = [[name, f"{statistics.median(r):,.0f}", f"{min(r):,.0f} to {max(r):,.0f}"]
            for name, r in rates.items()]
    first = table(["memory watch", "trivial invocations/s (median)", "range"], rows)

    sampling = {
        "cap on, every 1 ms": {"BULKHEAD_MEMORY_LIMIT_MB": "256", "BULKHEAD_MEMORY_POLL_MS": "1"},
        "cap on, every 10 ms (default)": {"BULKHEAD_MEMORY_LIMIT_MB": "256"},
        "cap off (wakes every 50 ms)": {"BULKHEAD_MEMORY_LIMIT_MB": "0"},
        "cap on, every 1000 ms": {"BULKHEAD_MEMORY_LIMIT_MB": "256",
                                  "BULKHEAD_MEMORY_POLL_MS": "1000"},
    }
    spent: dict[str, float] = {}
    count, seconds = max(10, n // 100), 0.1
    for name, env in sampling.items():
        with supervised("sleep", env) as rt:
            for _ in range(10):  # the first ones fork the spare, warm caches
                rt.call({"seconds": seconds})
            before = cpu_ns(rt.process.pid)
            for _ in range(count):
                rt.call({"seconds": seconds})
            spent[name] = (cpu_ns(rt.process.pid) - before) / 1e3 / count  # us per invocation
    floor = spent["cap on, every 1000 ms"]
    rows = [[name, f"{us:,.0f} µs", f"{max(0.0, us - floor):,.0f} µs",
             f"{max(0.0, us - floor) / (seconds * 1e6) * 100:.2f} %"]
            for name, us in spent.items()]
    second = table(["sampling", "supervisor CPU per 100 ms invocation",
                    "above sampling every 1000 ms", "share of one core per busy worker"], rows)
    return first + "\n\n" + second


# -- 2. overshoot ---------------------------------------------------------------------


def overshoot(reps: int) -> str:
    rows = []
    # How fast the allocator is, uncapped.
    with supervised("shared_fast", {"BULKHEAD_MEMORY_LIMIT_MB": "0"}) as rt:
        progress = rt.task_root / "progress"
        progress.write_bytes(bytes(8))
        result = rt.call({"mb": 512, "progress": str(progress)})
        rate = 512 / json.loads(result.body)["seconds"]
    for poll in ("10", "1"):
        env = {"BULKHEAD_MEMORY_LIMIT_MB": "256", "BULKHEAD_MEMORY_POLL_MS": poll}
        touched: list[int] = []
        sampled: list[int] = []
        with supervised("shared_fast", env) as rt:
            progress = rt.task_root / "progress"
            for _ in range(reps):
                progress.write_bytes(bytes(8))
                result = rt.call({"mb": 2048, "progress": str(progress)})
                body = json.loads(result.body)
                if body.get("errorType") != "Runtime.OutOfMemory":
                    raise RuntimeError(f"expected an OOM kill: {body}")
                touched.append(int.from_bytes(progress.read_bytes(), "little"))
                match = re.search(r"peak seen (\d+) MB", body["errorMessage"])
                sampled.append(int(match[1]) if match else -1)
        over = [t - 256 for t in touched]
        rows.append([
            f"shared memory, RSS watch every {poll} ms",
            f"{statistics.median(over):.0f} MB", f"{max(over):.0f} MB",
            f"{statistics.median(sampled):.0f} MB", "Runtime.OutOfMemory",
        ])
    with supervised("private_steps", {"BULKHEAD_MEMORY_LIMIT_MB": "256"}) as rt:
        body = json.loads(rt.call({}).body)
    rows.append(["private memory (10 MB steps), RLIMIT_DATA", "0 MB (refused)", "0 MB",
                 "—", body.get("errorType", "?")])
    return (f"Allocator speed (uncapped, one byte per 4 KiB page of a MAP_SHARED map): "
            f"{rate:,.0f} MB/s; {reps} kills per row.\n\n"
            + table(["what grows", "overshoot past 256 MB (median)", "max",
                     "peak the watch saw (median, above baseline)", "answered"], rows))


# -- 3. timeout margin --------------------------------------------------------------


DEFAULT_MARGIN_MS = 50


def margin_latency(reps: int) -> str:
    margin_ms = 200
    scenarios: list[tuple[str, str, dict[str, object], int, float]] = [
        ("busy loop, 1 worker", "busy", {}, 1, 0.5),
        ("libc sleep(), 1 worker", "c_sleep", {}, 1, 0.5),
        ("busy loops on 4 workers at once (2 cores)", "busy", {}, 4, 0.5),
        ("1 GB resident worker, busy loop", "big_then_busy", {"mb": 1024}, 1, 4.0),
    ]
    rows = []
    for name, handler, event, workers, timeout_s in scenarios:
        count = reps if handler != "big_then_busy" else max(5, reps // 10)
        env = {"BULKHEAD_TIMEOUT_MARGIN_MS": str(margin_ms), "BULKHEAD_MEMORY_LIMIT_MB": "0"}
        latencies: list[float] = []
        with supervised(handler, env, timeout_s=timeout_s, workers=workers) as rt:
            answered: dict[str, float] = {}

            def note(future: Future[InvokeResult], answered: dict[str, float] = answered) -> None:
                answered[future.result().request_id] = time.time()

            for _ in range(0, count, workers):
                futures = [rt.submit(event) for _ in range(workers)]
                for future in futures:
                    future.add_done_callback(note)
                for future in futures:
                    result = future.result(60)
                    if result.kind != "error":
                        raise RuntimeError(f"{name}: answered {result.kind}, not by the runtime")
                # Each slot reaps its killed worker before it polls again.
                rt.emulator.wait_for_next_poll(timeout=10, polls=workers)
            deadlines = {
                d.request_id: int(dict(d.headers)["Lambda-Runtime-Deadline-Ms"]) / 1000
                for d in rt.emulator.deliveries if d.request_id
            }
            for request_id, at in answered.items():
                slack_ms = (deadlines[request_id] - at) * 1000
                latencies.append(margin_ms - slack_ms)
        late = sum(1 for latency in latencies if latency > DEFAULT_MARGIN_MS)
        rows.append([name, str(len(latencies)), f"{pct(latencies, 50):.1f}",
                     f"{pct(latencies, 99):.1f}", f"{max(latencies):.1f}", str(late)])
    return table(["stopped handler", "timeouts", "p50 ms", "p99 ms", "max ms",
                  f"over {DEFAULT_MARGIN_MS} ms"], rows)


# -- 4. workers ----------------------------------------------------------------------


def workers_throughput(rounds: int, n: int) -> str:
    rates: dict[int, list[float]] = {1: [], 2: [], 4: []}
    for _ in range(rounds):
        for workers, samples in rates.items():
            with supervised("sleep", {}, workers=workers) as rt:
                samples.append(throughput(rt, {"seconds": 0.01}, n * workers, warm=20))
    rows = []
    for workers, r in rates.items():
        ideal = workers * 1000 / 10
        rows.append([str(workers), f"{statistics.median(r):,.0f}", f"{ideal:,.0f}",
                     f"{statistics.median(r) / ideal * 100:.0f} %"])
    return table(["workers", "invocations/s (median)", "ideal (workers / 10 ms)",
                  "of ideal"], rows)


# -- main -------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    rounds, n, reps = (1, 500, 10) if args.quick else (3, 3000, 200)
    print(f"Machine: {machine()}\n")
    print("## Memory watch cost\n")
    print(watch_cost(rounds, n), "\n", flush=True)
    print("## Overshoot past the cap\n")
    print(overshoot(max(5, reps // 10)), "\n", flush=True)
    print("## Timeout margin: kill decision to /error accepted\n")
    print(margin_latency(reps), "\n", flush=True)
    print("## Throughput with 1, 2 and 4 workers (handler sleeps 10 ms)\n")
    print(workers_throughput(rounds, n // 5), flush=True)


if __name__ == "__main__":
    main()
