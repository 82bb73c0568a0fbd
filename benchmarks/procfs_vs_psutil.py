"""The runtime's ``/proc`` readers against psutil's equivalents, per call.

    python benchmarks/procfs_vs_psutil.py [--checkout PATH] [--mb N]

Starts a stand-in worker (a child that touches ``--mb`` MB, default 100, and
starts two grandchildren, one of them with a child of its own), then times
each ``/proc`` reader (those of ``lambda_bulkhead.process._procfs``, and the
ones psutil replaced) beside psutil's equivalent (median µs per call over 5
batches), and psutil's import in a fresh interpreter (median of 7, with the
RSS it adds).  The figures and the
decision they led to per reader are in ``docs/benchmarks.md`` ("/proc readers
or psutil").
"""

# ruff: noqa: PLC0415 - each side imports what it times
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys

from micro import timed

HERE = os.path.dirname(os.path.abspath(__file__))

STAND_IN = """
import mmap, os, sys, time
block = mmap.mmap(-1, {mb} << 20)
for offset in range(0, len(block), 4096):
    block[offset] = 1
for depth in (1, 2):
    if os.fork() == 0:
        if depth == 2 and os.fork() == 0:
            time.sleep(3600)
        time.sleep(3600)
print("ready", flush=True)
time.sleep(3600)
"""


def import_cost(checkout: str) -> tuple[float, float]:
    """Median ms to import psutil in a fresh interpreter, and the MB of RSS it adds."""
    code = (
        "import time, resource\n"
        "def rss():\n"
        "    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * 4096\n"
        "before = rss(); t = time.perf_counter()\n"
        "import psutil\n"
        "print((time.perf_counter() - t) * 1000, (rss() - before) / 2**20)\n"
    )
    runs = []
    for _ in range(7):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=checkout).stdout.split()
        runs.append((float(out[0]), float(out[1])))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", default=os.path.dirname(HERE))
    parser.add_argument("--mb", type=int, default=100, help="the stand-in worker's touched MB")
    args = parser.parse_args()
    sys.path.insert(0, args.checkout)

    import_ms, import_mb = import_cost(args.checkout)

    import psutil

    from lambda_bulkhead.process import _procfs

    def proc_descends_from(pid: int, ancestor: int) -> bool:
        """The /proc ancestry walk the stop-signal check used before psutil."""
        for _ in range(64):
            parent = _procfs._parent_of(pid)
            if parent is None or parent <= 1:
                return False
            if parent == ancestor:
                return True
            pid = parent
        return False

    worker = subprocess.Popen([sys.executable, "-c", STAND_IN.format(mb=args.mb)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        worker.stdout.readline()
        pid = worker.pid
        grandchild = psutil.Process(pid).children(recursive=True)[-1].pid
        reader = _procfs.RssReader(pid)
        process = psutil.Process(pid)
        descendants = process.children(recursive=True)
        me = os.getpid()
        rows: list[tuple[str, str, float, float]] = [
            ("own RSS (worker Ready, template, supervisor cap)",
             "current_rss() vs Process().memory_info().rss",
             timed(_procfs.current_rss), timed(lambda: psutil.Process().memory_info().rss)),
            ("a worker's RSS, every sample of a running invocation",
             "RssReader.read() vs Process.memory_info().rss (object kept)",
             timed(reader.read), timed(lambda: process.memory_info().rss)),
            ("a worker's PSS instead (smaps_rollup)",
             "RssReader.read() vs Process.memory_full_info().pss",
             timed(reader.read), timed(lambda: process.memory_full_info().pss, batch=50)),
            ("the worker tree's RSS (worker + 3 descendants)",
             "RssReader + descendants' memory_info vs all memory_info",
             timed(lambda: reader.read() + sum(p.memory_info().rss for p in descendants)),
             timed(lambda: sum(p.memory_info().rss for p in [process, *descendants]))),
            ("a process's parent",
             "/proc/<pid>/stat vs Process(pid).ppid()",
             timed(lambda: _procfs._parent_of(pid)), timed(lambda: psutil.Process(pid).ppid())),
            ("stop-signal sender check (depth 2)",
             "/proc walk up vs Process(pid).parents()",
             timed(lambda: proc_descends_from(grandchild, me)),
             timed(lambda: me in {p.pid for p in psutil.Process(grandchild).parents()},
                   batch=200)),
            ("a process's descendants (kill_tree, kill_orphans)",
             "descendants_of(pid, parent_map()) vs Process(pid).children(recursive=True)",
             timed(lambda: _procfs.descendants_of(pid, _procfs.parent_map()), batch=50),
             timed(lambda: psutil.Process(pid).children(recursive=True), batch=50)),
        ]
        reader.close()
    finally:
        for child in psutil.Process(worker.pid).children(recursive=True):
            child.send_signal(signal.SIGKILL)
        worker.kill()
        worker.wait()

    print(f"{len(psutil.pids())} processes on the machine, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, psutil {psutil.__version__}, "
          f"stand-in worker {args.mb} MB touched")
    print(f"import psutil (fresh interpreter, median of 7): {import_ms:.1f} ms, "
          f"+{import_mb:.1f} MB RSS\n")
    print("| what | calls | /proc reader µs | psutil µs |")
    print("|---|---|---|---|")
    for what, calls, procfs_us, psutil_us in rows:
        print(f"| {what} | {calls} | {procfs_us:,.1f} | {psutil_us:,.1f} |")


if __name__ == "__main__":
    main()
