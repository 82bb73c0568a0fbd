"""lambda-bulkhead against the official runtime, side by side (issue 7's benchmark).

    python benchmarks/run.py              # full run (5 rounds, a few minutes)
    python benchmarks/run.py --quick      # one short round: a smoke run (docs untouched)
    python benchmarks/run.py --rounds 7 --only tp100,cold

Contenders, each in a venv of its own under ``benchmarks/.work/`` holding only
its own dependencies (so that no site-packages ``.pth`` of this machine's
Python is timed):

* ``awslambdaric`` 4.2.2, the official runtime: ``python -m awslambdaric trivial.handler``;
* ``in-process``: ``BULKHEAD_ISOLATION=none python -m lambda_bulkhead run trivial.handler``;
* ``supervised``: ``python -m lambda_bulkhead run trivial.handler`` (the default).

Every run is one ``_driver.py`` process holding a loopback Runtime API
stand-in and the runtime under test; runs are interleaved (A B C A B C ...)
over several rounds and the table gives the median of the rounds.  The table
is printed and written to ``docs/benchmarks.md`` between the ``bench`` markers
(not after ``--quick`` unless ``--docs``; ``--no-docs`` to skip); raw results go
to ``benchmarks/.work/results/``.
What each figure means is in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _standin import StandIn  # noqa: E402

WORK = HERE / ".work"
HANDLERS = HERE / "handlers"
DRIVER = HERE / "_driver.py"
NULL_CLIENT = HERE / "_nullclient.py"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
AWSLAMBDARIC = "awslambdaric==4.2.2"
CONTENDERS = ("awslambdaric", "in-process", "supervised")
SCENARIOS = ("tp100", "tp64k", "tp1m", "cold", "crash", "conc")
MB = 1024 * 1024

BUILD_HELP = f"""\
Could not install {AWSLAMBDARIC} (the reference runtime) into {WORK / 'venv-awslambdaric'}.
pip installs a manylinux wheel where PyPI has one for this Python and platform
(CPython 3.11 on x86_64 has one); otherwise it builds the source distribution,
which compiles aws-lambda-cpp and a bundled libcurl and needs a C/C++ toolchain
and the autotools: on Debian/Ubuntu
    apt-get install g++ make cmake autoconf automake libtool
The benchmark goes on without the reference (no ratios).  pip said:
"""


# -- sizes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    rounds: int
    tp: dict[str, tuple[int, int]]  # scenario -> (events, warm-up)
    cold_reps: int
    crash_supervised: int
    crash_restarting: int
    conc_one: int
    conc_four: int
    calibration_reps: int


FULL = Sizes(
    rounds=5,
    tp={"tp100": (8000, 800), "tp64k": (3000, 300), "tp1m": (400, 40)},
    cold_reps=4,
    crash_supervised=300,
    crash_restarting=30,
    conc_one=100,
    conc_four=400,
    calibration_reps=3,
)
QUICK = Sizes(
    rounds=1,
    tp={"tp100": (1500, 300), "tp64k": (400, 50), "tp1m": (60, 10)},
    cold_reps=2,
    crash_supervised=40,
    crash_restarting=10,
    conc_one=40,
    conc_four=120,
    calibration_reps=1,
)
TP_SIZES = {"tp100": 100, "tp64k": 64 * 1024, "tp1m": MB}


# -- environments -----------------------------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


def _venv(path: Path, requirements: list[str]) -> Path:
    """A venv at ``path`` with ``requirements`` installed (re-made when they change)."""
    python = path / "bin" / "python"
    marker = path / "bench-requirements.txt"
    wanted = "\n".join(requirements)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if path.exists():
        shutil.rmtree(path)
    log(f"setting up {path.relative_to(ROOT)}: {' '.join(requirements)}")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *requirements],
        capture_output=True, text=True, check=False,
    )
    if pip.returncode != 0:
        shutil.rmtree(path)
        raise RuntimeError(pip.stdout[-3000:] + pip.stderr[-3000:])
    marker.write_text(wanted)
    return python


def project_requirements() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return list(tomllib.load(file)["project"]["dependencies"])


@dataclass
class Setup:
    bulkhead_python: Path
    aws_python: Path | None
    aws_problem: str | None = None


def set_up() -> Setup:
    WORK.mkdir(exist_ok=True)
    (WORK / "logs").mkdir(exist_ok=True)
    (WORK / "results").mkdir(exist_ok=True)
    bulkhead = _venv(WORK / "venv-bulkhead", project_requirements())
    try:
        aws: Path | None = _venv(WORK / "venv-awslambdaric", [AWSLAMBDARIC])
        problem = None
    except RuntimeError as exc:
        aws, problem = None, str(exc)
        log(BUILD_HELP + problem)
    return Setup(bulkhead, aws, problem)


def base_env() -> dict[str, str]:
    """What the platform gives a runtime (as ``Emulator.function_env``), and no more."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "900",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]bench",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(HANDLERS),
    }


