"""Forked and importing workers side by side, for a pandas and a torch handler (issue 13).

    python benchmarks/fork_safety.py --setup     # once: the venv below, with pandas
    python benchmarks/fork_safety.py             # full run, a few minutes
    python benchmarks/fork_safety.py --quick     # smoke run, under a minute per library

For each library (``handlers/with_pandas.py``, ``handlers/with_torch.py``:
import the library and warm it up at import) and each worker start
(``BULKHEAD_WORKER_START=fork`` and ``import``), the real runtime
(``python -m lambda_bulkhead run``, one worker) is served by the lean
stand-in (``_standin.py``) in this process, one event at a time:

* **cold start**: exec -> first answer, and which start ``auto`` picks;
* **memory**: total PSS of the supervisor and all its descendants once the
  spare is in place (after the warm-up, and again after the crashes, when
  every worker in ``import`` mode is one that imported the handler itself);
* **memory with several workers**: the same with ``MANY_WORKERS`` workers
  (``AWS_LAMBDA_MAX_CONCURRENCY``), each having served;
* **latency** of an ordinary invocation;
* **crash -> next answer**: a segfault (``ctypes.string_at(0)``) with an
  ordinary event queued behind it, the spare in place: from the crash's
  ``/error`` being read to the next answer being read (and to that handler
  starting, from its own ``time.monotonic_ns()``);
* **spare used up**: two segfaults back to back, then an ordinary event:
  from the second ``/error`` to the next answer, which waits for a new
  worker (a fork, or a fork plus the handler's import);
* **torch only**: whether a 256x256 matmul *in the handler* answers (GNU
  OpenMP's pool, started by the import-time warm-up, does not survive fork).

"The spare is in place" is read from the process tree: its processes other
than the supervisor have used under ``QUIET_CPU_MS`` of CPU in each of
``QUIET_WINDOWS`` consecutive windows of ``QUIET_WINDOW_S``.

The runtime runs from this checkout with the interpreter of
``benchmarks/.work/venv-forksafety`` (``--python`` for another); a library
that interpreter cannot import is skipped with a message.  torch is not
installed by ``--setup``: its default wheel on PyPI is a multi-GB CUDA build;
install a CPU build into the venv yourself.  This script needs psutil (the
project's dependencies) in the interpreter that runs it.  Logs go to
``benchmarks/.work/logs/``, raw figures to ``benchmarks/.work/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _driver import Runtime, cpu_by_pid, percentiles  # noqa: E402
from _standin import KIND_ERROR, KIND_RESPONSE, StandIn, render_event  # noqa: E402

WORK = HERE / ".work"
HANDLERS = HERE / "handlers"
VENV = WORK / "venv-forksafety"
LIBRARIES = ("pandas", "torch")
MODES = ("fork", "import")
MB = 1024 * 1024

OK = b'{"crash": false}'
CRASH = b'{"crash": true}'
MATMUL = b'{"matmul": true}'

QUIET_WINDOW_S = 0.1
QUIET_WINDOWS = 3
QUIET_CPU_MS = 5.0
STEP_TIMEOUT_S = 90.0
#: Workers of the concurrent memory run (AWS_LAMBDA_MAX_CONCURRENCY).
MANY_WORKERS = 4
MATMUL_DEADLINE_S = 3.0


@dataclass(frozen=True)
class Sizes:
    cold_reps: int
    warm: int
    ordinary: int
    crashes: int
    double_crashes: int


FULL = Sizes(cold_reps=3, warm=10, ordinary=40, crashes=15, double_crashes=5)
QUICK = Sizes(cold_reps=1, warm=3, ordinary=5, crashes=3, double_crashes=1)


def log(message: str) -> None:
    print(message, flush=True)


# -- environment ------------------------------------------------------------------------


def set_up_venv() -> None:
    """``VENV`` with the project's dependencies and pandas (never torch: see the docstring)."""
    with open(ROOT / "pyproject.toml", "rb") as file:
        requirements = list(tomllib.load(file)["project"]["dependencies"])
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    *requirements, "pandas"], check=True)
    log(f"{VENV.relative_to(ROOT)} ready; torch is yours to add (a CPU build)")


def has_library(python: str, library: str) -> str | None:
    """The library's version in ``python``, or None when it cannot import it."""
    done = subprocess.run(
        [python, "-c", f"import {library}; print({library}.__version__)"],
        capture_output=True, text=True, check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def runtime_spec(python: str, library: str, mode: str, label: str) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "900",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]bench",
        "AWS_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(HANDLERS),
        "PYTHONPATH": str(ROOT),
        "_HANDLER": f"with_{library}.handler",
        "BULKHEAD_WORKER_START": mode,
    }
    log_path = WORK / "logs" / f"fork_safety-{library}-{label}.log"
    log_path.unlink(missing_ok=True)
    return {
        "cmd": [python, "-m", "lambda_bulkhead", "run", f"with_{library}.handler"],
        "env": env, "cwd": str(HANDLERS), "log": str(log_path),
    }


