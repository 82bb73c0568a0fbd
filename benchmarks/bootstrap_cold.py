"""Cold start through ``bootstrap`` against the official runtime, side by side (issue 18).

    python benchmarks/bootstrap_cold.py                     # 5 rounds x 8 starts of each
    python benchmarks/bootstrap_cold.py --rounds 7 --reps 10
    python benchmarks/bootstrap_cold.py --compare-ref HEAD~3  # also an older bootstrap.sh
    python benchmarks/bootstrap_cold.py --nice -10   # ahead of other work (root)

What users deploy is ``bootstrap``, so that is what is timed: exec of the
program to the first ``GET /next`` it sends (and to the first answer), each
start against a fresh loopback stand-in (``_standin.StandIn``, through
``_driver.py``'s ``cold`` mode, as ``run.py``'s cold-start row).  Contenders,
interleaved start by start (A B C D, B C D A, C D A B ...: the order turns,
so that no contender always starts right after the same one), so that the
gap between two is taken between neighbouring starts that saw the same load:

* ``awslambdaric``: ``python -m awslambdaric trivial.handler`` (its own venv,
  as in ``run.py``);
* ``awslambdaric (bare)``: the same, installed with ``pip install --target``
  into a directory on ``PYTHONPATH`` and run by the same package-free Python
  as the packaged bootstrap: the like-for-like reference (a venv's
  site-packages costs a few ms at every start, ``distutils-precedence.pth``
  among it);
* ``python -m lambda_bulkhead``: ``python -m lambda_bulkhead run`` from the
  checkout, the lower bound for anything that starts it;
* ``bootstrap.sh``: the checkout's ``bootstrap.sh`` run as Lambda runs it (no
  arguments), ``BULKHEAD_PYTHON`` naming the benchmark venv's Python;
* ``bootstrap (packaged)``: ``lambda-bulkhead package benchmarks/handlers``,
  unzipped, its ``bootstrap`` run by a Python whose venv holds no package at
  all: the zip as Lambda unpacks it into ``/var/task``;
* ``python -m lambda_bulkhead (packaged)``: that same unzipped package and
  package-free Python, started without ``bootstrap``: the bootstrap's own cost
  is the difference;
* ``bootstrap (packaged, BULKHEAD_SHUTDOWN_EXTENSION=0)``: the same without
  the internal extension (issue 17): the paired difference is what registering
  it costs the cold start (one round trip, one more connection);
* ``bootstrap@REF`` with ``--compare-ref REF``: ``bootstrap.sh`` as it was at
  git revision REF, same set-up as ``bootstrap.sh``.

Also the CPU time the runtime's processes had used by the first answer: far
less sensitive than wall time to what else the machine runs (it misses
processes that already exited, such as the old bootstrap's checks).

Then the bootstrap's own cost without a runtime: ``python -c pass``, the same
behind ``sh``, and the packaged bootstrap against ``python -m lambda_bulkhead
run`` on the same package, each run to lambda-bulkhead's "not running in
Lambda" exit (CPU from ``getrusage``, wall).

Prints a table of medians over all starts and the packaged bootstrap's gap to
awslambdaric (bare) and awslambdaric (median of the paired differences), and
the load average, since figures from a shared machine mean little without it;
raw results go to
``benchmarks/.work/results/``.  ``docs/benchmarks.md`` ("Cold start through
bootstrap") has the figures and what they mean.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import run

PACKAGED = run.WORK / "packaged"
BARE_VENV = run.WORK / "venv-bare"
#: issue 18's target: exec of bootstrap -> first /next within awslambdaric + this.
TARGET_GAP_MS = 5.0
#: The packaged bootstrap without the internal shutdown extension (issue 17).
NO_EXTENSION = "bootstrap (packaged, BULKHEAD_SHUTDOWN_EXTENSION=0)"


def bare_python() -> Path:
    """A venv with nothing installed: only what the zip brings can be imported."""
    python = BARE_VENV / "bin" / "python"
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--without-pip", str(BARE_VENV)], check=True)
    return python


def awslambdaric_target(setup: run.Setup) -> Path | None:
    """awslambdaric installed into a plain directory (for a package-free Python)."""
    if setup.aws_python is None:
        return None
    target = run.WORK / "awslambdaric-target"
    if not (target / "awslambdaric").exists():
        subprocess.run([str(setup.aws_python), "-m", "pip", "install", "--quiet", "--target",
                        str(target), run.AWSLAMBDARIC], check=True)
    return target


def packaged_bootstrap() -> Path:
    """``benchmarks/handlers`` packaged by ``lambda-bulkhead package`` (run by this
    Python, which must have lambda-bulkhead installed) and unzipped."""
    zip_path = run.WORK / "handlers.zip"
    subprocess.run(
        [sys.executable, "-m", "lambda_bulkhead", "package", str(run.HANDLERS),
         "--output", str(zip_path)],
        env={**os.environ, "PYTHONPATH": str(run.ROOT)}, check=True, stdout=subprocess.DEVNULL,
    )
    if PACKAGED.exists():
        shutil.rmtree(PACKAGED)
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            archive.extract(info, PACKAGED)
            mode = info.external_attr >> 16 & 0o777
            if mode:
                (PACKAGED / info.filename).chmod(mode)
    return PACKAGED / "bootstrap"


def old_bootstrap(ref: str) -> Path:
    """``bootstrap.sh`` as it was at git revision ``ref``."""
    shown = subprocess.run(["git", "show", f"{ref}:bootstrap.sh"], cwd=run.ROOT,
                           capture_output=True, check=True)
    path = run.WORK / f"bootstrap-{ref.replace('/', '_')}.sh"
    path.write_bytes(shown.stdout)
    path.chmod(0o755)
    return path


def commands(setup: run.Setup, compare_ref: str | None
             ) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each contender's argv and environment."""
    made: dict[str, tuple[list[str], dict[str, str]]] = {}
    reference = run.command(setup, "awslambdaric", "trivial.handler")
    if reference is not None:
        made["awslambdaric"] = reference
        target = awslambdaric_target(setup)
        assert target is not None
        made["awslambdaric (bare)"] = (
            [str(bare_python()), "-m", "awslambdaric", "trivial.handler"],
            {**reference[1], "PYTHONPATH": f"{run.HANDLERS}:{target}"})
    bulkhead = run.command(setup, "supervised", "trivial.handler")
    assert bulkhead is not None
    made["python -m lambda_bulkhead"] = bulkhead
    env = {**bulkhead[1], "BULKHEAD_PYTHON": str(setup.bulkhead_python)}
    made["bootstrap.sh"] = ([str(run.ROOT / "bootstrap.sh")], env)
    if compare_ref:
        made[f"bootstrap@{compare_ref}"] = ([str(old_bootstrap(compare_ref))], env)
    packaged = packaged_bootstrap()
    packaged_env = {**run.base_env(), "_HANDLER": "trivial.handler",
                    "LAMBDA_TASK_ROOT": str(packaged.parent),
                    "BULKHEAD_PYTHON": str(bare_python())}
    made["bootstrap (packaged)"] = ([str(packaged)], packaged_env)
    made[NO_EXTENSION] = ([str(packaged)], {**packaged_env, "BULKHEAD_SHUTDOWN_EXTENSION": "0"})
    made["python -m lambda_bulkhead (packaged)"] = (
        [str(bare_python()), "-m", "lambda_bulkhead", "run", "trivial.handler"],
        {**packaged_env, "PYTHONPATH": str(packaged.parent)})
    return made


