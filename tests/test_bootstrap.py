"""``bootstrap.sh`` as Lambda starts it: its one-line errors, the Python it picks,
one interpreter started (by ``exec``, so the runtime is the process Lambda
started), and the arguments of ``AWS_LAMBDA_EXEC_WRAPPER`` ignored.

The zip built by ``lambda-bulkhead package`` runs this same file as its
``bootstrap``: tests/test_package.py runs it from an unpacked zip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import pytest
from _deploy_helpers import WRAPPER_ARGS, bare_python
from conftest import REPO_ROOT, RuntimeProcess, runtime_env

from lambda_bulkhead.emulator import Emulator

BOOTSTRAP = REPO_ROOT / "lambda_bulkhead" / "bootstrap.sh"
PREFIX = "lambda-bulkhead bootstrap: "
#: The shells a bootstrap meets: dash (Debian's sh), bash (Amazon Linux's sh).
SHELLS = [path for path in map(shutil.which, ("sh", "bash")) if path]


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bare_python(tmp_path_factory.mktemp("bare") / "venv")


def start(*args: str, env: Mapping[str, str], shell: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    """Run the bootstrap to completion (directly, as Lambda does, or by ``shell``),
    in ``LAMBDA_TASK_ROOT`` as Lambda does."""
    argv = [shell, str(BOOTSTRAP)] if shell else [str(BOOTSTRAP)]
    return subprocess.run([*argv, *args], env=dict(env), cwd=env["LAMBDA_TASK_ROOT"],
                          capture_output=True, text=True, timeout=30, check=False)


def plain_env(task_root: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: no PYTHONPATH (nothing of this checkout importable)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "LAMBDA_TASK_ROOT": str(task_root), **extra}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 127, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    assert result.stdout == ""
    return lines[0].removeprefix(PREFIX)


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS, ids=os.path.basename)
def test_no_python_is_one_line(tmp_path: Path, shell: str) -> None:
    """No candidate Python exists: one line naming the ways to provide one, exit 127."""
    for fixed in ("/opt/python/bin/python3", "/var/lang/bin/python3"):
        if os.path.exists(fixed):
            pytest.skip(f"{fixed} exists on this machine: the bootstrap would find it")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {**plain_env(tmp_path, _HANDLER="app.handler"), "PATH": str(empty)}
    line = one_error_line(start(env=env, shell=shell))
    assert line.startswith("no Python found (set BULKHEAD_PYTHON, bundle one in "
                           f"{tmp_path}/python")


def test_a_bulkhead_python_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    """BULKHEAD_PYTHON naming nothing runnable is an error, not a silent fallback."""
    env = plain_env(tmp_path, _HANDLER="app.handler", BULKHEAD_PYTHON="/no/such/python")
    assert one_error_line(start(env=env)) == (
        "BULKHEAD_PYTHON=/no/such/python is not an executable Python")


@pytest.mark.parametrize("shell", SHELLS, ids=os.path.basename)
def test_handler_unset_is_one_line(tmp_path: Path, shell: str) -> None:
    """_HANDLER unset: one line saying so, exit 127, before any Python starts."""
    env = plain_env(tmp_path, BULKHEAD_PYTHON=sys.executable)
    assert one_error_line(start(env=env, shell=shell)).startswith("_HANDLER is not set")


@pytest.mark.parametrize("shell", SHELLS, ids=os.path.basename)
def test_lambda_bulkhead_not_importable_is_one_line(tmp_path: Path, bare: Path,
                                                    shell: str) -> None:
    """A Python that cannot import lambda_bulkhead says so in one line, naming itself
    and the package directory."""
    env = plain_env(tmp_path, _HANDLER="app.handler", BULKHEAD_PYTHON=str(bare))
    line = one_error_line(start(*WRAPPER_ARGS, env=env, shell=shell))
    assert line.startswith(f"lambda_bulkhead is not importable by {bare} ")
    assert f"--target {tmp_path} lambda-bulkhead" in line


def _old_python() -> str | None:
    """A Python older than 3.11 on this machine (on PATH, or installed by pyenv)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [shutil.which(f"python3.{minor}") for minor in (10, 9, 8)]
    found += sorted(map(str, pyenv.glob("3.[0-9].*/bin/python3")))
    found += sorted(map(str, pyenv.glob("3.10.*/bin/python3")))
    for path in filter(None, found):
        if subprocess.run([path, "-c", "import sys; assert sys.version_info < (3, 11)"],
                          capture_output=True, check=False).returncode == 0:
            return path
    return None


