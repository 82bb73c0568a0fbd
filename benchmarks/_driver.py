"""One measured run: a Runtime API stand-in and one runtime, in a process of their own.

``run.py`` starts this script once per run with a JSON spec on stdin and reads
one JSON result from stdout.  The stand-in (``_standin.StandIn``, or the
project's ``Emulator`` with ``"backend": "emulator"``) runs on this process's
only event loop; the runtime under test is a child process whose stdout and
stderr go to a log file.  Nothing else runs here during a measurement, so this
process's CPU time is the stand-in's cost.

Modes:

* ``stream``: queue every event first, start the runtime, wait until all are
  answered.  The window starts after ``warm`` answers; it yields throughput,
  per-invocation latency (``/next`` answer written -> ``/response`` read, on
  the stand-in's side), the runtime's CPU per invocation (``schedstat`` of
  every thread of every process in its tree), the stand-in's CPU per
  invocation, memory (``"memory": true``), and the crash figures when the
  events alternate crash/ok (``"crash": true``).  ``"respawn": true`` restarts
  a runtime that died (what Lambda does after a crash, minus the sandbox reset).
* ``cold``: ``reps`` times: one event queued, start the runtime, time the first
  ``GET /next`` and the first answer from just before ``Popen``, and the CPU
  time its live processes had used by the first answer (``schedstat``).
* ``serve``: stand-in only, ``n`` events queued; prints the port, serves until
  stdin closes (``transports.py`` drives it).
"""

# Lazy imports on purpose: psutil and the emulator only where a mode needs them.
# ruff: noqa: PLC0415
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))  # the checkout: lambda_bulkhead.emulator

from _standin import KIND_ERROR, KIND_LOST, KIND_RESPONSE, StandIn  # noqa: E402

STOP_GRACE_S = 2.0


# -- events --------------------------------------------------------------------


def sized_event(size: int, seed: int = 0) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least 12): ``{"pad":"aaa..."}``."""
    filler = max(0, size - len('{"pad":""}'))
    return ('{"pad":"' + ("abcdefghijklmnopqrstuvwxyz"[seed % 26] * filler) + '"}').encode()


def build_payloads(spec: dict[str, Any]) -> list[bytes]:
    n = int(spec["n"])
    if spec.get("crash"):
        crash, ok = b'{"crash": true}', b'{"crash": false}'
        return [crash if i % 2 else ok for i in range(n)]
    body = sized_event(int(spec.get("size", 100)))
    return [body] * n


# -- the process tree under test ------------------------------------------------


def tree_roles(root: int) -> dict[int, str]:
    """The processes of ``root``'s tree: main, child (of main) or grandchild."""
    import psutil

    roles = {root: "main"}
    try:
        for child in psutil.Process(root).children(recursive=True):
            roles[child.pid] = "child" if child.ppid() == root else "grandchild"
    except psutil.Error:
        pass
    return roles


def tree_pids(root: int) -> list[int]:
    return list(tree_roles(root))


def cpu_ns(pids: list[int]) -> int:
    """On-CPU time of every thread of ``pids`` (``/proc/<pid>/task/*/schedstat``)."""
    return sum(cpu_by_pid(pids).values())