def startup_cost(made: dict[str, tuple[list[str], dict[str, str]]], reps: int
                 ) -> dict[str, tuple[float, float]]:
    """The bootstrap's own cost, without a runtime: each program run to the point
    where lambda-bulkhead's command line stops for want of AWS_LAMBDA_RUNTIME_API
    (so the same code runs after the interpreter starts), interleaved; median
    (CPU ms of the process and what it waited for, wall ms) of each."""
    direct_argv, env = made["python -m lambda_bulkhead (packaged)"]
    bare = direct_argv[0]
    env = {name: value for name, value in env.items() if name != "AWS_LAMBDA_RUNTIME_API"}
    programs = {
        "python -c pass": [bare, "-c", "pass"],
        "sh, then exec python -c pass": ["/bin/sh", "-c", 'exec "$0" -c pass', bare],
        "python -m lambda_bulkhead run (packaged)": direct_argv,
        "bootstrap (packaged)": made["bootstrap (packaged)"][0],
    }
    cpu: dict[str, list[float]] = {name: [] for name in programs}
    wall: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(reps):
        for name, argv in programs.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(argv, env=env, cwd=env["LAMBDA_TASK_ROOT"],
                           stderr=subprocess.DEVNULL, check=False)
            wall[name].append((time.perf_counter() - started) * 1000)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append((after.ru_utime + after.ru_stime
                              - before.ru_utime - before.ru_stime) * 1000)
    return {name: (statistics.median(cpu[name]), statistics.median(wall[name]))
            for name in programs}