def test_a_too_old_python_is_one_line(tmp_path: Path) -> None:
    """A Python older than 3.11 says its version in one line, exit 127."""
    old = _old_python()
    if old is None:
        pytest.skip("no Python older than 3.11 here (PATH, pyenv) to play the too-old one")
    env = plain_env(tmp_path, _HANDLER="app.handler", BULKHEAD_PYTHON=old)
    line = one_error_line(start(env=env))
    assert " is Python 3." in line
    assert line.endswith("lambda-bulkhead needs 3.11 or newer (set BULKHEAD_PYTHON, or use a "
                         "python3.11+ runtime or layer)")


def test_a_python_bundled_in_the_package_comes_first(tmp_path: Path, bare: Path) -> None:
    """``$LAMBDA_TASK_ROOT/python/bin/python3`` is picked before anything on PATH."""
    bundled = tmp_path / "python" / "bin" / "python3"
    bundled.parent.mkdir(parents=True)
    bundled.symlink_to(bare)
    line = one_error_line(start(env=plain_env(tmp_path, _HANDLER="app.handler")))
    assert line.startswith(f"lambda_bulkhead is not importable by {bundled} ")


# -- the happy path ------------------------------------------------------------------------


@pytest.fixture
def started() -> Iterator[list[RuntimeProcess]]:
    processes: list[RuntimeProcess] = []
    yield processes
    for process in processes:
        process.cleanup()


def counting_python(directory: Path) -> tuple[Path, Path]:
    """A BULKHEAD_PYTHON that appends a line to a file each time it starts, then
    becomes this test's Python (exec, same process)."""
    calls = directory / "python-starts"
    script = directory / "python"
    script.write_text(f'#!/bin/sh\necho started >> "{calls}"\nexec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return script, calls


@pytest.mark.parametrize("args", [(), WRAPPER_ARGS], ids=["provided", "exec-wrapper"])
def test_one_python_is_started_and_it_is_the_runtime(
    emulator: Emulator, task_root: Path, started: list[RuntimeProcess], args: tuple[str, ...]
) -> None:
    """As the provided bootstrap and as the exec wrapper (its arguments ignored): the
    bootstrap starts its Python exactly once, by exec (the process Lambda started
    is the runtime), and the function answers, seeing the runtime started as
    ``python -m lambda_bulkhead run HANDLER``."""
    (task_root / "app.py").write_text(
        "import sys\n"
        "def handler(event, context):\n"
        "    main = sys.modules['__main__']\n"
        "    return {'argv': sys.argv, 'main': main.__spec__.name, 'path0': sys.path[0]}\n")
    python, calls = counting_python(task_root.parent)
    env = runtime_env(emulator, task_root, {"_HANDLER": "app.handler",
                                            "BULKHEAD_PYTHON": str(python)})
    runtime = RuntimeProcess([str(BOOTSTRAP), *args], env, task_root, emulator)
    started.append(runtime)
    runtime.wait_until_polling()
    # What `python -m lambda_bulkhead run app.handler` shows a handler, as before.
    seen = json.loads(runtime.invoke(b"{}").body)
    assert seen["argv"] == [str(BOOTSTRAP.parent / "__main__.py"), "run", "app.handler"]
    assert seen["main"] == "lambda_bulkhead.__main__"
    assert seen["path0"] == str(task_root)
    assert calls.read_text().splitlines() == ["started"]
    assert Path(psutil.Process(runtime.pid).exe()).resolve() == Path(sys.executable).resolve()
