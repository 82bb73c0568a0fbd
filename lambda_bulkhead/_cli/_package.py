"""``lambda-bulkhead package SRC_DIR --output function.zip``: a deployable zip.

The zip's root is what Lambda unpacks into ``/var/task``::

    bootstrap                 lambda_bulkhead/bootstrap.sh, mode 0755
    lambda_bulkhead/          the lambda-bulkhead that runs this command
    lambda_bulkhead-0.1.0.dist-info/
    httpx/ psutil/ ...        its dependencies and the function's requirements,
                              manylinux wheels for the target (pip --target)
    app.py ...                the function's code (SRC_DIR)
    **/__pycache__/*.cpython-3XX.pyc   compiled for the target Python only

Steps (one progress line each): install the wheels, add lambda-bulkhead, add
the function's code, leave out what Lambda never needs (tests, caches, scripts
with the build machine's shebang, bytecode of any Python), compile bytecode
for the target, write the zip (sorted, fixed timestamps: the same inputs give
the same bytes, so an unchanged function keeps its ``CodeSha256``), check its
size against Lambda's limits.

Bytecode is compiled with hash-based invalidation (PEP 552): ``/var/task`` is
read-only, so bytecode that does not match would be compiled again in memory
on every cold start, and timestamps do not survive a zip round trip exactly.
The dependencies' (lambda-bulkhead's included) is ``unchecked-hash``: Python
uses it without reading and hashing each source at import (about 1 ms of the
supervised runtime's cold start).  The function's own code is
``checked-hash``, so that an edit made after the build (in the Lambda
console's editor, say) is what runs.

The decisions (target tags, what is left out, file modes, pip's argv, what a
pip failure means) are pure functions; :func:`build` is the I/O around them.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lambda_bulkhead._cli._target import Target
from lambda_bulkhead._errors import PackageError

__all__ = [
    "build",
    "explain_pip_failure",
    "included",
    "pip_install_argv",
    "size_lines",
    "zip_mode",
]

#: Lambda's limits on a zip: a direct upload, and everything unpacked (with layers).
ZIPPED_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024

#: Directories Lambda never needs, wherever they are.
_LEFT_OUT_DIRS = frozenset({
    "__pycache__", "tests", "test", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".idea", ".vscode",
    "node_modules",
})
_LEFT_OUT_FILES = frozenset({"conftest.py", ".DS_Store"})
_LEFT_OUT_SUFFIXES = (".pyc", ".pyo", ".egg-info")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say


def pip_install_argv(python: str, target: Target, destination: Path,
                     requirements: Sequence[str], requirement_files: Sequence[Path],
                     verbose: bool = False) -> list[str]:
    """pip installing ``requirements`` as wheels for ``target`` into ``destination``.

    No bytecode (``--no-compile``): pip would compile it for the Python running
    pip, which is not necessarily the target's.
    """
    argv = [python, "-m", "pip", "install", "--target", str(destination),
            "--implementation", "cp", "--python-version", target.python_version,
            "--abi", f"cp{target.nodot}", "--only-binary=:all:", "--no-compile",
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    for platform in target.platforms:
        argv += ["--platform", platform]
    if verbose:
        argv.append("-vvv")  # logs why each file was passed over ("Skipping link")
    for path in requirement_files:
        argv += ["--requirement", str(path)]
    argv += list(requirements)
    return argv


def included(parts: Sequence[str], *, is_dir: bool, pyc_tag: str | None = None) -> bool:
    """Whether a path (its parts, relative to the zip's root) goes into the zip.

    Left out anywhere: test directories (``tests``, ``test``), ``conftest.py``,
    ``test_*.py``, ``*_test.py``, caches (``.coverage*`` too) and VCS/editor/venv
    directories, egg-info, and bytecode, except ``__pycache__/*.<pyc_tag>.pyc`` (the target's own,
    compiled by :func:`build` after everything else was left out).
    """
    directories = parts if is_dir else parts[:-1]
    for name in directories:
        if name == "__pycache__" and pyc_tag is not None:
            continue
        if name in _LEFT_OUT_DIRS or name.endswith(".egg-info"):
            return False
    if is_dir or not parts:
        return True
    name = parts[-1]
    if len(parts) >= 2 and parts[-2] == "__pycache__":
        return pyc_tag is not None and name.endswith(f".{pyc_tag}.pyc")
    if (name in _LEFT_OUT_FILES or name.endswith(_LEFT_OUT_SUFFIXES)
            or name.startswith(".coverage")):
        return False
    return not (name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")))


def zip_mode(st_mode: int) -> int:
    """0755 for anything executable by someone (scripts, a bundled Python), else 0644:
    Lambda runs the code as another user than the one who built the zip."""
    return 0o755 if st_mode & 0o111 else 0o644


def size_lines(zipped: int, unzipped: int) -> tuple[list[str], str | None]:
    """Progress lines on the zip's size, and an error if Lambda cannot take it."""
    mib = 1024 * 1024
    lines = [f"{zipped / mib:.1f} MB zipped (limit {ZIPPED_LIMIT // mib} MB for a direct "
             f"upload, more through S3), {unzipped / mib:.1f} MB unzipped "
             f"(limit {UNZIPPED_LIMIT // mib} MB, layers included)"]
    if unzipped > UNZIPPED_LIMIT:
        return lines, (f"the zip unpacks to {unzipped / mib:.1f} MB, over Lambda's "
                       f"{UNZIPPED_LIMIT // mib} MB: deploy a container image instead "
                       "(docs/deploy.md)")
    if zipped > ZIPPED_LIMIT:
        lines.append(f"over {ZIPPED_LIMIT // mib} MB zipped: upload it to S3 and deploy "
                     "it from there (aws lambda update-function-code --s3-bucket ...)")
    return lines, None


_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_SKIPPED_SOURCE = re.compile(r"Skipping link: No sources permitted for [^:]+: (\S+)")
_SKIPPED_TAGS = re.compile(r"Skipping link: none of the wheel's tags \(([^)]*)\)[^:]*: (\S+)")


def _project(requirement: str) -> str:
    """The normalised project name of a requirement or distribution file name."""
    name = re.split(r"[^A-Za-z0-9._-]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _file_project(url: str) -> str:
    filename = url.rstrip("/").rsplit("/", 1)[-1]
    return _project(re.sub(r"-\d.*$", "", filename))


def missing_requirement(pip_output: str) -> str | None:
    """The requirement pip found no distribution for, if that is why it failed."""
    found = _NOT_FOUND.search(pip_output)
    return found.group(1) if found else None


def explain_pip_failure(pip_output: str, target: Target, verbose_output: str = "") -> str:
    """One line saying why pip could not install the requirements for ``target``.

    ``verbose_output`` is pip's ``-vvv`` log of installing the missing
    requirement alone: it tells a project with only a source distribution from
    one with no wheel for this target.
    """
    requirement = missing_requirement(pip_output)
    if requirement is None:
        errors = [line.removeprefix("ERROR: ").strip()
                  for line in pip_output.splitlines() if line.startswith("ERROR:")]
        detail = "; ".join(errors) or (pip_output.strip().splitlines() or ["no output"])[-1]
        return f"pip could not install the requirements for {target.describe()}: {detail}"
    project = _project(requirement)
    sources = [url for url in _SKIPPED_SOURCE.findall(verbose_output)
               if _file_project(url) == project]
    wheel_tags = sorted({tags for tags, url in _SKIPPED_TAGS.findall(verbose_output)
                         if _file_project(url) == project})
    if wheel_tags:
        shown = ", ".join(wheel_tags[:3]) + (", ..." if len(wheel_tags) > 3 else "")
        return (f"{requirement} has no wheel for {target.describe()} (its wheels are for "
                f"{shown}): pick a version or target it has wheels for")
    if sources:
        return (f"{requirement} is published only as a source distribution "
                f"({sources[-1].rsplit('/', 1)[-1]}); package installs wheels only: build "
                f"one for {target.describe()} (e.g. in a Lambda build image) and give "
                "pip its directory in PIP_FIND_LINKS")
    return f"no distribution of {requirement} found for {target.describe()}"


def _runtime_requirements() -> list[str]:
    """lambda-bulkhead's own dependencies (not its extras), as its metadata lists them."""
    try:
        requires = importlib.metadata.requires("lambda-bulkhead") or []
    except importlib.metadata.PackageNotFoundError:
        raise PackageError(
            "lambda-bulkhead's metadata is not installed (running from a checkout?): "
            "install it (pip install -e .) to package with it"
        ) from None
    return [requirement for requirement in requires if "extra" not in requirement]


def _walk(root: Path, pyc_tag: str | None = None
          ) -> Iterable[tuple[tuple[str, ...], Path, bool]]:
    """(parts relative to root, path, is_dir) of everything under root, sorted,
    without descending into what :func:`included` leaves out."""
    for current, dirs, files in os.walk(root):
        base = Path(current)
        prefix = base.relative_to(root).parts
        dirs.sort()
        for name in list(dirs):
            if included((*prefix, name), is_dir=True, pyc_tag=pyc_tag):
                yield (*prefix, name), base / name, True
            else:
                dirs.remove(name)
        for name in sorted(files):
            yield (*prefix, name), base / name, False


def _copy_tree(source: Path, destination: Path, *, skip: Path | None = None) -> list[str]:
    """Copy what :func:`included` keeps; the relative paths that were already there."""
    clashes: list[str] = []
    for parts, path, is_dir in _walk(source):
        if is_dir or not included(parts, is_dir=False):
            continue
        if skip is not None and path.resolve() == skip:
            continue
        copy = destination.joinpath(*parts)
        if copy.exists():
            clashes.append("/".join(parts))
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    return clashes


def _prune(stage: Path) -> int:
    """Delete from the stage what :func:`included` leaves out; how many files went."""
    removed = 0
    for current, dirs, files in os.walk(stage, topdown=True):
        base = Path(current)
        prefix = base.relative_to(stage).parts
        for name in list(dirs):
            if not included((*prefix, name), is_dir=True):
                removed += sum(len(found) for _, _, found in os.walk(base / name))
                shutil.rmtree(base / name)
                dirs.remove(name)
        for name in files:
            if not included((*prefix, name), is_dir=False):
                (base / name).unlink()
                removed += 1
    return removed


def _target_python(target: Target) -> str | None:
    """A Python of the target's version on this machine, to compile bytecode with."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == target.python_version:
        return sys.executable
    found = shutil.which(f"python{target.python_version}")
    if found is None:
        return None
    # A name on PATH is not always that Python (pyenv shims of versions not selected).
    probe = subprocess.run([found, "-c", "import sys; print(sys.implementation.cache_tag)"],
                           capture_output=True, text=True, check=False)
    return found if probe.stdout.strip() == target.pyc_tag else None


def _run_pip(argv: list[str], say: Callable[[str], None]) -> tuple[int, str]:
    """Run pip, echoing each requirement it collects as a progress line."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace")
    assert process.stdout is not None
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        if line.startswith(("Collecting ", "Processing ")):
            say(f"    {line.split()[1].rsplit('/', 1)[-1]}")
    return process.wait(), "".join(output)


def _write_zip(stage: Path, output: Path, pyc_tag: str) -> tuple[int, int]:
    """Zip the stage (sorted, fixed times, normalised modes); (files, unzipped bytes)."""
    files = unzipped = 0
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for parts, path, is_dir in _walk(stage, pyc_tag):
            if not included(parts, is_dir=is_dir, pyc_tag=pyc_tag):
                continue
            name = "/".join(parts) + ("/" if is_dir else "")
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.create_system = 3  # Unix: the mode bits below are honoured
            if is_dir:
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                archive.writestr(info, b"")
                continue
            # bootstrap is executable whatever the build machine's file system
            # keeps of modes (Windows keeps none).
            mode = 0o755 if parts == ("bootstrap",) else zip_mode(path.stat().st_mode)
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            archive.writestr(info, data)
            files += 1
            unzipped += len(data)
    partial.replace(output)
    return files, unzipped


def build(source: Path, output: Path, target: Target, *, requirements_file: Path | None,
          say: Callable[[str], None]) -> None:
    """Build the zip; progress goes to ``say``; :class:`PackageError` on failure."""
    import lambda_bulkhead  # noqa: PLC0415 - the copy this command packages

    if not source.is_dir():
        raise PackageError(f"{source}: not a directory")
    if requirements_file is not None and not requirements_file.is_file():
        raise PackageError(f"--requirements {requirements_file}: no such file")
    if not output.parent.is_dir():
        raise PackageError(f"--output {output}: {output.parent} is not a directory")
    own = Path(lambda_bulkhead.__file__).resolve().parent
    say(f"packaging {source} for {target.describe()}")
    with tempfile.TemporaryDirectory(prefix="lambda-bulkhead-package-") as scratch:
        stage = Path(scratch) / "stage"
        files = [requirements_file] if requirements_file is not None else []
        ours = _runtime_requirements()
        listed = f" + {requirements_file}" if requirements_file is not None else ""
        say(f"[1/6] installing wheels: lambda-bulkhead's dependencies{listed}")
        argv = pip_install_argv(sys.executable, target, stage, ours, files)
        status, pip_output = _run_pip(argv, say)
        if status != 0:
            raise PackageError(_pip_failure(pip_output, target, Path(scratch)))
        # Console scripts, with the build machine's Python in their #! line.
        shutil.rmtree(stage / "bin", ignore_errors=True)
        if (stage / "lambda_bulkhead").exists():
            raise PackageError(
                f"the requirements install lambda-bulkhead itself: remove it from "
                f"{requirements_file}; package adds the lambda-bulkhead that runs it "
                f"({lambda_bulkhead.__version__})")

        say(f"[2/6] adding lambda-bulkhead {lambda_bulkhead.__version__} from {own}")
        _copy_tree(own, stage / "lambda_bulkhead")
        _write_metadata(stage, lambda_bulkhead.__version__)
        bootstrap = stage / "bootstrap"
        shutil.copyfile(own / "bootstrap.sh", bootstrap)
        bootstrap.chmod(0o755)

        say(f"[3/6] adding the function's code from {source}")
        dependencies = set(stage.iterdir())
        clashes = _copy_tree(source, stage, skip=output.resolve())
        if clashes:
            shown = ", ".join(clashes[:3]) + (", ..." if len(clashes) > 3 else "")
            raise PackageError(
                f"{source} has files that the package already has ({shown}): "
                "list dependencies in requirements.txt instead of copying them in")

        removed = _prune(stage)
        say(f"[4/6] left out {removed} file(s): tests, caches, bytecode")

        compiler = _target_python(target)
        if compiler is None:
            say(f"[5/6] no bytecode: no working python{target.python_version} on PATH to "
                "compile it with (cold starts compile the imported modules in memory)")
        else:
            say(f"[5/6] compiling bytecode for Python {target.python_version}")
            _compile(compiler, stage, sorted(dependencies),
                     sorted(set(stage.iterdir()) - dependencies), say)

        say(f"[6/6] writing {output}")
        count, unzipped = _write_zip(stage, output, target.pyc_tag)
    lines, error = size_lines(output.stat().st_size, unzipped)
    say(f"{output}: {count} files, {lines[0]}")
    for line in lines[1:]:
        say(f"warning: {line}")
    if error is not None:
        raise PackageError(error)


def _pip_failure(pip_output: str, target: Target, scratch: Path) -> str:
    """The one line for a failed pip run (asking pip again, verbosely, about a
    requirement it found nothing for)."""
    requirement = missing_requirement(pip_output)
    if requirement is None:
        return explain_pip_failure(pip_output, target)
    argv = pip_install_argv(sys.executable, target, scratch / "probe", [requirement], [],
                            verbose=True)
    argv.insert(argv.index("--target"), "--no-deps")
    probe = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    return explain_pip_failure(pip_output, target, probe.stdout + probe.stderr)


def _write_metadata(stage: Path, version: str) -> None:
    """A dist-info, so that importlib.metadata finds lambda-bulkhead in the zip too."""
    info = stage / f"lambda_bulkhead-{version}.dist-info"
    info.mkdir()
    try:
        metadata = importlib.metadata.distribution("lambda-bulkhead").read_text("METADATA")
    except importlib.metadata.PackageNotFoundError:
        metadata = None
    (info / "METADATA").write_text(
        metadata or f"Metadata-Version: 2.1\nName: lambda-bulkhead\nVersion: {version}\n")
    (info / "INSTALLER").write_text("lambda-bulkhead package\n")


def _compile(
    python: str, stage: Path, dependencies: list[Path], own: list[Path],
    say: Callable[[str], None],
) -> None:
    """Bytecode for ``dependencies`` (lambda-bulkhead's included) used without
    reading their sources, for the function's ``own`` code checked against its
    sources (see the module's docstring)."""
    for mode, paths in (("unchecked-hash", dependencies), ("checked-hash", own)):
        if not paths:
            continue
        # Recorded file names as on Lambda, not this build's scratch directory:
        # the bytes then depend on the code only (import corrects the name anyway).
        done = subprocess.run(
            [python, "-m", "compileall", "-q", "-j", "0", "-s", str(stage), "-p", "/var/task",
             "--invalidation-mode", mode, *map(str, paths)],
            capture_output=True, text=True, errors="replace", check=False,
        )
        if done.returncode != 0:
            # A file that does not compile fails only if it is imported: say so, go on.
            failed = [line for line in done.stdout.splitlines() if line.startswith("*** Error")]
            say(f"warning: {len(failed) or 'some'} file(s) did not compile for this Python "
                f"(importing them will fail): {failed[0] if failed else done.stderr.strip()}")