def command(setup: Setup, contender: str, handler: str, workers: int = 1
            ) -> tuple[list[str], dict[str, str]] | None:
    """The argv and environment of ``contender`` serving ``handler`` (None: unavailable).

    ``in-process@PATH`` / ``supervised@PATH`` run lambda-bulkhead from the
    checkout at PATH (A/B experiments with a changed copy).
    """
    contender, _, checkout = contender.partition("@")
    env = {**base_env(), "_HANDLER": handler}
    if contender == "awslambdaric":
        if setup.aws_python is None:
            return None
        if workers > 1:
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(workers)  # it forks that many pollers
        return [str(setup.aws_python), "-m", "awslambdaric", handler], env
    env["PYTHONPATH"] = checkout or str(ROOT)
    if workers > 1:
        env["BULKHEAD_WORKERS"] = str(workers)
        env["BULKHEAD_CONCURRENT_POLLS"] = "1"  # the stand-in serves concurrent polls
    if contender == "in-process":
        env["BULKHEAD_ISOLATION"] = "none"  # as a function would set it (bootstrap.sh has no flags)
    return [str(setup.bulkhead_python), "-m", "lambda_bulkhead", "run", handler], env


def drive(setup: Setup, spec: dict[str, Any], timeout_s: float = 240) -> dict[str, Any]:
    """One driver process; its JSON result (``{"error": ...}`` if it failed)."""
    try:
        done = subprocess.run(
            [str(setup.bulkhead_python), str(DRIVER)], input=json.dumps(spec) + "\n",
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"driver timed out after {timeout_s} s"}
    if done.returncode != 0 or not done.stdout.strip():
        return {"error": f"driver failed ({done.returncode}): {done.stderr.strip()[-800:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- scenarios -------------------------------------------------------------------------


@dataclass
class Results:
    """metric -> contender -> one value per round."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Which of NOT_BEFORE_FIRST_NEXT the supervised runtime imports before its
    #: first /next (None: not checked).
    early_imports: list[str] | None = None

    def add(self, metric: str, contender: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault(metric, {}).setdefault(contender, []).append(value)

    def median(self, metric: str, contender: str) -> float | None:
        values = self.values.get(metric, {}).get(contender)
        return statistics.median(values) if values else None


def _spec(setup: Setup, contender: str, handler: str, scenario: str,
          workers: int = 1, **extra: Any) -> dict[str, Any] | None:
    made = command(setup, contender, handler, workers)
    if made is None:
        return None
    argv, env = made
    safe = contender.replace("/", "_").replace("@", "-")
    log_path = WORK / "logs" / f"{scenario}-{safe}.log"
    log_path.unlink(missing_ok=True)
    return {"cmd": argv, "env": env, "cwd": str(HANDLERS), "log": str(log_path), **extra}


def _failed(results: Results, where: str, outcome: dict[str, Any]) -> bool:
    if outcome.get("error"):
        results.problems.append(f"{where}: {outcome['error']}")
        log(f"  {where}: FAILED: {outcome['error']}")
        return True
    if outcome.get("leaked"):
        results.problems.append(f"{where}: processes left behind: {outcome['leaked']}")
    return False


def run_throughput(setup: Setup, sizes: Sizes, scenario: str, contender: str,
                   results: Results, backend: str) -> None:
    n, warm = sizes.tp[scenario]
    spec = _spec(setup, contender, "trivial.handler", scenario, mode="stream", n=n, warm=warm,
                 size=TP_SIZES[scenario], memory=scenario == "tp100", backend=backend)
    if spec is None:
        return
    outcome = drive(setup, spec)
    where = f"{scenario} {contender}"
    if _failed(results, where, outcome):
        return
    results.add(f"{scenario}.throughput", contender, outcome["throughput"])
    results.add(f"{scenario}.runtime_cpu_us", contender, outcome.get("runtime_cpu_us"))
    results.add(f"{scenario}.standin_cpu_us", contender, outcome.get("standin_cpu_us"))
    by_role = outcome.get("cpu_by_role_us") or {}
    if contender.startswith("supervised"):
        results.add(f"{scenario}.cpu_supervisor_us", contender, by_role.get("main"))
        results.add(f"{scenario}.cpu_worker_us", contender, by_role.get("grandchild"))
    latency = outcome.get("latency_us") or {}
    for q in ("p50", "p99"):
        results.add(f"{scenario}.latency_{q}", contender, latency.get(q))
    summary = f"{outcome['throughput']:8.0f}/s  cpu {outcome.get('runtime_cpu_us') or 0:6.0f} µs"
    if latency:
        summary += f"  p50 {latency['p50']:7.0f} µs  p99 {latency['p99']:7.0f} µs"
    if contender.startswith("supervised") and by_role:
        summary += (f"  (supervisor {by_role.get('main', 0):.0f} µs,"
                    f" worker {by_role.get('grandchild', 0):.0f} µs)")
    if outcome.get("memory"):
        add_memory(results, contender, outcome["memory"])
    log(f"  {where:26} {summary}")


def add_memory(results: Results, contender: str, rows: list[dict[str, Any]]) -> None:
    main = [row for row in rows if row["role"] == "main"]
    children = [row for row in rows if row["role"] == "child"]
    workers = sorted(
        (row for row in rows if row["role"] == "grandchild"), key=lambda row: -row["cpu_s"]
    )
    if main:
        for key in ("rss", "uss", "pss"):
            results.add(f"mem.main_{key}", contender, main[0][key] / MB)
    supervised = contender.startswith("supervised")
    if supervised and children:
        for key in ("rss", "uss", "pss"):
            results.add(f"mem.template_{key}", contender, children[0][key] / MB)
    if supervised and workers:
        for key in ("rss", "uss", "pss"):
            results.add(f"mem.worker_{key}", contender, workers[0][key] / MB)
    results.add("mem.total_pss", contender, sum(row["pss"] for row in rows) / MB)


def run_cold(setup: Setup, sizes: Sizes, contender: str, results: Results) -> None:
    spec = _spec(setup, contender, "trivial.handler", "cold", mode="cold", reps=sizes.cold_reps)
    if spec is None:
        return
    outcome = drive(setup, spec)
    if outcome.get("errors"):
        outcome["error"] = "; ".join(outcome["errors"])
    if _failed(results, f"cold {contender}", outcome):
        return
    first_next = statistics.median(outcome["first_next_ms"])
    first_answer = statistics.median(outcome["first_answer_ms"])
    results.add("cold.first_next_ms", contender, first_next)
    results.add("cold.first_answer_ms", contender, first_answer)
    log(f"  {'cold ' + contender:26} first /next {first_next:6.1f} ms  "
        f"first answer {first_answer:6.1f} ms")


def run_crash(setup: Setup, sizes: Sizes, contender: str, results: Results) -> None:
    restarting = not contender.startswith("supervised")
    n = sizes.crash_restarting if restarting else sizes.crash_supervised
    spec = _spec(setup, contender, "crash.handler", "crash", mode="stream", n=n, warm=0,
                 crash=True, respawn=restarting, timeout_s=120)
    if spec is None:
        return
    outcome = drive(setup, spec)
    if _failed(results, f"crash {contender}", outcome):
        return
    crash = outcome["crash"]
    cycle = crash["cycle_ms"].get("p50")
    recovery = (crash["from_death_ms"] if restarting else crash["from_error_ms"]).get("p50")
    results.add("crash.recovery_ms", contender, recovery)
    results.add("crash.cycle_ms", contender, cycle)
    kinds = outcome["kinds"]
    log(f"  {'crash ' + contender:26} next running {recovery or float('nan'):6.2f} ms after "
        f"{'death' if restarting else '/error'}  cycle {cycle or float('nan'):6.2f} ms  "
        f"({kinds['response']} ok, {kinds['error']} /error, {kinds['lost']} lost)")


def run_concurrency(setup: Setup, sizes: Sizes, contender: str, results: Results) -> None:
    figures = {}
    for workers, n in ((1, sizes.conc_one), (4, sizes.conc_four)):
        spec = _spec(setup, contender, "sleep.handler", f"conc{workers}", workers,
                     mode="stream", n=n, warm=min(20, n // 5))
        if spec is None:
            return
        outcome = drive(setup, spec)
        if _failed(results, f"conc{workers} {contender}", outcome):
            return
        figures[workers] = outcome["throughput"]
        results.add(f"conc.w{workers}", contender, outcome["throughput"])
    results.add("conc.speedup", contender, figures[4] / figures[1])
    log(f"  {'conc ' + contender:26} 1 worker {figures[1]:6.0f}/s  4 workers {figures[4]:6.0f}/s"
        f"  x{figures[4] / figures[1]:.2f}")


def calibrate(setup: Setup, sizes: Sizes, results: Results) -> None:
    """The stand-ins' own cost: the null client against each, alternating."""
    for _ in range(sizes.calibration_reps):
        for backend in ("lean", "emulator"):
            spec = {
                "mode": "stream", "backend": backend, "n": 4000, "warm": 400, "size": 100,
                "cmd": [str(setup.bulkhead_python), str(NULL_CLIENT)], "env": base_env(),
            }
            outcome = drive(setup, spec)
            if _failed(results, f"calibration {backend}", outcome):
                continue
            results.add("cal.throughput", backend, outcome["throughput"])
            results.add("cal.standin_cpu_us", backend, outcome["standin_cpu_us"])
            results.add("cal.client_cpu_us", backend, outcome["runtime_cpu_us"])
    for backend in ("lean", "emulator"):
        log(f"  null client vs {backend:8}  {results.median('cal.throughput', backend) or 0:6.0f}"
            f" pairs/s, stand-in CPU {results.median('cal.standin_cpu_us', backend) or 0:5.1f} µs"
            f"/pair, client CPU {results.median('cal.client_cpu_us', backend) or 0:5.1f} µs/pair")


#: What target 3 says the first ``/next`` must not wait for.
NOT_BEFORE_FIRST_NEXT = ("structlog", "psutil", "httpx", "lambda_bulkhead.events",
                         "lambda_bulkhead.emulator")


def imports_before_first_next(setup: Setup, contender: str
                              ) -> tuple[list[tuple[int, int, int, str]], float]:
    """``-X importtime`` rows (self µs, cumulative µs, depth, module) the runtime's
    main process printed before its first ``GET /next``, and when that came (ms
    after ``Popen``).  No event is ever queued: the runtime blocks at ``/next``."""
    made = command(setup, contender, "trivial.handler")
    if made is None:
        return [], -1.0
    argv, env = made
    env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}

    async def probe() -> tuple[bytes, float]:
        server = StandIn([])
        port = await server.start()
        started = time.monotonic_ns()
        process = subprocess.Popen(
            argv, env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"},
            cwd=str(HANDLERS), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        stderr = process.stderr.fileno()
        os.set_blocking(stderr, False)
        seen = bytearray()

        def drain() -> None:
            while True:
                try:
                    chunk = os.read(stderr, 1 << 20)
                except BlockingIOError:
                    return
                if not chunk:
                    return
                seen.extend(chunk)

        deadline = time.monotonic() + 15
        while not server.next_polls and time.monotonic() < deadline:
            await asyncio.sleep(0.0005)
            drain()
        drain()  # what was written before the poll is in the pipe by now
        first_next_ms = (server.next_polls[0] - started) / 1e6 if server.next_polls else -1.0
        process.terminate()
        process.wait()
        server.close()
        return bytes(seen), first_next_ms

    text, first_next_ms = asyncio.run(probe())
    rows = []
    for line in text.decode(errors="replace").splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match[1]), int(match[2]), len(match[3]) // 2, match[4]))
    return rows, first_next_ms


