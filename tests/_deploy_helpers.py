"""Shared by tests/test_bootstrap.py and tests/test_package.py: what Lambda passes
to an exec wrapper, and a Python with nothing installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: What the managed Python runtime passes to an AWS_LAMBDA_EXEC_WRAPPER.
WRAPPER_ARGS = ("/var/lang/bin/python3.12", "/var/runtime/bootstrap.py")


def bare_python(directory: Path) -> Path:
    """A fresh venv's Python: no lambda-bulkhead, no dependencies of it."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(directory)], check=True)
    return directory / "bin" / "python"
