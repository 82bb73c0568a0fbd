"""Lambda's shutdown of a runtime process, as signals: SIGTERM and a grace period only
when an extension registered, else SIGKILL at once (the Extensions API's shutdown phase)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from lambda_bulkhead.emulator._records import ShutdownReport

__all__ = ["signal_shutdown"]

_POLL_S = 0.005


def signal_shutdown(
    process: subprocess.Popen[bytes] | int, *, terminate_first: bool, grace_s: float, group: bool
) -> ShutdownReport:
    """SIGTERM (if ``terminate_first``), wait up to ``grace_s``, then SIGKILL; wait for the end."""
    started = time.monotonic()
    sigterm = sigkill = False
    exited_in_grace = False
    if terminate_first:
        sigterm = _send(process, signal.SIGTERM, group)
        exited_in_grace = _wait(process, grace_s)
    if not exited_in_grace:
        sigkill = _send(process, signal.SIGKILL, group)
        _wait(process, None)
    returncode = process.returncode if isinstance(process, subprocess.Popen) else None
    return ShutdownReport(sigterm=sigterm, sigkill=sigkill, exited_in_grace=exited_in_grace,
                          returncode=returncode, grace_s=grace_s,
                          elapsed_s=time.monotonic() - started)


def _pid(process: subprocess.Popen[bytes] | int) -> int:
    return process.pid if isinstance(process, subprocess.Popen) else process


def _send(process: subprocess.Popen[bytes] | int, signum: int, group: bool) -> bool:
    """Send ``signum``; ``False`` if the process (or group) was already gone."""
    if isinstance(process, subprocess.Popen) and process.poll() is not None:
        return False
    try:
        if group:
            os.killpg(_pid(process), signum)
        else:
            os.kill(_pid(process), signum)
    except ProcessLookupError:
        return False
    return True


def _wait(process: subprocess.Popen[bytes] | int, timeout: float | None) -> bool:
    """Whether the process ended within ``timeout`` seconds (``None``: wait for it)."""
    if isinstance(process, subprocess.Popen):
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:  # not our child: poll whether the pid still exists
        try:
            os.kill(process, 0)
        except ProcessLookupError:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
