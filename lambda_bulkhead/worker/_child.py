"""What every process forked to run the handler's code sets up first: the
template (forked by the supervisor) and each worker (forked by the template)."""

from __future__ import annotations

import os
import sys

__all__ = ["take_output_pipes"]


def take_output_pipes(stdout_w: int, stderr_w: int) -> None:
    """Make fd 1 and fd 2 these pipes to the supervisor (the given fds are closed),
    with Python's stdout and stderr line-buffered, so that what is printed just
    before a crash (or before a failed import of the handler) is in the pipe."""
    os.dup2(stdout_w, 1)
    os.dup2(stderr_w, 2)
    os.close(stdout_w)
    os.close(stderr_w)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
