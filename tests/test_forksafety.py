"""Handlers whose import starts threads: native pools must not be forked.

GNU OpenMP's pool does not survive ``fork``: a worker forked from a template
whose import ran a parallel region hangs on its own first one.  The tests
build a tiny OpenMP library with gcc at test time and run it at import and in
the handler, as a torch warm-up does; and run real numpy.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _limits_helpers import answer, error_body, invoke, report, start_supervised, started_record
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator

OMP_SOURCE = r"""
#include <omp.h>
double parallel_sum(int n) {
    double total = 0;
    #pragma omp parallel for reduction(+:total)
    for (int i = 0; i < n; i++) total += i * 0.5;
    return total;
}
int max_threads(void) { return omp_get_max_threads(); }
"""

OMP_APP = """
import ctypes
import os

lib = ctypes.CDLL({library!r})
lib.parallel_sum.restype = ctypes.c_double
lib.parallel_sum(100000)  # a warm-up at import starts the OpenMP pool, as torch's does
with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as log:
    log.write(f"{{os.getpid()}}\\n")


def handler(event, context):
    if event.get("action") == "segv":
        ctypes.string_at(0)
    return {{
        "sum": lib.parallel_sum(100000),
        "maxThreads": lib.max_threads(),
        "pid": os.getpid(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
    }}
"""

PLAIN_APP = """
import os

with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as log:
    log.write(f"{os.getpid()}\\n")


def handler(event, context):
    return {"pid": os.getpid()}
"""

EXPECTED_SUM = sum(i * 0.5 for i in range(100000))


@pytest.fixture(scope="session")
def omp_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libomp_demo.so, built with ``gcc -fopenmp`` (skipped where that cannot be done)."""
    root = tmp_path_factory.mktemp("omp")
    source = root / "omp_demo.c"
    source.write_text(OMP_SOURCE)
    library = root / "libomp_demo.so"
    try:
        built = subprocess.run(
            ["gcc", "-shared", "-fPIC", "-fopenmp", "-O1", "-o", str(library), str(source)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except FileNotFoundError:
        pytest.skip("gcc is not installed: the OpenMP test library cannot be built")
    if built.returncode != 0:
        pytest.skip(f"gcc -fopenmp failed (no libgomp?): {built.stderr.strip()[:200]}")
    return library


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator(timeout_s=20.0)


def _worker_start(rt: RuntimeProcess) -> dict[str, Any]:
    return rt.wait_for(lambda r: r.get("message") == "worker start")


def test_an_openmp_pool_started_at_import_does_not_hang_the_workers(
    runtime: StartRuntime, emu: Emulator, omp_library: Path
) -> None:
    """The template has the pool's threads after the import: workers are not forked
    from it, every invocation answers, and one record says why."""
    rt = start_supervised(runtime, emu, OMP_APP.format(library=str(omp_library)))
    for _ in range(3):
        assert answer(rt, {})["sum"] == EXPECTED_SUM
    record = _worker_start(rt)
    assert record["mode"] == "import"
    assert record["templateThreads"] >= 2
    assert "threads" in record["reason"]
    assert started_record(rt)["workerStart"] == "import"


def test_forking_the_pool_anyway_hangs(
    runtime: StartRuntime, make_emulator: MakeEmulator, omp_library: Path
) -> None:
    """BULKHEAD_WORKER_START=fork forks the template as asked, and the forked pool
    hangs until the deadline: the hazard the automatic choice avoids."""
    emu = make_emulator(timeout_s=2.0)
    rt = start_supervised(runtime, emu, OMP_APP.format(library=str(omp_library)),
                          env={"BULKHEAD_WORKER_START": "fork"})
    error = error_body(invoke(rt, {}))
    assert error["errorType"] == "Sandbox.Timedout", error
    record = _worker_start(rt)
    assert record["mode"] == "fork"
    assert "will hang" in record["reason"]


def test_a_crash_in_import_mode_is_answered_by_a_worker_imported_already(
    runtime: StartRuntime, emu: Emulator, omp_library: Path
) -> None:
    """After a segfault the next invocation runs on the spare, which imported the
    handler before the crash (no import between the crash and the answer)."""
    rt = start_supervised(runtime, emu, OMP_APP.format(library=str(omp_library)))
    first = answer(rt, {})
    spare = rt.wait_for(lambda r: r.get("message") == "worker forked", timeout=60)
    imports_before = (rt.cwd / "imports.log").read_text().split()
    crashed = invoke(rt, {"action": "segv"})
    assert error_body(crashed)["errorType"] == "Runtime.ExitError"
    after = answer(rt, {})
    assert after["pid"] == spare["pid"] != first["pid"]
    assert str(after["pid"]) in imports_before
    assert after["sum"] == EXPECTED_SUM


def test_import_mode_can_be_forced_and_each_worker_imports(
    runtime: StartRuntime, emu: Emulator
) -> None:
    """BULKHEAD_WORKER_START=import on a single-threaded handler: the template serves
    as the first worker, and the spare runs the module's import code itself."""
    rt = start_supervised(runtime, emu, PLAIN_APP, env={"BULKHEAD_WORKER_START": "import"})
    first = answer(rt, {})
    spare = rt.wait_for(lambda r: r.get("message") == "worker forked", timeout=60)
    assert _worker_start(rt)["reason"] == "BULKHEAD_WORKER_START=import"
    imported_by = {int(pid) for pid in (rt.cwd / "imports.log").read_text().split()}
    assert imported_by == {first["pid"], spare["pid"]}


def test_a_single_threaded_import_is_forked(runtime: StartRuntime, emu: Emulator) -> None:
    """The default for a handler whose import starts no thread: workers are forked
    from the template, which alone ran the module's import code."""
    rt = start_supervised(runtime, emu, PLAIN_APP)
    first = answer(rt, {})
    record = _worker_start(rt)
    assert (record["mode"], record["templateThreads"]) == ("fork", 1)
    imported_by = (rt.cwd / "imports.log").read_text().split()
    assert len(imported_by) == 1
    assert str(first["pid"]) not in imported_by


def test_native_pools_are_sized_per_worker(
    runtime: StartRuntime, emu: Emulator, omp_library: Path
) -> None:
    """With two workers on this machine's CPUs each OpenMP pool gets CPUs/2 threads,
    unless the user set OMP_NUM_THREADS, which is kept."""
    source = OMP_APP.format(library=str(omp_library))
    rt = start_supervised(runtime, emu, source, env={"BULKHEAD_WORKERS": "2"})
    cpus = len(os.sched_getaffinity(0))
    sized = answer(rt, {})
    assert sized["omp"] == str(max(1, cpus // 2))
    assert sized["maxThreads"] == max(1, cpus // 2)
    rt.stop()
    user = start_supervised(runtime, emu, source,
                            env={"BULKHEAD_WORKERS": "2", "OMP_NUM_THREADS": "3"})
    assert (answer(user, {})["omp"], answer(user, {})["maxThreads"]) == ("3", 3)


def test_one_worker_keeps_the_default_pool_size(
    runtime: StartRuntime, emu: Emulator, omp_library: Path
) -> None:
    """One worker: nothing is set, the pool has a thread per CPU as usual."""
    rt = start_supervised(runtime, emu, OMP_APP.format(library=str(omp_library)),
                          env={"OMP_NUM_THREADS": None})
    default = answer(rt, {})
    assert default["omp"] is None
    assert default["maxThreads"] == len(os.sched_getaffinity(0))


NUMPY_APP = """
import os

import numpy

WEIGHTS = numpy.arange(256 * 256, dtype=numpy.float64).reshape(256, 256) / 65536
WARM = WEIGHTS @ WEIGHTS  # a warm-up at import, as a model load does


def handler(event, context):
    product = WEIGHTS @ WEIGHTS
    return {
        "checksum": float(product.sum()),
        "same": bool((product == WARM).all()),
        "blasThreads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_numpy_with_a_warm_up_at_import(
    runtime: StartRuntime, emu: Emulator, workers: int
) -> None:
    """Real numpy, a matmul at import and in the handler: every invocation answers
    with the right product, with one worker or two (OpenBLAS sized per worker)."""
    pytest.importorskip("numpy", reason="numpy is a test extra: pip install '.[test]'")
    rt = start_supervised(runtime, emu, NUMPY_APP, env={"BULKHEAD_WORKERS": str(workers)})
    answers = [answer(rt, {}) for _ in range(3)]
    assert all(one["same"] for one in answers), answers
    assert len({one["checksum"] for one in answers}) == 1
    cpus = len(os.sched_getaffinity(0))
    expected = None if workers == 1 else str(max(1, cpus // workers))
    assert {one["blasThreads"] for one in answers} == {expected}
    assert report(rt, invoke(rt, {}).request_id)["outcome"] == "success"
    # OpenBLAS's own pool survives fork: it is no reason to import per worker.
    record = _worker_start(rt)
    assert record["mode"] == "fork", record
    if workers == 1 and cpus > 1:
        assert "OpenBLAS" in record["reason"], record
