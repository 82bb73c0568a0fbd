"""What each process of the runtime imports before its first ``/next``.

Every module imported on the way costs the cold start (docs/benchmarks.md,
"Status after the second optimisation pass"); these tests keep the heavy ones
from coming back through a module-level import.  Each check runs in a fresh
interpreter, as the runtime starts.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

#: Never imported by the runtime itself before its first /next, in any process.
EVERYWHERE = ("typing", "dataclasses", "inspect", "argparse", "logging", "signal",
              "socket", "random", "traceback", "structlog", "psutil", "httpx", "asyncio",
              "lambda_bulkhead.events", "lambda_bulkhead.emulator")
#: The supervisor never decodes an event.  The processes that run the handler (the
#: template, the in-process runtime) import the public json module (and the re it
#: imports) when they load the handler, before their first /next: about 2 ms of
#: their cold start (docs/benchmarks.md), paid on purpose instead of driving
#: CPython's private _json scanner as an earlier version did.
#: Nor does it load the worker's modules (the template's and workers' side).
SUPERVISOR_ONLY = ("json", "re", "lambda_bulkhead.worker")

ROOT = Path(__file__).resolve().parent.parent

SIDES = {
    "supervisor": (
        "lambda_bulkhead._cli", "lambda_bulkhead._runtime", "lambda_bulkhead.supervisor",
        "lambda_bulkhead.supervisor._supervisor", "lambda_bulkhead.runtime_api._http",
    ),
    "template": (
        "lambda_bulkhead._cli", "lambda_bulkhead._lazy", "lambda_bulkhead.worker",
        "lambda_bulkhead.handler._handler",
    ),
    "in-process": (
        "lambda_bulkhead._cli", "lambda_bulkhead._inprocess", "lambda_bulkhead.runtime_api._http",
    ),
}


def _imported_after(modules: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"watched = {list(watched)!r}\n"
        "before = {m for m in watched if m in sys.modules}\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in watched if m in sys.modules and m not in before))\n"
    )
    # -S: no site-packages .pth hooks importing things on their behalf; -I: no
    # user environment.  The checkout is found through the path given.
    out = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + code],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    imported: list[str] = ast.literal_eval(out)
    return imported


@pytest.mark.parametrize("side", sorted(SIDES))
def test_no_heavy_module_is_imported_on_the_way_to_the_first_next(side: str) -> None:
    """The modules each process runs before its first /next import none of the
    heavy ones."""
    watched = EVERYWHERE + (("enum",) if side == "template" else ())
    if side == "supervisor":
        watched += SUPERVISOR_ONLY
    assert _imported_after(SIDES[side], watched) == []


def test_the_check_sees_a_heavy_import() -> None:
    """The check itself works: a module that imports logging is caught."""
    assert _imported_after(("logging.handlers",), ("logging",)) == ["logging"]
