"""``lambda-bulkhead package``: the zip's layout decisions (pure functions), and
zips built for real, unpacked into an empty directory and run the way Lambda
runs them: its ``bootstrap`` started by a Python that has nothing installed,
against the emulator, as the provided bootstrap and as the exec wrapper.

Builds need pip to find lambda-bulkhead's dependencies (pip's cache, this
machine's index, or PyPI).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from _deploy_helpers import WRAPPER_ARGS, bare_python
from conftest import REPO_ROOT, RuntimeProcess

from lambda_bulkhead._cli._package import (
    UNZIPPED_LIMIT,
    ZIPPED_LIMIT,
    explain_pip_failure,
    included,
    pip_install_argv,
    size_lines,
    zip_mode,
)
from lambda_bulkhead._cli._target import Target
from lambda_bulkhead.emulator import Emulator

HOST = Target(python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
              architecture="x86_64")
BUILD_TIMEOUT_S = 300

#: Handlers added to a copy of examples/: where the running code came from.
WHERE = """\
import sys

import lambda_bulkhead
import six
import structlog


def handler(event, context):
    return {"bulkhead": lambda_bulkhead.__file__, "structlog": structlog.__file__,
            "six": six.__file__, "python": sys.executable}
"""


def package(*args: str, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``python -m lambda_bulkhead package ARGS``, to completion."""
    return subprocess.run(
        [sys.executable, "-m", "lambda_bulkhead", "package", *args],
        env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=BUILD_TIMEOUT_S, check=False,
    )


def unzip(archive_path: Path, destination: Path) -> Path:
    """Unpack keeping the modes the zip records (zipfile itself drops them), as Lambda does."""
    destination.mkdir()
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            archive.extract(info, destination)
            (destination / info.filename).chmod(info.external_attr >> 16 & 0o777)
    return destination


# -- pure decisions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "is_dir", "kept"),
    [
        ("app.py", False, True),
        ("pkg/module.py", False, True),
        ("bootstrap", False, True),
        ("psutil/_psutil_linux.abi3.so", False, True),
        ("httpx-0.28.1.dist-info/METADATA", False, True),
        ("tests", True, False),
        ("psutil/tests/test_linux.py", False, False),
        ("pkg/test", True, False),
        ("conftest.py", False, False),
        ("test_app.py", False, False),
        ("app_test.py", False, False),
        ("latest.py", False, True),
        (".pytest_cache", True, False),
        (".git/config", False, False),
        (".coverage", False, False),
        (".coverage.host.1234.567", False, False),
        (".venv", True, False),
        ("mypkg.egg-info", True, False),
        ("__pycache__", True, False),
        ("pkg/__pycache__/module.cpython-311.pyc", False, False),
        ("stray.pyc", False, False),
    ],
)
def test_what_goes_into_the_zip_before_bytecode_is_compiled(
    path: str, is_dir: bool, kept: bool
) -> None:
    """Tests, caches, VCS/venv directories and all bytecode are left out."""
    assert included(tuple(path.split("/")), is_dir=is_dir) is kept


def test_only_the_targets_bytecode_goes_into_the_zip() -> None:
    """With the target's tag, its own .pyc files go in; another Python's never do."""
    tag = "cpython-312"
    assert included(("pkg", "__pycache__"), is_dir=True, pyc_tag=tag)
    assert included(("pkg", "__pycache__", "m.cpython-312.pyc"), is_dir=False, pyc_tag=tag)
    assert not included(("pkg", "__pycache__", "m.cpython-311.pyc"), is_dir=False, pyc_tag=tag)
    assert not included(("tests", "__pycache__", "m.cpython-312.pyc"), is_dir=False,
                        pyc_tag=tag)
    assert not included(("m.cpython-312.pyc",), is_dir=False, pyc_tag=tag)