def cpu_by_pid(pids: list[int]) -> dict[int, int]:
    """On-CPU ns of each process in ``pids``, all its threads summed."""
    times: dict[int, int] = {}
    for pid in pids:
        total = 0
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as stat:
                    total += int(stat.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        times[pid] = total
    return times


def memory_report(root: int) -> list[dict[str, Any]]:
    """RSS/USS/PSS of each process in the tree, with its role (main/child/grandchild)."""
    import psutil

    rows: list[dict[str, Any]] = []
    try:
        top = psutil.Process(root)
        processes = [top, *top.children(recursive=True)]
    except psutil.Error:
        return rows
    for process in processes:
        try:
            info = process.memory_full_info()
            times = process.cpu_times()
            ppid = process.ppid()
        except psutil.Error:
            continue
        role = "main" if process.pid == root else ("child" if ppid == root else "grandchild")
        rows.append({
            "pid": process.pid,
            "ppid": ppid,
            "role": role,
            "rss": info.rss,
            "uss": info.uss,
            "pss": info.pss,
            "cpu_s": times.user + times.system,
        })
    return rows


class Runtime:
    """The runtime under test as a child process (its own session)."""

    def __init__(self, spec: dict[str, Any], api: str) -> None:
        self.cmd: list[str] = spec["cmd"]
        self.env = {**spec["env"], "AWS_LAMBDA_RUNTIME_API": api}
        self.cwd: str | None = spec.get("cwd")
        self.log_path: str = spec.get("log") or os.devnull
        self.stop_signal = signal.Signals[spec.get("stop_signal", "SIGTERM")]
        self.process: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.started_ns = 0
        self.pids_seen: set[int] = set()

    def start(self) -> int:
        with open(self.log_path, "ab") as log:
            self.started_ns = time.monotonic_ns()
            self.process = subprocess.Popen(
                self.cmd, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pidfd = os.pidfd_open(self.process.pid)
        return self.started_ns

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_GRACE_S, SIGKILL the session; the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_S)
        # Whatever is left in its session (awslambdaric's forked pollers outlive
        # their parent's SIGTERM); lambda-bulkhead's workers have process groups
        # of their own, so ``leaked`` still sees any of them left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        return process.returncode

    def leaked(self) -> list[int]:
        """Processes of the tree still alive shortly after the stop."""
        import psutil

        deadline = time.monotonic() + 1.0
        alive = [pid for pid in self.pids_seen if psutil.pid_exists(pid)]
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)
            alive = [
                pid for pid in alive
                if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            ]
        return alive


# -- statistics ------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p999": at(0.999),
        "max": ordered[-1], "mean": statistics.fmean(ordered), "count": len(ordered),
    }


def crash_figures(server: StandIn, deaths: list[int]) -> dict[str, Any]:
    """Crash -> next invocation running, from the ok events' handler start stamps."""
    from_error: list[float] = []
    from_death: list[float] = []
    cycle: list[float] = []
    delivery: list[float] = []
    n = len(server.payloads)
    for i in range(n):
        body = server.bodies[i]
        if i % 2 == 0:  # ok event: its handler start stamp
            if server.kinds[i] == KIND_RESPONSE and body:
                started = json.loads(body)["t"]
                delivery.append((started - server.sent_ns[i]) / 1e6)
            continue
        j = i + 1
        if j >= n or server.kinds[j] != KIND_RESPONSE or not server.bodies[j]:
            continue
        started = json.loads(server.bodies[j] or b"{}")["t"]
        cycle.append((started - server.sent_ns[i]) / 1e6)
        if server.kinds[i] == KIND_ERROR:
            from_error.append((started - server.done_ns[i]) / 1e6)
        elif server.kinds[i] == KIND_LOST:
            death = max((d for d in deaths if d <= started), default=None)
            if death is not None:
                from_death.append((started - death) / 1e6)
    return {
        "from_error_ms": percentiles(from_error),
        "from_death_ms": percentiles(from_death),
        "cycle_ms": percentiles(cycle),
        "delivery_ms": percentiles(delivery),
    }


# -- modes -------------------------------------------------------------------------


def _cpu_by_role(roles: dict[int, str], marks: dict[str, Any], count: int) -> dict[str, float]:
    """CPU µs per invocation of the main process, its children, its grandchildren."""
    spent: dict[str, float] = {}
    before, after = marks.get("by_pid0", {}), marks.get("by_pid1", {})
    for pid, role in roles.items():
        spent[role] = spent.get(role, 0.0) + (after.get(pid, 0) - before.get(pid, 0)) / 1e3 / count
    return spent