def check_imports(setup: Setup, results: Results) -> None:
    """Target 3's second half: which of NOT_BEFORE_FIRST_NEXT come before the first /next."""
    rows, _ = imports_before_first_next(setup, "supervised")
    if not rows:
        results.problems.append("import probe: no -X importtime output before the first /next")
        return
    names = {name for *_, name in rows}
    found = sorted(
        watched for watched in NOT_BEFORE_FIRST_NEXT
        if any(name == watched or name.startswith(watched + ".") for name in names)
    )
    results.early_imports = found
    log(f"  imported before the first /next (supervised): {', '.join(found) or 'none of'} "
        f"{'' if found else ', '.join(NOT_BEFORE_FIRST_NEXT)}")


def interpreter_floor(setup: Setup, results: Results, reps: int = 7) -> None:
    """``python -c pass`` from Popen to exit: the floor under every cold start."""
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run([str(setup.bulkhead_python), "-c", "pass"], check=True)
        results.add("floor.python_ms", "python", (time.perf_counter() - started) * 1000)


# -- reporting --------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference == 0:
        return ""
    return f" ({value / reference:.2f}x)"


def hop(results: Results, q: str) -> float | None:
    """Supervised minus in-process latency, paired per round, median over rounds."""
    sup = results.values.get(f"tp100.latency_{q}", {}).get("supervised", [])
    inp = results.values.get(f"tp100.latency_{q}", {}).get("in-process", [])
    pairs = [a - b for a, b in zip(sup, inp, strict=False)]
    return statistics.median(pairs) if pairs else None