def test_file_modes_are_0755_for_executables_and_0644_otherwise() -> None:
    """Whoever could execute it, everyone can; nothing else is executable or private."""
    assert zip_mode(stat.S_IFREG | 0o700) == 0o755
    assert zip_mode(stat.S_IFREG | 0o744) == 0o755
    assert zip_mode(stat.S_IFREG | 0o600) == 0o644
    assert zip_mode(stat.S_IFREG | 0o664) == 0o644


@pytest.mark.parametrize(
    ("target", "newest", "absent"),
    [
        (Target(python_version="3.11", architecture="x86_64"), "manylinux_2_26_x86_64",
         "manylinux_2_27_x86_64"),
        (Target(python_version="3.12", architecture="arm64"), "manylinux_2_34_aarch64",
         "manylinux_2_35_aarch64"),
    ],
)
def test_wheel_platforms_follow_the_runtimes_glibc(target: Target, newest: str,
                                                   absent: str) -> None:
    """python3.11 runs on Amazon Linux 2 (glibc 2.26), 3.12+ on AL2023 (2.34): no
    wheel for a newer glibc, and the legacy manylinux names are accepted too."""
    platforms = target.platforms
    assert platforms[0] == newest
    assert absent not in platforms
    machine = "aarch64" if target.architecture == "arm64" else "x86_64"
    assert f"manylinux2014_{machine}" in platforms
    assert all(platform.endswith(machine) for platform in platforms)


def test_pip_is_asked_for_wheels_of_the_target_only(tmp_path: Path) -> None:
    """pip gets the target's interpreter, ABI and platforms, wheels only, no bytecode."""
    target = Target(python_version="3.13", architecture="arm64")
    argv = pip_install_argv("py", target, tmp_path, ["httpx>=0.27"], [tmp_path / "req.txt"])
    assert argv[:6] == ["py", "-m", "pip", "install", "--target", str(tmp_path)]
    pairs = set(itertools.pairwise(argv))
    assert {("--python-version", "3.13"), ("--abi", "cp313"), ("--implementation", "cp"),
            ("--platform", "manylinux_2_34_aarch64"),
            ("--requirement", str(tmp_path / "req.txt"))} <= pairs
    assert "--only-binary=:all:" in argv
    assert "--no-compile" in argv
    assert argv[-1] == "httpx>=0.27"


def test_the_size_is_told_against_lambdas_limits() -> None:
    """Under both limits: one line; over 50 MB zipped: a warning; over 250 MB unzipped:
    an error."""
    lines, error = size_lines(3 * 1024 * 1024, 9 * 1024 * 1024)
    assert lines == ["3.0 MB zipped (limit 50 MB for a direct upload, more through S3), "
                     "9.0 MB unzipped (limit 250 MB, layers included)"]
    assert error is None
    lines, error = size_lines(ZIPPED_LIMIT + 1, ZIPPED_LIMIT * 2)
    assert error is None
    assert lines[1].startswith("over 50 MB zipped: upload it to S3")
    _, error = size_lines(ZIPPED_LIMIT, UNZIPPED_LIMIT + 1)
    assert error is not None
    assert "over Lambda's 250 MB: deploy a container image instead" in error


def test_a_pip_failure_of_another_kind_keeps_pips_error_lines() -> None:
    """Anything but "no matching distribution" is pip's own ERROR lines, on one line."""
    output = "Collecting x\nERROR: Invalid requirement: 'x=='\nERROR: second\n"
    assert explain_pip_failure(output, HOST) == (
        f"pip could not install the requirements for {HOST.describe()}: "
        "Invalid requirement: 'x=='; second")


# -- a real build, run as Lambda runs it ------------------------------------------------------