async def run_stream(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    payloads = build_payloads(spec)
    n = len(payloads)
    warm = min(int(spec.get("warm", 0)), n - 1)
    finished: asyncio.Future[None] = loop.create_future()
    marks: dict[str, Any] = {}
    runtime: Runtime | None = None
    pids: list[int] = []
    roles: dict[int, str] = {}

    def discover() -> None:
        assert runtime is not None
        roles.clear()
        roles.update(tree_roles(runtime.pid))
        pids[:] = list(roles)
        runtime.pids_seen.update(pids)

    def on_done(_index: int) -> None:
        count = server.done_count
        if runtime is not None and count == max(1, warm // 2):
            discover()
        if count == warm:
            if not pids and runtime is not None:
                discover()
            marks["by_pid0"] = cpu_by_pid(pids)
            marks["cpu0"] = sum(marks["by_pid0"].values())
            marks["self0"] = time.process_time_ns()
            marks["t0"] = time.monotonic_ns()
        if count == n:
            marks["t1"] = time.monotonic_ns()
            marks["self1"] = time.process_time_ns()
            marks["by_pid1"] = cpu_by_pid(pids)
            marks["cpu1"] = sum(marks["by_pid1"].values())
            if not finished.done():
                finished.set_result(None)

    server = StandIn(payloads, keep_bodies=bool(spec.get("crash")), on_done=on_done)
    port = await server.start()
    runtime = Runtime(spec, f"127.0.0.1:{port}")
    deaths: list[int] = []
    exit_statuses: list[int | None] = []
    if warm == 0:
        marks["t0"] = time.monotonic_ns()
        marks["self0"] = time.process_time_ns()
        marks["cpu0"] = 0
    server.enqueue(range(n))

    def watch() -> None:
        assert runtime is not None
        assert runtime.pidfd is not None
        loop.add_reader(runtime.pidfd, died)

    def died() -> None:
        assert runtime is not None
        assert runtime.pidfd is not None
        deaths.append(time.monotonic_ns())
        loop.remove_reader(runtime.pidfd)
        exit_statuses.append(runtime.stop())
        if spec.get("respawn") and server.done_count < n:
            runtime.start()
            watch()
        elif not finished.done():
            finished.set_exception(RuntimeError(f"runtime exited ({exit_statuses[-1]})"))

    runtime.start()
    watch()
    error = None
    try:
        await asyncio.wait_for(finished, float(spec.get("timeout_s", 120)))
    except (TimeoutError, RuntimeError) as exc:
        error = f"{type(exc).__name__}: {exc} after {server.done_count}/{n} answers"
    memory = memory_report(runtime.pid) if spec.get("memory") and error is None else None
    if runtime.pidfd is not None:
        loop.remove_reader(runtime.pidfd)
    status = runtime.stop()
    server.close()
    leaked = runtime.leaked()
    result: dict[str, Any] = {
        "error": error,
        "n": n,
        "kinds": {
            "response": server.kinds.count(KIND_RESPONSE),
            "error": server.kinds.count(KIND_ERROR),
            "lost": server.kinds.count(KIND_LOST),
        },
        "exit_status": status,
        "deaths": len(deaths),
        "leaked": leaked,
        "memory": memory,
    }
    if error is None and "t1" in marks:
        window_n = n - warm
        window_s = (marks["t1"] - marks["t0"]) / 1e9
        latencies = [
            (server.done_ns[i] - server.sent_ns[i]) / 1e3
            for i in range(n)
            if server.sent_ns[i] >= marks["t0"] and server.kinds[i] == KIND_RESPONSE
        ]
        result.update({
            "window_n": window_n,
            "window_s": window_s,
            "throughput": window_n / window_s if window_s > 0 else None,
            "latency_us": percentiles(latencies),
            "runtime_cpu_us": (marks["cpu1"] - marks["cpu0"]) / 1e3 / window_n if pids else None,
            "standin_cpu_us": (marks["self1"] - marks["self0"]) / 1e3 / window_n,
            "processes": len(pids),
            "cpu_by_role_us": _cpu_by_role(roles, marks, window_n),
        })
    if spec.get("crash"):
        result["crash"] = crash_figures(server, deaths)
    return result


async def run_cold(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    payload = sized_event(int(spec.get("size", 100)))
    first_next: list[float] = []
    first_answer: list[float] = []
    cpu_ms: list[float] = []
    errors: list[str] = []
    for _ in range(int(spec.get("reps", 1))):
        finished: asyncio.Future[None] = loop.create_future()
        started_runtime: list[Runtime] = []

        def on_done(_index: int, finished: asyncio.Future[None] = finished,
                    started_runtime: list[Runtime] = started_runtime) -> None:
            if not finished.done():
                # CPU of every live process of the tree (exited ones not counted).
                if started_runtime:
                    cpu_ms.append(cpu_ns(tree_pids(started_runtime[0].pid)) / 1e6)
                finished.set_result(None)

        server = StandIn([payload], on_done=on_done)
        port = await server.start()
        server.enqueue([0])
        runtime = Runtime(spec, f"127.0.0.1:{port}")
        started = runtime.start()
        started_runtime.append(runtime)
        try:
            await asyncio.wait_for(finished, float(spec.get("timeout_s", 30)))
        except TimeoutError:
            errors.append("no answer in time")
        else:
            first_next.append((server.next_polls[0] - started) / 1e6)
            first_answer.append((server.done_ns[0] - started) / 1e6)
        runtime.stop()
        server.close()
        await asyncio.sleep(float(spec.get("pause_s", 0.05)))
    return {"first_next_ms": first_next, "first_answer_ms": first_answer, "cpu_ms": cpu_ms,
            "errors": errors}


def run_stream_emulator(spec: dict[str, Any]) -> dict[str, Any]:
    """``stream`` against the project's Emulator: throughput and CPU only (no
    per-invocation send times are exposed by it)."""
    from lambda_bulkhead.emulator import Emulator

    payloads = build_payloads(spec)
    n = len(payloads)
    warm = min(int(spec.get("warm", 0)), n - 1)
    done = threading.Event()
    marks: dict[str, Any] = {}
    count = [0]
    pids: list[int] = []
    runtime_box: list[Runtime] = []

    def on_done(_future: object) -> None:  # on the emulator's loop thread
        count[0] += 1
        if count[0] == max(1, warm // 2):
            pids[:] = tree_pids(runtime_box[0].pid)
        if count[0] == warm:
            marks.update(cpu0=cpu_ns(pids), self0=time.process_time_ns(), t0=time.monotonic_ns())
        if count[0] == n:
            marks.update(t1=time.monotonic_ns(), self1=time.process_time_ns(), cpu1=cpu_ns(pids))
            done.set()

    with Emulator(timeout_s=900, max_history=n + 10) as emulator:
        futures = [emulator.submit(payload) for payload in payloads]
        runtime = Runtime({**spec, "env": {**spec["env"], **emulator.function_env()}},
                          emulator.runtime_api)
        runtime_box.append(runtime)
        for future in futures:
            future.add_done_callback(on_done)
        runtime.start()
        ok = done.wait(float(spec.get("timeout_s", 120)))
        runtime.stop()
    result: dict[str, Any] = {"error": None if ok else f"timeout after {count[0]}/{n}", "n": n}
    if ok:
        window_n = n - warm
        window_s = (marks["t1"] - marks["t0"]) / 1e9
        result.update({
            "window_n": window_n,
            "window_s": window_s,
            "throughput": window_n / window_s,
            "runtime_cpu_us": (marks["cpu1"] - marks["cpu0"]) / 1e3 / window_n,
            "standin_cpu_us": (marks["self1"] - marks["self0"]) / 1e3 / window_n,
        })
    return result


def serve(spec: dict[str, Any]) -> None:
    """Stand-in only: print the port, serve ``n`` queued events until stdin closes."""
    payloads = build_payloads(spec)
    if spec.get("backend") == "emulator":
        from lambda_bulkhead.emulator import Emulator

        with Emulator(timeout_s=900, max_history=len(payloads) + 10) as emulator:
            for payload in payloads:
                emulator.submit(payload)
            print(emulator.port, flush=True)
            sys.stdin.read()
        return

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = StandIn(payloads)
        port = await server.start()
        server.enqueue(range(len(payloads)))
        print(port, flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    mode = spec["mode"]
    if mode == "serve":
        serve(spec)
        return
    if spec.get("backend") == "emulator":
        result = run_stream_emulator(spec)
    elif mode == "stream":
        result = asyncio.run(run_stream(spec))
    elif mode == "cold":
        result = asyncio.run(run_cold(spec))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
