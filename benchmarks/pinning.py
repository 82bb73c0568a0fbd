"""Does the hop come from scheduling?  p50 latency with and without CPU pinning.

    python benchmarks/pinning.py [--contender supervised] [--seconds 3]

Serves 100 B events from the lean stand-in and measures each invocation's
latency (the stand-in's ``/next`` answer written -> answer read) three ways:
no pinning; the stand-in on CPU 0 and the runtime's main process on CPU 0,
its other processes on CPU 1; the stand-in on CPU 0 and every process of the
runtime on CPU 1.  The experiment behind ``BULKHEAD_COLOCATE`` (see
docs/benchmarks.md), so the runtime's own co-location is off here
(``BULKHEAD_COLOCATE=0``).  Needs two CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _serving import answered, latencies_us, warm_runtime  # noqa: E402

EVENTS = 100_000
WARM_UP = 2_000


def _pin(runtime_pid: int, mode: str) -> None:
    if mode == "none":
        return
    os.sched_setaffinity(0, {0})
    for process in [psutil.Process(runtime_pid), *psutil.Process(runtime_pid).children(True)]:
        cpus = {1} if mode == "runtime-on-1" or process.pid != runtime_pid else {0}
        for thread in process.threads():
            os.sched_setaffinity(thread.id, cpus)


async def measure(contender: str, mode: str, seconds: float) -> None:
    try:
        async with warm_runtime(
            contender, EVENTS, WARM_UP, env={"BULKHEAD_COLOCATE": "0"}
        ) as (server, runtime):
            _pin(runtime.pid, mode)
            start = answered(server)
            await asyncio.sleep(seconds)
            end = answered(server)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    latencies = latencies_us(server, start, end)
    print(f"{contender:12} {mode:22} {(end - start) / seconds:7,.0f}/s  "
          f"p50 {statistics.median(latencies):5.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contender", default="supervised")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two CPUs")
    for contender in ("in-process", args.contender):
        for mode in ("none", "main-on-0-others-on-1", "runtime-on-1"):
            asyncio.run(measure(contender, mode, args.seconds))


if __name__ == "__main__":
    main()