ROWS: list[tuple[str, str, int, bool]] = [
    # (metric, label, digits, ratio vs awslambdaric)
    ("tp100.throughput", "Throughput, 100 B events (invocations/s)", 0, True),
    ("tp64k.throughput", "Throughput, 64 KiB events (invocations/s)", 0, True),
    ("tp1m.throughput", "Throughput, 1 MiB events (invocations/s)", 0, True),
    ("tp100.latency_p50", "Latency p50, 100 B (µs, /next sent → answer read)", 0, True),
    ("tp100.latency_p99", "Latency p99, 100 B (µs)", 0, True),
    ("tp100.runtime_cpu_us", "Runtime CPU per invocation, 100 B (µs, all its processes)", 0, True),
    ("tp100.cpu_supervisor_us", "… of which the supervisor, 100 B (µs)", 0, False),
    ("tp100.cpu_worker_us", "… of which the worker, 100 B (µs)", 0, False),
    ("tp1m.runtime_cpu_us", "Runtime CPU per invocation, 1 MiB (µs)", 0, True),
    ("tp1m.cpu_supervisor_us", "… of which the supervisor, 1 MiB (µs)", 0, False),
    ("tp1m.cpu_worker_us", "… of which the worker, 1 MiB (µs)", 0, False),
    ("tp100.standin_cpu_us", "Stand-in CPU per invocation, 100 B (µs, not the runtime's)", 0,
     False),
    ("cold.first_next_ms", "Cold start: exec → first /next (ms)", 1, False),
    ("cold.first_answer_ms", "Cold start: exec → first answer (ms)", 1, False),
    ("crash.recovery_ms", "Crash → next invocation running (ms, median) ¹", 2, False),
    ("crash.cycle_ms", "Crashing event delivered → next invocation running (ms) ²", 2, False),
    ("mem.main_rss", "Main process RSS (MB) ³", 1, False),
    ("mem.main_uss", "Main process USS (MB)", 1, False),
    ("mem.template_rss", "Template RSS / USS (MB)", 1, False),
    ("mem.worker_uss", "Worker USS (MB) ⁴", 1, False),
    ("mem.worker_pss", "Worker PSS (MB)", 1, False),
    ("mem.total_pss", "All processes, PSS (MB)", 1, False),
    ("conc.w1", "Sleep 10 ms handler, 1 worker (invocations/s)", 0, False),
    ("conc.w4", "Sleep 10 ms handler, 4 workers on 2 cores (invocations/s)", 0, False),
    ("conc.speedup", "4 workers / 1 worker", 2, False),
]