def worker_start_record(log_path: str) -> dict[str, Any] | None:
    """The runtime's ``worker start`` record (mode, reason, templateThreads)."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if '"worker start"' in line:
            try:
                record: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            return record
    return None


# -- the process tree ---------------------------------------------------------------------


def tree(root: int) -> list[psutil.Process]:
    try:
        top = psutil.Process(root)
        return [top, *top.children(recursive=True)]
    except psutil.Error:
        return []


def total_pss(root: int) -> dict[str, Any]:
    """PSS and USS summed over ``root`` and its descendants (MB), their count, and
    the USS of the template or zygote (the supervisor's child) and of each worker
    (a grandchild)."""
    pss = uss = 0
    count = 0
    child_pss: list[float] = []
    worker_uss: list[float] = []
    for process in tree(root):
        try:
            info = process.memory_full_info()
            parent = process.ppid()
        except psutil.Error:
            continue
        pss += info.pss
        uss += info.uss
        count += 1
        if parent == root:
            child_pss.append(info.pss / MB)
        elif process.pid != root:
            worker_uss.append(info.uss / MB)
    return {
        "pss_mb": pss / MB, "uss_mb": uss / MB, "processes": count,
        "child_pss_mb": child_pss, "worker_uss_mb": sorted(worker_uss),
    }


def minor_faults(pid: int) -> int | None:
    """Minor page faults of ``pid`` so far (``/proc/<pid>/stat``), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[7])


def workers(root: int) -> list[int]:
    """The worker processes: the supervisor's grandchildren."""
    found = []
    for process in tree(root)[1:]:
        try:
            if process.ppid() != root:
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


async def quiet(root: int, timeout_s: float = STEP_TIMEOUT_S) -> float:
    """Wait until the processes under the supervisor are idle (a spare has finished
    its fork or import); how long they were still busy (s, to QUIET_WINDOW_S)."""
    started = busy_until = time.monotonic()
    calm = 0
    before: dict[int, int] = {}
    while calm < QUIET_WINDOWS:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"the runtime's processes never went quiet in {timeout_s} s")
        pids = [process.pid for process in tree(root)[1:]]
        now = cpu_by_pid(pids)
        spent_ms = sum(now[pid] - before.get(pid, 0) for pid in now) / 1e6
        if before and spent_ms < QUIET_CPU_MS:
            calm += 1
        elif before:
            calm = 0
            busy_until = time.monotonic()
        before = now
        await asyncio.sleep(QUIET_WINDOW_S)
    return busy_until - started


# -- one runtime, one event at a time ---------------------------------------------------------


class Session:
    """A runtime under test and the stand-in feeding it the events of ``payloads`` in order."""

    def __init__(self, payloads: list[bytes], spec: dict[str, Any],
                 deadline_s: float = 900.0) -> None:
        self.server = StandIn(payloads, keep_bodies=True, deadline_s=deadline_s)
        self.spec = spec
        self.runtime: Runtime | None = None
        self.cursor = 0

    async def __aenter__(self) -> Session:
        port = await self.server.start()
        self.runtime = Runtime(self.spec, f"127.0.0.1:{port}")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        self.server.close()

    @property
    def pid(self) -> int:
        assert self.runtime is not None
        return self.runtime.pid

    async def send(self, count: int, timeout_s: float = STEP_TIMEOUT_S) -> list[int]:
        """Queue the next ``count`` events at once; wait until all are answered."""
        indices = list(range(self.cursor, self.cursor + count))
        self.cursor += count
        self.server.enqueue(indices)
        deadline = time.monotonic() + timeout_s
        while not all(self.server.kinds[i] for i in indices):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to events {indices} in {timeout_s} s")
            await asyncio.sleep(0.0005)
        return indices

    def set_deadline(self, index: int, seconds: float) -> None:
        """Give event ``index`` (not yet sent) a deadline ``seconds`` from now."""
        server = self.server
        deadline_ms = int((time.time() + seconds) * 1000)
        body = server.payloads[index]
        server.heads[index] = render_event(server.request_ids[index], len(body), deadline_ms)
        server.whole[index] = server.heads[index] + body

    def stamp(self, index: int, key: str) -> int | None:
        """A stamp the handler put in an ordinary answer: ``t``, its start;
        ``op_ns``, how long its op took."""
        body = self.server.bodies[index]
        if self.server.kinds[index] != KIND_RESPONSE or not body:
            return None
        return int(json.loads(body)[key])