@dataclass
class Built:
    source: Path
    archive: Path
    output: str
    task_root: Path
    python: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """examples/ plus a handler saying where its code came from, a requirements.txt
    (six), and things that must stay out; packaged for this machine's Python;
    unpacked into an empty directory; and a Python with nothing installed."""
    base = tmp_path_factory.mktemp("package")
    source = base / "src"
    shutil.copytree(REPO_ROOT / "examples", source,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (source / "where.py").write_text(WHERE)
    (source / "requirements.txt").write_text("six\n")
    (source / "tests").mkdir()
    (source / "tests" / "test_where.py").write_text("def test(): pass\n")
    (source / "conftest.py").write_text("")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "where.cpython-39.pyc").write_bytes(b"old")
    (source / ".pytest_cache").mkdir()
    (source / ".pytest_cache" / "README.md").write_text("cache")
    archive = base / "function.zip"
    result = package(str(source), "--output", str(archive))
    assert result.returncode == 0, result.stdout + result.stderr
    return Built(source, archive, result.stdout, unzip(archive, base / "task"),
                 bare_python(base / "bare"))


def test_the_build_prints_a_line_per_step_and_the_size(built: Built) -> None:
    """Progress: the target, six steps, the requirements pip collects, the size."""
    lines = built.output.splitlines()
    assert lines[0] == f"packaging {built.source} for {HOST.describe()}"
    steps = [line for line in lines if line.startswith("[")]
    assert [step[:5] for step in steps] == [f"[{i}/6]" for i in range(1, 7)]
    assert "+ " + str(built.source / "requirements.txt") in steps[0]
    assert any(line.strip().startswith("six") for line in lines)
    assert lines[-1].startswith(f"{built.archive}: ")
    assert "MB zipped (limit 50 MB" in lines[-1]
    assert "MB unzipped (limit 250 MB" in lines[-1]


def test_the_zip_has_the_layout_lambda_needs(built: Built) -> None:
    """bootstrap (0755) at the root, lambda_bulkhead, its dependencies, the requirements,
    the function's code; bytecode for this Python only, the dependencies' used
    without reading their sources; no tests or caches."""
    with zipfile.ZipFile(built.archive) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    assert infos["bootstrap"].external_attr >> 16 == stat.S_IFREG | 0o755
    assert infos["hello.py"].external_attr >> 16 == stat.S_IFREG | 0o644
    assert (REPO_ROOT / "lambda_bulkhead" / "bootstrap.sh").read_bytes() == (
        built.task_root / "bootstrap").read_bytes()
    roots = {name.split("/")[0] for name in infos}
    assert {"bootstrap", "lambda_bulkhead", "httpx", "psutil", "structlog", "six.py",
            "hello.py", "where.py", "events", "lambda_bulkhead-0.1.0.dist-info"} <= roots
    assert not roots & {"tests", "conftest.py", ".pytest_cache", "bin"}
    bytecode = [name for name in infos if name.endswith(".pyc")]
    assert bytecode, "no bytecode compiled for the target"
    assert all(name.endswith(f".{HOST.pyc_tag}.pyc") for name in bytecode)
    assert "__pycache__/where.cpython-39.pyc" not in infos
    # PEP 552 flags: hash-based (bit 0); checked against the source (bit 1) for the
    # function's own code only.
    with zipfile.ZipFile(built.archive) as archive:
        flags = {name: int.from_bytes(archive.read(name)[4:8], "little") for name in bytecode}
    own = {name for name in flags if (built.source / name.replace("__pycache__/", "").replace(
        f".{HOST.pyc_tag}.pyc", ".py")).exists()}
    assert {"__pycache__/hello", "__pycache__/where"} <= {
        name.split(".")[0] for name in own}, "no bytecode for the function's own code"
    assert {flags[name] for name in own} == {3}
    assert {flags[name] for name in flags.keys() - own} == {1}
    assert not any("/tests/" in name or name.startswith("tests/") for name in infos)


def test_the_same_inputs_give_the_same_zip(built: Built, tmp_path: Path) -> None:
    """Sorted entries and fixed timestamps: rebuilding unchanged code gives the same
    bytes (so Lambda's CodeSha256 does not change)."""
    again = tmp_path / "again.zip"
    result = package(str(built.source), "--output", str(again))
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == built.archive.read_bytes()