TITLES = {
    "awslambdaric": "awslambdaric 4.2.2",
    "in-process": "lambda-bulkhead in-process",
    "supervised": "lambda-bulkhead supervised",
}


def table(results: Results, contenders: list[str]) -> str:
    lines = [
        "| | " + " | ".join(TITLES.get(c, c) for c in contenders) + " |",
        "|---|" + "---:|" * len(contenders),
    ]
    for metric, label, digits, ratio in ROWS:
        reference = results.median(metric, "awslambdaric")
        cells = []
        for contender in contenders:
            value = results.median(metric, contender)
            if metric == "mem.template_rss" and value is not None:
                uss = results.median("mem.template_uss", contender)
                cells.append(f"{_fmt(value, digits)} / {_fmt(uss, digits)}")
                continue
            cell = _fmt(value, digits)
            if ratio and contender != "awslambdaric":
                cell += _ratio(value, reference)
            cells.append(cell)
        if all(cell == "—" for cell in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "supervised" in contenders and "in-process" in contenders:
        lines.append(
            "| Supervisor hop, p50 / p99 (µs, supervised minus in-process, 100 B) |"
            + " |" * (len(contenders) - 1)
            + f" {_fmt(hop(results, 'p50'))} / {_fmt(hop(results, 'p99'))} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    label: str
    measured: Callable[[Results], float | None]
    passes: Callable[[float], bool]
    unit: str
    digits: int = 2


def _rel(metric: str) -> Callable[[Results], float | None]:
    def ratio(results: Results) -> float | None:
        value = results.median(metric, "supervised")
        reference = results.median(metric, "awslambdaric")
        return value / reference if value and reference else None

    return ratio


def _cold_gap(results: Results) -> float | None:
    value = results.median("cold.first_answer_ms", "supervised")
    reference = results.median("cold.first_answer_ms", "awslambdaric")
    return value - reference if value is not None and reference is not None else None


TARGETS = [
    Target("1. Supervised throughput, 100 B: ≥ 1.0x awslambdaric (stretch 1.3x)",
           _rel("tp100.throughput"), lambda v: v >= 1.0, "x"),
    Target("1. Supervised throughput, 64 KiB: ≥ 0.9x", _rel("tp64k.throughput"),
           lambda v: v >= 0.9, "x"),
    Target("1. Supervised throughput, 1 MiB: ≥ 0.9x", _rel("tp1m.throughput"),
           lambda v: v >= 0.9, "x"),
    Target("2. Supervisor hop p50 < 60 µs", lambda r: hop(r, "p50"), lambda v: v < 60, " µs", 0),
    Target("2. Supervisor hop p99 < 200 µs", lambda r: hop(r, "p99"), lambda v: v < 200, " µs", 0),
    Target("3. Cold start (exec → first answer) ≤ awslambdaric + 10 ms (stretch: equal)",
           _cold_gap, lambda v: v <= 10, " ms more", 1),
    Target("4. Crash → next invocation running < 5 ms (median)",
           lambda r: r.median("crash.recovery_ms", "supervised"), lambda v: v < 5, " ms"),
    Target("5. Supervisor RSS < 30 MB", lambda r: r.median("mem.main_rss", "supervised"),
           lambda v: v < 30, " MB", 1),
    Target("5. Per-worker overhead < 5 MB (worker USS; PSS in the table)",
           lambda r: r.median("mem.worker_uss", "supervised"), lambda v: v < 5, " MB", 1),
    Target("6. 4 workers on 2 cores, sleep 10 ms: ≥ 1.6x one worker",
           lambda r: r.median("conc.speedup", "supervised"), lambda v: v >= 1.6, "x"),
]


def targets_table(results: Results) -> str:
    lines = ["| target (issue 7) | measured | met |", "|---|---:|:---:|"]
    for target in TARGETS:
        value = target.measured(results)
        if value is None:
            lines.append(f"| {target.label} | — | not measured |")
        else:
            met = "yes" if target.passes(value) else "**no**"
            lines.append(
                f"| {target.label} | {_fmt(value, target.digits)}{target.unit} | {met} |"
            )
        if target.label.startswith("3.") and results.early_imports is not None:
            early = results.early_imports
            lines.append(
                "| 3. Not imported before the first /next: "
                + ", ".join(NOT_BEFORE_FIRST_NEXT)
                + f" | {'imported: ' + ', '.join(early) if early else 'none imported'} | "
                + f"{'**no**' if early else 'yes'} |"
            )
    return "\n".join(lines)


def report(results: Results, meta: dict[str, Any]) -> str:
    m = meta["machine"]
    cal = results.median
    parts = [
        f"Measured {meta['date']} with `python benchmarks/run.py{meta['args']}`: "
        f"{meta['rounds']} round(s), medians of the rounds; stand-in: {meta['backend']}.  ",
        f"Machine: {m['cpu']}, nproc {m['nproc']}, Linux {m['kernel']}, "
        f"Python {m['python']}; load average {meta['load_start']:.2f} at the start, "
        f"{meta['load_end']:.2f} at the end (other work was running: "
        f"{'yes' if max(meta['load_start'], meta['load_end']) > 0.5 else 'little or none'}).",
        "",
        table(results, meta["contenders"]),
        "",
        "¹ supervised: from the crash's `/error` being read to the next handler starting "
        "(its own `time.monotonic_ns()`); awslambdaric and in-process die with the handler: "
        "from the process's death to the handler running in a fresh runtime started at once "
        "(the re-exec alone; Lambda adds the sandbox reset). "
        "² from the crashing event's `/next` answer to the next handler starting. "
        "³ supervised: the supervisor. ⁴ the worker that served the run; "
        "USS = pages private to it, PSS = shared pages split between sharers.",
    ]
    if cal("cal.throughput", "lean") is not None:
        parts += [
            "",
            f"Stand-in calibration (null client: the least a Python runtime can do per "
            f"invocation): lean stand-in {_fmt(cal('cal.throughput', 'lean'))} pairs/s, "
            f"{_fmt(cal('cal.standin_cpu_us', 'lean'), 1)} µs of stand-in CPU per pair; the "
            f"project's Emulator {_fmt(cal('cal.throughput', 'emulator'))} pairs/s, "
            f"{_fmt(cal('cal.standin_cpu_us', 'emulator'), 1)} µs per pair.  "
            f"`python -c pass` from the venv: {_fmt(cal('floor.python_ms', 'python'), 1)} ms.",
        ]
    parts += ["", targets_table(results)]
    if results.problems:
        parts += ["", "Problems during the run:", ""]
        parts += [f"- {problem}" for problem in results.problems]
    return "\n".join(parts)


def write_doc(text: str) -> None:
    if not DOC.exists():
        raise SystemExit(f"{DOC} is missing: it holds the markers the table goes between")
    content = DOC.read_text()
    start, end = content.find(BEGIN), content.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC}: markers {BEGIN} / {END} not found")
    DOC.write_text(content[: start + len(BEGIN)] + "\n" + text + "\n" + content[end:])


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, --quick 1)")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios among {','.join(SCENARIOS)}")
    parser.add_argument("--stand-in", dest="backend", choices=["lean", "emulator"],
                        default="lean", help="Runtime API stand-in for the throughput runs "
                        "(emulator: no per-invocation latency)")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--docs", action="store_true",
                        help="update docs/benchmarks.md even after --quick")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="comma-separated; in-process@PATH or supervised@PATH runs "
                        "lambda-bulkhead from another checkout (implies --no-docs)")
    parser.add_argument("--no-calibration", action="store_true",
                        help="skip the stand-in calibration")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or sizes.rounds
    chosen = [s for s in args.only.split(",") if s]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    contenders = [c for c in args.contenders.split(",") if c]
    if contenders != list(CONTENDERS) or (args.quick and not args.docs):
        args.no_docs = True  # a smoke run or an A/B run does not replace the recorded table
    load_start = os.getloadavg()[0]
    log(f"load average {load_start:.2f} (other work on this machine skews the figures)")
    setup = set_up()
    results = Results()
    started = time.monotonic()
    if not args.no_calibration:
        log("calibration")
        calibrate(setup, sizes, results)
        interpreter_floor(setup, results)
    if "cold" in chosen and "supervised" in contenders:
        check_imports(setup, results)
    for round_number in range(1, rounds + 1):
        log(f"round {round_number}/{rounds} (load {os.getloadavg()[0]:.2f})")
        for scenario in chosen:
            for contender in contenders:
                if scenario in TP_SIZES:
                    run_throughput(setup, sizes, scenario, contender, results, args.backend)
                elif scenario == "cold":
                    run_cold(setup, sizes, contender, results)
                elif scenario == "crash":
                    run_crash(setup, sizes, contender, results)
                elif scenario == "conc":
                    run_concurrency(setup, sizes, contender, results)
    load_end = os.getloadavg()[0]
    shown_args = " ".join(argv if argv is not None else sys.argv[1:])
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "args": f" {shown_args}" if shown_args else "",
        "rounds": rounds,
        "backend": "lean (benchmarks/_standin.py)" if args.backend == "lean"
        else "the project's Emulator",
        "machine": machine(),
        "contenders": contenders,
        "load_start": load_start,
        "load_end": load_end,
        "seconds": round(time.monotonic() - started),
        "awslambdaric_problem": setup.aws_problem,
    }
    text = report(results, meta)
    print()
    print(text)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = {"meta": meta, "values": results.values, "problems": results.problems,
           "early_imports": results.early_imports}
    (WORK / "results" / f"{stamp}.json").write_text(json.dumps(raw, indent=1))
    (WORK / "results" / "latest.json").write_text(json.dumps(raw, indent=1))
    log(f"\n{meta['seconds']} s; load average {load_start:.2f} → {load_end:.2f}")
    if not args.no_docs:
        write_doc(text)
        log(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
