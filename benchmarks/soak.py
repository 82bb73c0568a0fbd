"""The long soak: ``python benchmarks/soak.py [INVOCATIONS]`` (default 10,000).

Runs tests/soak.py's routine (4 workers, 30 % of invocations crashing in
random ways) and prints the figures recorded in docs/reliability.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "tests"),
                str(Path(__file__).resolve().parent.parent)]

from soak import run_soak  # noqa: E402


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    report = run_soak(count)
    rows = [
        ("invocations", f"{report.invocations}"),
        ("crashes survived", f"{report.crashes}"),
        ("wrong answers", f"{len(report.wrong_answers)}"),
        ("answers lost", f"{report.lost}"),
        ("answers duplicated", f"{report.duplicated}"),
        ("leaked processes", f"{report.leaked_processes}"),
        ("supervisor fds before / after", f"{report.fds_before} / {report.fds_after}"),
        ("supervisor RSS before / after", f"{report.rss_before_mb:.1f} MB / "
                                          f"{report.rss_after_mb:.1f} MB "
                                          f"({report.rss_growth_mb:+.1f} MB)"),
        ("wall time", f"{report.seconds:.1f} s "
                      f"({report.invocations / report.seconds:.0f} invocations/s)"),
    ]
    print("| | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for problem in report.wrong_answers[:20]:
        print("wrong:", problem, file=sys.stderr)
    clean = not (report.wrong_answers or report.lost or report.duplicated
                 or report.leaked_processes)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