def test_the_bare_python_cannot_import_lambda_bulkhead(built: Built) -> None:
    """The Python that runs the zip has nothing installed: only the zip's copy can run."""
    probe = subprocess.run([str(built.python), "-c", "import lambda_bulkhead"],
                           env={"PATH": os.environ["PATH"]}, cwd="/",
                           capture_output=True, text=True, check=False)
    assert probe.returncode == 1
    assert "No module named 'lambda_bulkhead'" in probe.stderr


@pytest.fixture
def run_zip(built: Built, emulator: Emulator) -> Iterator[Callable[..., RuntimeProcess]]:
    """Start the unzipped bootstrap (with arguments) the way Lambda does."""
    started: list[RuntimeProcess] = []

    def start(handler: str, *args: str) -> RuntimeProcess:
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **emulator.function_env(),
               "LAMBDA_TASK_ROOT": str(built.task_root), "_HANDLER": handler,
               "BULKHEAD_PYTHON": str(built.python)}
        runtime = RuntimeProcess([str(built.task_root / "bootstrap"), *args], env,
                                 built.task_root, emulator)
        started.append(runtime)
        runtime.wait_until_polling()
        return runtime

    yield start
    for runtime in started:
        runtime.cleanup()


@pytest.mark.parametrize("args", [(), WRAPPER_ARGS], ids=["provided", "exec-wrapper"])
def test_the_unzipped_bootstrap_runs_the_function(built: Built,
                                                  run_zip: Callable[..., RuntimeProcess],
                                                  args: tuple[str, ...]) -> None:
    """As the provided.al2023 bootstrap and as AWS_LAMBDA_EXEC_WRAPPER (with the managed
    bootstrap's command line): the example answers, and the code that runs is the
    zip's own copy, on the bare Python."""
    runtime = run_zip("hello.handler", *args)
    answer = runtime.invoke(b'{"name": "zip"}')
    assert json.loads(answer.body)["message"] == "hello, zip"
    runtime.cleanup()
    where = json.loads(run_zip("where.handler", *args).invoke(b"{}").body)
    root = str(built.task_root) + "/"
    assert where["bulkhead"] == root + "lambda_bulkhead/__init__.py"
    assert where["structlog"] == root + "structlog/__init__.py"
    assert where["six"] == root + "six.py"
    assert where["python"] == str(built.python)


# -- other targets and errors -----------------------------------------------------------------


def test_a_zip_for_python_312_on_arm64(tmp_path: Path) -> None:
    """Another target: psutil's aarch64 wheel, bytecode for 3.12 only (when a
    python3.12 is there to compile it), never this machine's."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.py").write_text("def handler(event, context):\n    return 1\n")
    archive = tmp_path / "arm.zip"
    result = package(str(source), "--output", str(archive), "--python-version", "3.12",
                     "--arch", "arm64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CPython 3.12 on manylinux arm64 (glibc 2.34)" in result.stdout
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        wheel = next(n for n in names if n.startswith("psutil-") and n.endswith("/WHEEL"))
        tags = zipped.read(wheel).decode()
    assert "aarch64" in tags
    assert "x86_64" not in tags
    bytecode = [name for name in names if name.endswith(".pyc")]
    assert all(name.endswith(".cpython-312.pyc") for name in bytecode)
    if "[5/6] no bytecode" in result.stdout:
        assert not bytecode
        assert "no working python3.12 on PATH" in result.stdout
        found = shutil.which("python3.12")
        if found is not None:  # then it must be one that does not run as 3.12
            probe = subprocess.run([found, "-c", "import sys; assert sys.version_info[:2] "
                                    "== (3, 12)"], capture_output=True, check=False)
            assert probe.returncode != 0
    else:
        assert "app.cpython-312.pyc" in {name.rsplit("/", 1)[-1] for name in bytecode}


def _wheel(directory: Path, filename: str) -> None:
    """A minimal wheel file named ``filename`` (pip reads the tags from the name)."""
    name, version = filename.split("-")[:2]
    with zipfile.ZipFile(directory / filename, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        info = f"{name}-{version}.dist-info"
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\n"
                                           f"Version: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n")
        wheel.writestr(f"{info}/RECORD", "")


@pytest.fixture(scope="module")
def local_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links directory: a project with only a source distribution, and one
    whose only wheel is for arm64."""
    index = tmp_path_factory.mktemp("links")
    sdist = "bulkhead_fixture_sdist_only-1.0"
    with zipfile.ZipFile(index / f"{sdist}.zip", "w") as archive:
        archive.writestr(f"{sdist}/setup.py", "from setuptools import setup\nsetup()\n")
    _wheel(index, f"bulkhead_fixture_arm_only-1.0-cp{HOST.nodot}-cp{HOST.nodot}-"
                  "manylinux_2_17_aarch64.whl")
    _wheel(index, "lambda_bulkhead-99.0-py3-none-any.whl")
    return index