def ms(ns: int) -> float:
    return ns / 1e6


async def steady(spec: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    """Warm-up, memory, ordinary latency, crashes with the spare in place, double crashes."""
    plan = (
        [OK] * sizes.warm + [OK] * sizes.ordinary
        + [CRASH, OK] * sizes.crashes + [CRASH, CRASH, OK] * sizes.double_crashes
    )
    result: dict[str, Any] = {}
    async with Session(plan, spec) as session:
        server = session.server
        assert session.runtime is not None
        session.runtime.start()
        await session.send(sizes.warm)
        result["spare_ready_s"] = await quiet(session.pid)
        result["memory_warm"] = total_pss(session.pid)

        ordinary, ordinary_op = [], []
        for _ in range(sizes.ordinary):
            (i,) = await session.send(1)
            ordinary.append(ms(server.done_ns[i] - server.sent_ns[i]))
            ordinary_op.append(ms(session.stamp(i, "op_ns") or 0))
        result["ordinary_ms"] = percentiles(ordinary)
        result["ordinary_op_ms"] = percentiles(ordinary_op)

        to_answer, to_start, first_run, first_op, refill = [], [], [], [], []
        faults: list[float] = []
        for _ in range(sizes.crashes):
            await quiet(session.pid)
            # The spare's faults so far (the worker about to crash is gone after).
            before = {pid: minor_faults(pid) for pid in workers(session.pid)}
            crash, ok = await session.send(2)
            for pid, then in before.items():
                now = minor_faults(pid)
                if now is not None and then is not None:
                    faults.append(now - then)
            assert server.kinds[crash] == KIND_ERROR, "the crash was not answered by /error"
            to_answer.append(ms(server.done_ns[ok] - server.done_ns[crash]))
            started = session.stamp(ok, "t")
            if started is not None:
                to_start.append(ms(started - server.done_ns[crash]))
                first_run.append(ms(server.done_ns[ok] - started))
                first_op.append(ms(session.stamp(ok, "op_ns") or 0))
            refill.append(await quiet(session.pid))
        result["crash_to_answer_ms"] = percentiles(to_answer)
        result["crash_to_start_ms"] = percentiles(to_start)
        result["first_run_ms"] = percentiles(first_run)
        result["first_op_ms"] = percentiles(first_op)
        result["first_run_minor_faults"] = percentiles(faults)
        result["refill_quiet_s"] = percentiles(refill)

        double = []
        for _ in range(sizes.double_crashes):
            await quiet(session.pid)
            first, second, ok = await session.send(3)
            assert server.kinds[first] == server.kinds[second] == KIND_ERROR
            double.append(ms(server.done_ns[ok] - server.done_ns[second]))
        result["double_crash_to_answer_ms"] = percentiles(double)

        await quiet(session.pid)
        result["memory_after"] = total_pss(session.pid)
        kinds = server.kinds[: session.cursor]
        result["answers"] = {"response": kinds.count(KIND_RESPONSE),
                             "error": kinds.count(KIND_ERROR), "events": session.cursor}
    return result


async def many_workers_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Total PSS with MANY_WORKERS workers, each having served, and the spare in place."""
    spec = {**spec, "env": {**spec["env"], "AWS_LAMBDA_MAX_CONCURRENCY": str(MANY_WORKERS)}}
    events = 4 * MANY_WORKERS
    async with Session([OK] * events, spec) as session:
        assert session.runtime is not None
        session.runtime.start()
        await session.send(events)
        await quiet(session.pid)
        return total_pss(session.pid)


async def cold(spec: dict[str, Any]) -> float:
    """Exec -> first answer (ms)."""
    async with Session([OK], spec) as session:
        assert session.runtime is not None
        started = session.runtime.start()
        await session.send(1)
        return ms(session.server.done_ns[0] - started)


async def matmul_check(spec: dict[str, Any]) -> dict[str, Any]:
    """After one ordinary event, one 256x256 matmul in the handler with a deadline
    MATMUL_DEADLINE_S after it is sent: its answer, and when it came."""
    async with Session([OK, MATMUL], spec) as session:
        assert session.runtime is not None
        session.runtime.start()
        await session.send(1)
        session.set_deadline(1, MATMUL_DEADLINE_S)
        (i,) = await session.send(1)
        server = session.server
        answer = "answered" if server.kinds[i] == KIND_RESPONSE else (
            json.loads(server.bodies[i] or b"{}").get("errorType", "error"))
        return {"answer": answer, "latency_ms": ms(server.done_ns[i] - server.sent_ns[i])}


# -- the run -------------------------------------------------------------------------------------


async def measure(python: str, library: str, sizes: Sizes) -> dict[str, Any]:
    figures: dict[str, Any] = {mode: {} for mode in MODES}
    auto = runtime_spec(python, library, "auto", "auto-cold")
    await cold(auto)
    record = worker_start_record(auto["log"]) or {}
    figures["auto"] = record
    log(f"  auto picks: {record.get('mode')} ({record.get('reason')})")
    # Cold starts interleaved (fork, import, fork, ...), so that a change in the
    # machine's load falls on both.
    first_answer: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(sizes.cold_reps):
        for mode in MODES:
            try:
                first_answer[mode].append(
                    await cold(runtime_spec(python, library, mode, f"{mode}-cold")))
            except TimeoutError as exc:
                figures[mode]["error"] = f"cold start: {exc}"
    for mode in MODES:
        cell = figures[mode]
        cell["cold"] = {"first_answer_ms": percentiles(first_answer[mode])}
        try:
            cell["steady"] = await steady(runtime_spec(python, library, mode, mode), sizes)
            cell["many"] = await many_workers_memory(
                runtime_spec(python, library, mode, f"{mode}-w{MANY_WORKERS}"))
            if library == "torch":
                cell["matmul"] = await matmul_check(
                    runtime_spec(python, library, mode, f"{mode}-matmul"))
        except (TimeoutError, AssertionError) as exc:
            cell["error"] = f"{type(exc).__name__}: {exc}"
        log(f"  {mode:6} " + summary(cell))
    return figures


def _get(cell: dict[str, Any], *path: str) -> Any:
    value: Any = cell
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _f(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def summary(cell: dict[str, Any]) -> str:
    if "error" in cell:
        return f"FAILED: {cell['error']}"
    return (
        f"cold {_f(_get(cell, 'cold', 'first_answer_ms', 'p50'), 0)} ms, "
        f"PSS {_f(_get(cell, 'steady', 'memory_warm', 'pss_mb'))} MB, "
        f"crash->answer p50 {_f(_get(cell, 'steady', 'crash_to_answer_ms', 'p50'), 2)} ms, "
        f"two crashes {_f(_get(cell, 'steady', 'double_crash_to_answer_ms', 'p50'), 0)} ms"
    )


ROWS: list[tuple[str, tuple[str, ...], int]] = [
    ("Cold start: exec → first answer, p50 (ms)", ("cold", "first_answer_ms", "p50"), 0),
    ("Ordinary invocation, p50 / p90 (ms)", ("steady", "ordinary_ms"), 2),
    ("… of which the handler's op (groupby; small tensor op), p50 / p90 (ms)",
     ("steady", "ordinary_op_ms"), 2),
    ("Crash → next answer, spare in place, p50 / p90 (ms) ¹",
     ("steady", "crash_to_answer_ms"), 2),
    ("… of which: /error → next handler running, p50 / p90 (ms)",
     ("steady", "crash_to_start_ms"), 2),
    ("… and that handler's start → its answer read, p50 / p90 (ms)",
     ("steady", "first_run_ms"), 2),
    ("… of which its op (the new worker's first), p50 / p90 (ms)",
     ("steady", "first_op_ms"), 2),
    ("… minor page faults of the new worker in that invocation, p50 / p90",
     ("steady", "first_run_minor_faults"), 0),
    ("Two crashes back to back → next answer, p50 / max (ms) ²",
     ("steady", "double_crash_to_answer_ms"), 0),
    ("Spare back in place after a crash, p50 (s, to 0.1 s) ³",
     ("steady", "refill_quiet_s", "p50"), 1),
    ("Total PSS, spare in place, after warm-up (MB) ⁴", ("steady", "memory_warm", "pss_mb"), 1),
    ("Total PSS, spare in place, after the crashes (MB)",
     ("steady", "memory_after", "pss_mb"), 1),
    ("… of which the template (`fork`) or zygote (`import`), PSS (MB)",
     ("steady", "memory_after", "child_pss_mb"), 1),
    ("Each worker's private memory (USS, MB), after the crashes ⁵",
     ("steady", "memory_after", "worker_uss_mb"), 1),
    ("Processes (supervisor and descendants)", ("steady", "memory_after", "processes"), 0),
    (f"Total PSS, {MANY_WORKERS} workers (`AWS_LAMBDA_MAX_CONCURRENCY`) and a spare (MB) ⁶",
     ("many", "pss_mb"), 1),
]


def cell_text(cell: dict[str, Any], path: tuple[str, ...], digits: int) -> str:
    if "error" in cell:
        return "failed"
    value = _get(cell, *path)
    if isinstance(value, list):
        return " / ".join(_f(item, digits) for item in value) or "—"
    if isinstance(value, dict):
        second = "max" if path[-1] == "double_crash_to_answer_ms" else "p90"
        return f"{_f(value.get('p50'), digits)} / {_f(value.get(second), digits)}"
    return _f(value, digits)


FOOTNOTES = (
    "¹ from the crash's `/error` being read to the next event's answer being read; "
    "the next event was queued behind the crash, and the spare had finished starting. "
    "² the spare is gone with the second crash: the next answer waits for a new worker. "
    "³ how long the runtime's processes (the supervisor's aside) kept using CPU after "
    "the crash's answer: the new spare's fork, or fork and import. "
    "⁴ PSS summed over the supervisor and all its descendants (psutil "
    "`memory_full_info`): one worker serving, one spare, the template or the zygote. "
    "⁵ USS of each worker process, smaller first (in `fork` mode, the spare: it has "
    "not served yet); in `import` mode after the crashes, both imported the handler "
    "themselves. "
    f"⁶ after {4 * MANY_WORKERS} events queued at once, the processes idle again."
)


def table(results: dict[str, dict[str, Any]]) -> str:
    columns = [(library, mode) for library in results for mode in MODES]
    lines = [
        "| | " + " | ".join(f"{library}, `{mode}`" for library, mode in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for label, path, digits in ROWS:
        cells = [cell_text(results[library][mode], path, digits) for library, mode in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if any(_get(results[library][mode], "matmul") for library, mode in columns):
        cells = []
        for library, mode in columns:
            check = _get(results[library][mode], "matmul")
            cells.append("—" if not check else
                         f"{check['answer']} ({_f(check['latency_ms'], 0)} ms)")
        lines.append(f"| 256x256 matmul in the handler (deadline {MATMUL_DEADLINE_S:.0f} s) | "
                     + " | ".join(cells) + " |")
    autos = []
    for library, mode in columns:
        record = results[library].get("auto") or {}
        autos.append(f"`{record.get('mode')}` ({record.get('templateThreads')} threads)"
                     if mode == "fork" else "")
    lines.append("| `auto` picks (template's threads after the import) | "
                 + " | ".join(autos) + " |")
    return "\n".join([*lines, "", FOOTNOTES])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--setup", action="store_true",
                        help=f"create {VENV.relative_to(ROOT)} (project dependencies, pandas)")
    parser.add_argument("--python", help="the runtime's interpreter (default: that venv's)")
    parser.add_argument("--only", default=",".join(LIBRARIES),
                        help="comma-separated libraries among " + ",".join(LIBRARIES))
    args = parser.parse_args(argv)
    if args.setup:
        set_up_venv()
        return 0
    # Absolute, not resolved: the runtime starts in handlers/, and a venv's
    # python is a symlink that must stay one to find the venv.
    python = os.path.abspath(args.python or VENV / "bin" / "python")
    if not Path(python).exists():
        raise SystemExit(f"{python} is missing: run with --setup first, or pass --python")
    sizes = QUICK if args.quick else FULL
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    (WORK / "results").mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    log(f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} "
        "(other work on this machine skews the figures)")
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    for library in [name for name in args.only.split(",") if name]:
        version = has_library(python, library)
        if version is None:
            how = ("--setup installs it" if library == "pandas"
                   else "install a CPU build of torch into that venv")
            log(f"{library}: SKIPPED, {python} cannot import it ({how})")
            continue
        versions[library] = version
        log(f"{library} {version}")
        results[library] = asyncio.run(measure(python, library, sizes))
    load_end = os.getloadavg()
    text = table(results) if results else "(no library measured)"
    stamp = datetime.datetime.now(datetime.UTC)
    print()
    print(f"Measured {stamp:%Y-%m-%d %H:%M} UTC, {round(time.monotonic() - started)} s; "
          f"versions {versions}; load average (1/5/15 min) "
          f"{load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f} at the start, "
          f"{load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f} at the end.")
    print()
    print(text)
    raw = {"date": stamp.isoformat(), "quick": args.quick, "versions": versions,
           "load_start": load_start, "load_end": load_end, "results": results}
    out = WORK / "results" / f"fork_safety-{stamp:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(raw, indent=1))
    log(f"\nraw figures: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
