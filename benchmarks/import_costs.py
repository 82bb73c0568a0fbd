"""What each module the cold-start path avoids would cost it (issue 19).

    python benchmarks/import_costs.py [--runs 9]

Each module is imported in a fresh interpreter that has already imported the
supervisor's side of the runtime (what ``lambda-bulkhead run`` imports before
its first ``/next``), and the fastest of ``--runs`` runs is kept: the table
gives what a module-level import of it would add to every cold start, on top
of what the runtime imports anyway.  docs/benchmarks.md ("Cold-start tricks,
kept or dropped") keeps each trick that avoids more than 1 ms.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = (
    "typing", "dataclasses", "inspect", "enum", "re", "json", "signal", "socket",
    "selectors", "contextlib", "random", "traceback", "logging", "argparse",
    "asyncio", "structlog", "psutil", "httpx",
)
RUNTIME = (
    "lambda_bulkhead._cli", "lambda_bulkhead._runtime", "lambda_bulkhead.supervisor",
    "lambda_bulkhead.supervisor._supervisor",
)


def marginal_us(module: str) -> float:
    """Microseconds to import ``module`` once the runtime's own modules are in."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        f"import {', '.join(RUNTIME)}\n"
        "import time\n"
        "started = time.perf_counter_ns()\n"
        f"import {module}\n"
        "print((time.perf_counter_ns() - started) / 1000)\n"
    )
    # -S: no site, as in a Lambda package (no .pth hooks importing re and
    # friends on the runtime's behalf); site-packages through PYTHONPATH.
    site_packages = [path for path in sys.path if path.endswith("site-packages")]
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": ":".join(site_packages)},
    ).stdout
    return float(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    print(f"| module | added to the cold start, ms (fastest of {args.runs}) |")
    print("|---|---:|")
    for module in MODULES:
        fastest = min(marginal_us(module) for _ in range(args.runs))
        print(f"| `{module}` | {fastest / 1000:.1f} |")


if __name__ == "__main__":
    main()
