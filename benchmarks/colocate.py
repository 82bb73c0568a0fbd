"""Does co-location pay with several slots?  Throughput with ``BULKHEAD_COLOCATE`` on and off.

    python benchmarks/colocate.py [--rounds 5]

Runs the supervised runtime with 1 to 4 slots (``BULKHEAD_WORKERS``) against
the project's emulator, which keeps every slot busy, on a handler that keeps
its CPU busy for 0 or 0.2 ms, and prints invocations per second with
co-location on and off (median of the rounds, interleaved).  The figures
behind the rule in ``lambda_bulkhead/process/_affinity.py``: slots get a CPU of their
own only while there are enough CPUs.  Uses the venv ``run.py`` sets up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import run  # noqa: E402

from lambda_bulkhead.emulator import Emulator  # noqa: E402

CASES = [(1, 0.0, 3000), (2, 0.0, 3000), (2, 0.2, 2000), (3, 0.2, 2000), (4, 0.0, 3000),
         (4, 0.2, 2000)]


def throughput(setup: run.Setup, slots: int, colocate: bool, busy_ms: float, events: int) -> float:
    with Emulator(timeout_s=60) as emulator:
        made = run.command(setup, "supervised", "busy.handler", slots)
        assert made is not None
        argv, env = made
        env.update(emulator.function_env())
        env["BULKHEAD_COLOCATE"] = "1" if colocate else "0"
        runtime = subprocess.Popen(argv, env=env, cwd=str(run.HANDLERS),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            event = json.dumps({"ms": busy_ms}).encode()
            assert emulator.invoke(event, timeout=30).kind == "response"
            started = time.monotonic()
            futures = [emulator.submit(event) for _ in range(events)]
            for future in futures:
                assert future.result(60).kind == "response"
            return events / (time.monotonic() - started)
        finally:
            runtime.terminate()
            runtime.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup = run.set_up()
    for slots, busy_ms, events in CASES:
        figures: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for colocate in (True, False):
                figures[colocate].append(throughput(setup, slots, colocate, busy_ms, events))
        on, off = (statistics.median(figures[c]) for c in (True, False))
        print(f"{slots} slot(s), handler busy {busy_ms} ms: co-location on {on:6.0f}/s, "
              f"off {off:6.0f}/s ({on / off:.2f}x)")


if __name__ == "__main__":
    main()