def extension_round_trip(reps: int) -> tuple[float, float]:
    """What registering the internal extension itself costs, without a cold start
    around it: ``ShutdownExtension.register`` (register, then event/next sent on
    a second connection) against the stand-in, ``reps`` times; median wall and
    CPU of this process in ms (the stand-in runs on a thread of it, so the CPU
    is both sides')."""
    import asyncio  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from _standin import StandIn  # noqa: PLC0415

    sys.path.insert(0, str(run.ROOT))
    from lambda_bulkhead.runtime_api._extension import ShutdownExtension  # noqa: PLC0415

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = StandIn([b"{}"])
    port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(reps):
        started, started_cpu = time.perf_counter(), time.process_time()
        extension = ShutdownExtension.register(("127.0.0.1", port))
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        extension.close()
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=8,
                        help="starts per contender per round, interleaved")
    parser.add_argument("--nice", type=int, default=0, metavar="N",
                        help="run at this niceness (negative: ahead of other work on a "
                             "shared machine; needs root)")
    parser.add_argument("--compare-ref", metavar="REF",
                        help="also time bootstrap.sh as it was at this git revision")
    options = parser.parse_args()
    if options.nice:
        os.nice(options.nice)  # inherited by the driver and every runtime it starts
    setup = run.set_up()
    made = commands(setup, options.compare_ref)
    first_next: dict[str, list[float]] = {name: [] for name in made}
    first_answer: dict[str, list[float]] = {name: [] for name in made}
    cpu: dict[str, list[float]] = {name: [] for name in made}
    # One start of each contender in turn (A B C ... B C A ... C A B ...):
    # neighbouring starts see the same load, so differences are taken start by
    # start; the order turns at each turn, so that no contender always starts
    # right after the same one (a start after one of the same tree and Python
    # finds more of what it reads warm).
    names = list(made)
    turn = 0
    for round_number in range(1, options.rounds + 1):
        for _ in range(options.reps):
            shift = turn % len(names)
            turn += 1
            for name in names[shift:] + names[:shift]:
                argv, env = made[name]
                cwd = env.get("LAMBDA_TASK_ROOT", str(run.HANDLERS))
                spec: dict[str, Any] = {"cmd": argv, "env": env, "cwd": cwd, "mode": "cold",
                                        "reps": 1,
                                        "log": str(run.WORK / "logs" / "bootstrap-cold.log")}
                outcome = run.drive(setup, spec)
                if outcome.get("error") or outcome.get("errors") or not outcome["first_next_ms"]:
                    raise SystemExit(f"{name}: {outcome}")
                first_next[name] += outcome["first_next_ms"]
                first_answer[name] += outcome["first_answer_ms"]
                cpu[name] += outcome["cpu_ms"]
        run.log(f"round {round_number}/{options.rounds}: " + ", ".join(
            f"{name} {statistics.median(first_next[name][-options.reps:]):.1f}"
            for name in made))
    print()
    print("| contender | exec → first /next (ms) | exec → first answer (ms) "
          "| CPU to the first answer (ms) |")
    print("|---|---:|---:|---:|")
    for name in made:
        print(f"| {name} | {statistics.median(first_next[name]):.1f} "
              f"| {statistics.median(first_answer[name]):.1f} "
              f"| {statistics.median(cpu[name]):.1f} |")
    print()
    for reference in ("awslambdaric (bare)", "awslambdaric"):
        if reference not in made:
            continue
        gaps = [a - b for a, b in zip(first_next["bootstrap (packaged)"],
                                      first_next[reference], strict=True)]
        gap = statistics.median(gaps)
        verdict = "met" if gap <= TARGET_GAP_MS else "NOT met"
        print(f"packaged bootstrap - {reference}, exec → first /next, median of "
              f"{len(gaps)} paired starts: {gap:+.1f} ms (target <= +{TARGET_GAP_MS:.0f} ms: "
              f"{verdict})")
    own = first_next["bootstrap (packaged)"]
    direct = first_next["python -m lambda_bulkhead (packaged)"]
    print(f"the bootstrap's own cost (packaged bootstrap - python -m lambda_bulkhead on the "
          f"same package), median of {len(own)} paired starts: "
          f"{statistics.median(a - b for a, b in zip(own, direct, strict=True)):+.1f} ms")
    for measure, times in (("exec → first /next", first_next),
                           ("exec → first answer", first_answer)):
        paired = zip(times["bootstrap (packaged)"], times[NO_EXTENSION], strict=True)
        cost = statistics.median(a - b for a, b in paired)
        print(f"the internal shutdown extension's cost, {measure} (packaged bootstrap - "
              f"the same with BULKHEAD_SHUTDOWN_EXTENSION=0), median of "
              f"{len(times[NO_EXTENSION])} paired starts: {cost:+.1f} ms")
    wall_ms, cpu_ms = extension_round_trip(options.reps * 20)
    print(f"ShutdownExtension.register alone (register + event/next on a second "
          f"connection, loopback stand-in), median of {options.reps * 20}: "
          f"{wall_ms:.2f} ms wall, {cpu_ms:.2f} ms CPU")
    print("\n| to lambda-bulkhead's \"not running in Lambda\" exit | CPU (ms) | wall (ms) |")
    print("|---|---:|---:|")
    startup = startup_cost(made, options.reps * 4)
    for name, (cpu_ms, wall_ms) in startup.items():
        print(f"| {name} | {cpu_ms:.1f} | {wall_ms:.1f} |")
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} CPUs")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = run.WORK / "results" / f"bootstrap-cold-{stamp}.json"
    out.write_text(json.dumps({"machine": run.machine(), "rounds": options.rounds,
                               "reps": options.reps, "first_next_ms": first_next,
                               "first_answer_ms": first_answer, "cpu_ms": cpu,
                               "startup": startup, "load": load}, indent=1))
    print(f"raw results: {out.relative_to(run.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
