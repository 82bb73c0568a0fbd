"""User and system CPU, and syscalls, per invocation, for each process of a runtime.

    python benchmarks/per_invocation.py [--contender supervised] [--seconds 3] [--strace]

Serves 100 B events from the lean stand-in, waits for a warm-up, then reads
each process's CPU times (``psutil``) over a window and divides by the
invocations answered in it.  ``--strace`` also counts the syscalls of the
main process and of the worker over the window (``strace -c``; slows the run,
so the CPU figures of that run are not comparable).  Uses the venvs ``run.py``
sets up (run it once first).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
from _serving import answered, warm_runtime  # noqa: E402

EVENTS = 200_000
WARM_UP = 3_000


async def measure(contender: str, seconds: float, strace: bool) -> None:
    async with warm_runtime(contender, EVENTS, WARM_UP) as (server, runtime):
        processes = [psutil.Process(runtime.pid), *psutil.Process(runtime.pid).children(True)]
        roles = {
            p.pid: "main" if p.pid == runtime.pid
            else "template" if p.ppid() == runtime.pid else "worker"
            for p in processes
        }
        tracers = []
        traced_from = answered(server)
        if strace:
            busy = [p for p in processes if roles[p.pid] != "template"]
            for process in busy:
                out = run.WORK / f"strace-{contender}-{process.pid}.txt"
                tracers.append((process.pid, out, subprocess.Popen(
                    ["strace", "-f", "-c", "-p", str(process.pid), "-o", str(out)],
                    stderr=subprocess.DEVNULL,
                )))
            await asyncio.sleep(0.5)  # attached
        before = {p.pid: p.cpu_times() for p in processes}
        start = answered(server)
        await asyncio.sleep(seconds)
        served = answered(server) - start
        after = {p.pid: p.cpu_times() for p in processes}
        for _, _, tracer in tracers:
            tracer.send_signal(signal.SIGINT)
            tracer.wait()
        traced = answered(server) - traced_from
    print(f"{contender}: {served / seconds:,.0f} invocations/s over {seconds} s")
    for process in processes:
        user = (after[process.pid].user - before[process.pid].user) / served * 1e6
        system = (after[process.pid].system - before[process.pid].system) / served * 1e6
        print(f"  {roles[process.pid]:8} pid {process.pid}: user {user:5.0f} us, "
              f"system {system:5.0f} us per invocation")
    for pid, out, _ in tracers:
        rows = [line.split() for line in out.read_text().splitlines()[2:]]
        rows = [row for row in rows if len(row) >= 5 and row[3].isdigit()]
        if not rows:
            continue  # the idle spare worker
        print(f"  syscalls of the {roles[pid]} (strace -c, {out.name}):")
        for row in rows:
            print(f"    {row[-1]:12} {int(row[3]) / traced:5.2f} per invocation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contender", default="supervised",
                        help="awslambdaric, in-process or supervised")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--strace", action="store_true", help="also count syscalls")
    args = parser.parse_args()
    asyncio.run(measure(args.contender, args.seconds, args.strace))


if __name__ == "__main__":
    main()