@pytest.mark.parametrize(
    ("requirement", "says"),
    [
        ("bulkhead-fixture-sdist-only",
         "bulkhead-fixture-sdist-only is published only as a source distribution "
         "(bulkhead_fixture_sdist_only-1.0.zip); package installs wheels only: build one for "
         f"{HOST.describe()}"),
        ("bulkhead-fixture-arm-only",
         f"bulkhead-fixture-arm-only has no wheel for {HOST.describe()} (its wheels are for "
         f"cp{HOST.nodot}-cp{HOST.nodot}-manylinux_2_17_aarch64): pick a version or target "
         "it has wheels for"),
        ("bulkhead-fixture-nowhere", "no distribution of bulkhead-fixture-nowhere found for "),
        ("lambda-bulkhead==99.0", "the requirements install lambda-bulkhead itself: remove it "
         "from "),
    ],
    ids=["sdist-only", "no-wheel-for-target", "not-found", "lambda-bulkhead-itself"],
)
def test_a_requirement_that_cannot_go_in_is_one_line(
    tmp_path: Path, local_index: Path, requirement: str, says: str
) -> None:
    """No wheel for the target (and why), or lambda-bulkhead itself: exit 2, one line
    on stderr saying which requirement and why, no zip written."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.py").write_text("")
    requirements = tmp_path / "req.txt"
    requirements.write_text(requirement + "\n")
    archive = tmp_path / "f.zip"
    links = " ".join(filter(None, [str(local_index), os.environ.get("PIP_FIND_LINKS")]))
    result = package(str(source), "--output", str(archive), "--requirements",
                     str(requirements), env={"PIP_FIND_LINKS": links})
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lambda-bulkhead: error: " + says), lines[0]
    assert not archive.exists()


def test_function_code_that_shadows_a_dependency_is_one_line(tmp_path: Path) -> None:
    """A copy of a dependency in SRC_DIR would be one file with two owners: exit 2."""
    source = tmp_path / "src"
    (source / "httpx").mkdir(parents=True)
    (source / "httpx" / "__init__.py").write_text("")
    (source / "app.py").write_text("")
    result = package(str(source), "--output", str(tmp_path / "f.zip"))
    assert result.returncode == 2, result
    assert result.stderr == (
        f"lambda-bulkhead: error: {source} has files that the package already has "
        "(httpx/__init__.py): list dependencies in requirements.txt instead of copying "
        "them in\n")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("/no/such/dir",), "/no/such/dir: not a directory"),
        ((".", "--requirements", "/no/such.txt"), "--requirements /no/such.txt: no such file"),
        ((".", "--output", "/no/such/dir/f.zip"), "/no/such/dir is not a directory"),
        ((".", "--arch", "sparc"), "--arch: invalid choice: 'sparc'"),
        ((".", "--python-version", "3.10"), "--python-version: invalid choice: '3.10'"),
    ],
)
def test_bad_arguments_are_one_line(args: tuple[str, ...], says: str) -> None:
    """Exit 2, one line, before pip runs."""
    result = package(*args)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lambda-bulkhead: error: ")
    assert says in lines[0]
