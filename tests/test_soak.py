"""The soak, small: CI runs it with a few hundred invocations
(``BULKHEAD_SOAK_INVOCATIONS``); ``python benchmarks/soak.py`` runs 10,000."""

from __future__ import annotations

import os

import pytest
from soak import run_soak


@pytest.mark.soak
def test_soak_mixed_crashes_over_four_workers() -> None:
    """30 % random crashes over 4 workers: one right answer per request, nothing
    lost or doubled, no leaked process or fd, supervisor memory flat."""
    report = run_soak(int(os.environ.get("BULKHEAD_SOAK_INVOCATIONS", "400")))
    assert report.wrong_answers == []
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.leaked_processes == 0
    assert report.fds_after == report.fds_before
    assert report.rss_growth_mb < 8, f"supervisor RSS grew {report.rss_growth_mb:.1f} MB"
