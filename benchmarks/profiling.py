"""Where the time goes: profiles behind "Where the time goes" in docs/benchmarks.md.

    python benchmarks/profiling.py hot  [--contender supervised] [--size 100] [--n 20000]
    python benchmarks/profiling.py cold [--contender supervised]
    python benchmarks/profiling.py imports
    python benchmarks/profiling.py cprofile [--size 100] [--n 20000]

* ``hot``: py-spy samples every process of the runtime (``--subprocesses``,
  ``--threads``, on-CPU samples only) while it serves ``n`` events from the
  lean stand-in; prints the share of samples per process/thread and the
  functions with the most self and inclusive samples.  Raw collapsed stacks go
  to ``benchmarks/.work/profile-hot-<contender>.txt``.
* ``cold``: py-spy at 2 kHz over cold starts (exec -> first answer), same report.
* ``cprofile``: cProfile of the in-process runtime (its loop, transport and
  handler plumbing are the supervisor's slots' too) over ``n`` events.
* ``imports``: ``-X importtime`` of the runtime up to its first ``/next``
  (the stand-in holds no event, so the runtime blocks there); prints the
  biggest imports and whether structlog, psutil, httpx, the events module or
  the emulator were imported before that first ``/next``.

Uses the venvs ``run.py`` sets up (run it once first).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pstats
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402

PY_SPY = "py-spy"
PY_SPY_FLAGS = os.environ.get("BENCH_PY_SPY_FLAGS", "--gil").split()


def _setup() -> run.Setup:
    return run.set_up()


def py_spy_spec(setup: run.Setup, contender: str, handler: str, out: Path, rate: int,
                **extra: Any) -> dict[str, Any]:
    made = run.command(setup, contender, handler)
    assert made is not None, f"{contender} is not available"
    argv, env = made
    wrapped = [PY_SPY, "record", "--subprocesses", "--threads", "--nonblocking", *PY_SPY_FLAGS,
               "-r", str(rate), "-f", "raw",
               "-o", str(out), "--", *argv]
    return {"cmd": wrapped, "env": env, "cwd": str(run.HANDLERS),
            "log": str(run.WORK / "logs" / "profile.log"),
            "stop_signal": "SIGINT", **extra}


_PROCESS = re.compile(r"^process \d+:\"?(?P<cmd>[^;]*?)\"?$")
_THREAD = re.compile(r"^thread \((?P<id>0x[0-9A-Fa-f]+)\)$")


def summarize(path: Path, top: int = 25) -> str:
    """Shares per process/thread and the busiest functions of a raw py-spy file."""
    per_place: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        place = []
        code = []
        for frame in frames:
            if frame.startswith("process "):
                place.append(_role(frame))
            elif _THREAD.match(frame):
                continue
            else:
                code.append(frame)
        thread = _thread_role(code)
        key = " / ".join(place) + (f" [{thread}]" if thread else "")
        per_place[key] += count
        total += count
        if code:
            self_time[f"{key}: {_short(code[-1])}"] += count
            for frame in set(code):
                inclusive[f"{key}: {_short(frame)}"] += count
    lines = [f"{total} samples", "", "share per process [thread]:"]
    for key, count in per_place.most_common():
        lines.append(f"  {100 * count / total:5.1f}%  {key}")
    lines += ["", f"top {top} by self samples:"]
    for key, count in self_time.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {key}")
    lines += ["", f"top {top} by inclusive samples:"]
    for key, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {key}")
    return "\n".join(lines)


def _role(frame: str) -> str:
    text = frame.split(":", 1)[1] if ":" in frame else frame
    if "py-spy" in text:
        return "py-spy"
    if "awslambdaric" in text:
        return "awslambdaric"
    if "lambda_bulkhead" in text:
        return "runtime"
    return text.strip('"')[:40]


def _thread_role(code: list[str]) -> str:
    joined = ";".join(code)
    if "_run_slot" in joined:
        return "slot thread"
    if "run_worker" in joined:
        return "worker"
    if "run_template" in joined:
        return "template"
    if "_serve_main" in joined or "run_supervised" in joined:
        return "supervisor main"
    return ""


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py:123)"
    match = re.match(r"^(?P<fn>.*?) \((?P<path>.*?):(?P<line>\d+)\)$", frame)
    if not match:
        return frame
    return f"{match['fn']} ({os.path.basename(match['path'])}:{match['line']})"


def hot(args: argparse.Namespace) -> None:
    setup = _setup()
    safe = args.contender.replace("/", "_").replace("@", "-")
    out = run.WORK / f"profile-hot-{safe}-{args.size}.txt"
    spec = py_spy_spec(setup, args.contender, "trivial.handler", out, args.rate,
                       mode="stream", n=args.n, warm=0, size=args.size, timeout_s=300)
    outcome = run.drive(setup, spec, timeout_s=400)
    print(json.dumps({k: outcome.get(k) for k in ("error", "throughput", "runtime_cpu_us")}))
    _wait_for(out)
    print(summarize(out, args.top))


def cold(args: argparse.Namespace) -> None:
    setup = _setup()
    safe = args.contender.replace("/", "_").replace("@", "-")
    out = run.WORK / f"profile-cold-{safe}.txt"
    spec = py_spy_spec(setup, args.contender, "trivial.handler", out, 2000,
                       mode="cold", reps=1, pause_s=0.5)
    outcome = run.drive(setup, spec)
    print(json.dumps(outcome))
    _wait_for(out)
    print(summarize(out, args.top))


def cprofile(args: argparse.Namespace) -> None:
    """cProfile of the in-process runtime (the loop the supervisor's slots share)
    while it serves ``n`` events; SIGINT ends it and cProfile writes its stats."""
    setup = _setup()
    made = run.command(setup, "in-process", "trivial.handler")
    assert made is not None
    argv, env = made
    out = run.WORK / f"cprofile-in-process-{args.size}.prof"
    out.unlink(missing_ok=True)
    cmd = [argv[0], "-m", "cProfile", "-o", str(out), *argv[1:]]  # argv[1:]: -m lambda_bulkhead ...
    spec = {"cmd": cmd, "env": env, "cwd": str(run.HANDLERS), "stop_signal": "SIGINT",
            "log": str(run.WORK / "logs" / "profile.log"), "mode": "stream",
            "n": args.n, "warm": 0, "size": args.size, "timeout_s": 300}
    outcome = run.drive(setup, spec, timeout_s=400)
    print(json.dumps({k: outcome.get(k) for k in ("error", "throughput")}))
    _wait_for(out)
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(args.top)


def _wait_for(path: Path, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


WATCHED = ("structlog", "psutil", "httpx", "httpcore", "h11", "anyio", "lambda_bulkhead.events",
           "lambda_bulkhead.emulator", "asyncio", "ssl", "email", "logging", "json",
           "dataclasses", "typing", "argparse", "subprocess", "uuid", "decimal")


def imports(args: argparse.Namespace) -> None:
    """-X importtime up to the first /next (no event is ever queued)."""
    setup = _setup()
    rows, first_next_ms = run.imports_before_first_next(setup, args.contender)
    names = {name for *_, name in rows}
    print(f"{args.contender}: first /next {first_next_ms:.1f} ms after Popen; "
          f"{len(rows)} modules imported before it, "
          f"{sum(r[0] for r in rows) / 1000:.1f} ms of import time (self, summed)")
    print("watched modules imported before the first /next:")
    for watched in WATCHED:
        hit = [name for name in names if name == watched or name.startswith(watched + ".")]
        print(f"  {watched:28} {'yes' if hit else 'no'}")
    print(f"top {args.top} top-level imports by cumulative µs:")
    for _self_us, cumulative, depth, name in sorted(rows, key=lambda r: -r[1]):
        if depth <= 1:
            print(f"  {cumulative:8} µs  {name}")
            args.top -= 1
            if args.top <= 0:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("hot", "cold", "imports", "cprofile"):
        p = sub.add_parser(name)
        p.add_argument("--contender", default="supervised",
                       help="awslambdaric, in-process, supervised, or KIND@CHECKOUT")
        p.add_argument("--top", type=int, default=25)
        if name in ("hot", "cprofile"):
            p.add_argument("--size", type=int, default=100)
            p.add_argument("--n", type=int, default=20000)
            p.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    {"hot": hot, "cold": cold, "imports": imports, "cprofile": cprofile}[args.what](args)


if __name__ == "__main__":
    main()
