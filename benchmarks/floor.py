"""How low can the hop go on this machine?  The floor under issue 7's 60 µs target.

    python benchmarks/floor.py [--seconds 3] [--rounds 3]

Two measurements, for docs/benchmarks.md ("What remains"):

* a pipe round trip between two processes (a few bytes there and back, as an
  Invoke frame and its answer cross), unpinned and with both on one CPU: the
  cost of the two hand-offs any supervised runtime adds, with no work at all;
* p50 latency (the stand-in's ``/next`` answer written -> the answer read)
  of lambda-bulkhead in-process, supervised (as configured by default, and
  with ``BULKHEAD_COLOCATE=0``), and ``_bare_relay.py``, the least a
  supervised Python runtime can do (no deadline, memory, crash, output or
  log handling, no co-location), interleaved over rounds.  bare relay -
  in-process is the hop of a runtime that does nothing but hand the event over.

Uses the venvs ``run.py`` sets up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _serving import answered, latencies_us, warm_runtime  # noqa: E402

EVENTS = 100_000
WARM_UP = 2_000
ROUND_TRIPS = 20_000
MESSAGE = b"x" * 200


def pipe_round_trip_us(cpus: set[int] | None) -> float:
    """p50 of a write to a child and the read of its echo, in µs."""
    there_r, there_w = os.pipe()
    back_r, back_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(there_w)
        os.close(back_r)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        while data := os.read(there_r, 4096):
            os.write(back_w, data)
        os._exit(0)
    os.close(there_r)
    os.close(back_w)
    everywhere = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        times = []
        for _ in range(ROUND_TRIPS):
            start = time.perf_counter_ns()
            os.write(there_w, MESSAGE)
            os.read(back_r, 4096)
            times.append(time.perf_counter_ns() - start)
    finally:
        os.sched_setaffinity(0, everywhere)
        os.close(there_w)
        os.close(back_r)
        os.waitpid(pid, 0)
    return statistics.median(times) / 1000


#: name -> (contender, program instead of it, environment added)
CONTENDERS: dict[str, tuple[str, list[str] | None, dict[str, str] | None]] = {
    "in-process": ("in-process", None, None),
    "supervised": ("supervised", None, None),
    "supervised, BULKHEAD_COLOCATE=0": ("supervised", None, {"BULKHEAD_COLOCATE": "0"}),
    "bare relay": ("in-process", [str(HERE / "_bare_relay.py")], None),
}


async def p50_latency_us(name: str, seconds: float) -> float:
    contender, argv, env = CONTENDERS[name]
    async with warm_runtime(contender, EVENTS, WARM_UP, argv, env) as (server, _):
        start = answered(server)
        await asyncio.sleep(seconds)
        end = answered(server)
    return statistics.median(latencies_us(server, start, end))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two CPUs")
    print(f"pipe round trip p50: {pipe_round_trip_us(None):5.1f} us across CPUs, "
          f"{pipe_round_trip_us({0}):5.1f} us on one CPU")
    contenders = tuple(CONTENDERS)
    p50s: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name in contenders:
            p50s[name].append(asyncio.run(p50_latency_us(name, args.seconds)))
    medians = {name: statistics.median(values) for name, values in p50s.items()}
    for name in contenders:
        rounds = ", ".join(f"{value:.0f}" for value in p50s[name])
        print(f"{name:32} p50 {medians[name]:5.0f} us  (rounds: {rounds})")
    for name in contenders[1:]:
        print(f"hop of {name:32} {medians[name] - medians['in-process']:4.0f} us")


if __name__ == "__main__":
    main()
