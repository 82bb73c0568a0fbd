"""Shared fixtures: the emulator and real runtime processes against it.

Fixtures (all function-scoped, all cleaned up in teardown):

``emulator``
    A started :class:`~lambda_bulkhead.emulator.Emulator` with ``timeout_s=3.0``.

``make_emulator(**kwargs)``
    Starts another emulator with the given keyword arguments (``timeout_s``,
    ``memory_mb``, ...); each is stopped at teardown.

``task_root``
    ``tmp_path / "task"``, an empty directory to write handler modules into
    (the runtime's ``LAMBDA_TASK_ROOT`` and working directory).

``write_modules({"app.py": source, "pkg/mod.py": source})``
    Writes dedented sources under ``task_root`` (parents created) and returns
    ``task_root``.

``runtime(handler="app.handler", *, modules=None, emulator=None, env=None,
args=(), isolation="none", task_root=None, wait_for_poll=True)``
    Writes ``modules`` (as ``write_modules``), then starts
    ``python -m lambda_bulkhead run HANDLER [--isolation ISOLATION] *args`` with
    ``emulator.function_env()`` (default: the ``emulator`` fixture's),
    ``LAMBDA_TASK_ROOT`` and any ``env`` overrides (a value of ``None`` removes
    a variable).  ``isolation=None`` leaves the flag off (so
    ``BULKHEAD_ISOLATION`` or the default decides).  With ``wait_for_poll`` it
    returns once a runtime long-polls ``/next`` on that emulator (or fails the
    test if the runtime exits or does not poll within 20 s); pass ``False`` for
    runtimes meant to fail at init, or when another runtime already polls the
    same emulator.  Returns a :class:`RuntimeProcess`.

    Every runtime started is stopped at teardown (SIGTERM, 5 s, then SIGKILL),
    and any process it left behind (found with psutil while it ran) is killed.

:class:`RuntimeProcess` keeps the runtime's stdout and stderr, read by threads
as they come: ``lines`` / ``stderr_lines`` (decoded, without newlines),
``records()`` (the stdout lines that are JSON objects, i.e. the runtime's log
records and JSON-formatted handler logs), ``wait_for(predicate, timeout)`` to
wait for a record, ``wait_for_line(predicate, timeout, stream=...)`` for a raw
line, ``describe()`` (both streams, for assertion messages), ``invoke(...)``
(the emulator's invoke, with a timeout), ``wait(timeout)`` for the exit
status, ``send_signal(sig)``, ``stop(sig)`` to end it and get the status, and
``descendants()`` / ``leftovers()`` to look for processes it started.

Helpers for other shapes of test (``from conftest import ...``):
``runtime_env(emulator, task_root, env)`` (the scrubbed environment a runtime
subprocess gets, PYTHONPATH pointing at this checkout), ``write_module_files``,
``RuntimeProcess(argv, env, cwd, emulator)`` for any other command (call its
``cleanup()`` in teardown), ``REPO_ROOT`` and ``STARTUP_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psutil
import pytest

from lambda_bulkhead.emulator import Emulator, InvokeResult

if TYPE_CHECKING:
    from _supervised import Runtimes

#: The checkout under test, put first on the runtime's PYTHONPATH so that the
#: subprocess runs this code whether or not the package is installed.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Variables of the test process that would change how a runtime behaves.
_SCRUBBED_PREFIXES = ("BULKHEAD_", "AWS_LAMBDA_", "_X_AMZN_TRACE_ID", "_HANDLER",
                      "LAMBDA_TASK_ROOT")

#: Generous: the machine has 2 cores shared with other test runs.
STARTUP_TIMEOUT_S = 20.0


def runtime_env(
    emulator: Emulator | None,
    task_root: Path | str,
    env: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The environment a runtime subprocess gets: ours, scrubbed, plus the function's."""
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_PREFIXES)
    }
    pythonpath = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    base.update({"PYTHONPATH": pythonpath, "LAMBDA_TASK_ROOT": str(task_root)})
    if emulator is not None:
        base.update(emulator.function_env())
    for name, value in (env or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def write_module_files(root: Path, modules: Mapping[str, str]) -> Path:
    """Write ``{relative path: source}`` under ``root`` (dedented) and return ``root``."""
    for relative, source in modules.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


class _Collector:
    """Reads one pipe line by line on a daemon thread."""

    def __init__(self, stream: Any, name: str) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), name=name, daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        stream.close()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.lines), timeout)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class RuntimeProcess:
    """A ``lambda-bulkhead run`` subprocess and what it printed."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path,
                 emulator: Emulator | None, *,
                 preexec: Callable[[], None] | None = None) -> None:
        """``preexec``: run in the child before it execs (to drop a capability, say)."""
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.emulator = emulator
        self.process = subprocess.Popen(
            self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=preexec,  # noqa: PLW1509 - the tests that pass one start no thread meanwhile
        )
        self.pid = self.process.pid
        self._stdout = _Collector(self.process.stdout, f"stdout-{self.pid}")
        self._stderr = _Collector(self.process.stderr, f"stderr-{self.pid}")
        self._seen: dict[int, psutil.Process] = {}

    # -- output -------------------------------------------------------------

    @property
    def lines(self) -> list[str]:
        """stdout lines so far (a copy)."""
        return list(self._stdout.lines)

    @property
    def stderr_lines(self) -> list[str]:
        """stderr lines so far (a copy)."""
        return list(self._stderr.lines)

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def records(self) -> list[dict[str, Any]]:
        """The stdout lines that parse as JSON objects, in order."""
        return [r for r in map(_json_object, self.lines) if r is not None]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                 timeout: float = 10.0) -> dict[str, Any]:
        """The first JSON record on stdout matching ``predicate``; fails the test on timeout."""
        found: list[dict[str, Any]] = []

        def match(lines: list[str]) -> bool:
            for line in lines:
                record = _json_object(line)
                if record is not None and predicate(record):
                    found.append(record)
                    return True
            return False

        if not self._stdout.wait_for(match, timeout):
            pytest.fail(f"no matching record within {timeout} s; output:\n{self.describe()}")
        return found[0]

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 10.0,
                      *, stream: str = "stdout") -> str:
        """The first raw line on ``stream`` ("stdout"/"stderr") matching ``predicate``."""
        collector = self._stdout if stream == "stdout" else self._stderr
        found: list[str] = []

        def match(lines: list[str]) -> bool:
            found.extend(line for line in lines if predicate(line))
            return bool(found)

        if not collector.wait_for(match, timeout):
            pytest.fail(f"no matching {stream} line within {timeout} s; output:\n"
                        f"{self.describe()}")
        return found[0]

    def describe(self) -> str:
        """stdout and stderr, for assertion messages."""
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    # -- invoking -----------------------------------------------------------

    def invoke(self, payload: bytes | str = b"{}", *, timeout: float = 20.0,
               **kwargs: Any) -> InvokeResult:
        """``emulator.invoke`` with a timeout; the runtime's output is shown on failure."""
        assert self.emulator is not None, "this runtime was started without an emulator"
        data = payload.encode() if isinstance(payload, str) else payload
        try:
            return self.emulator.invoke(data, timeout=timeout, **kwargs)
        except TimeoutError:
            pytest.fail(f"no answer within {timeout} s; runtime output:\n{self.describe()}")

    # -- life ---------------------------------------------------------------

    def wait_until_polling(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Return once a runtime long-polls ``/next`` on this runtime's emulator;
        fail the test if it exits first, or does not poll within ``timeout``."""
        assert self.emulator is not None, "this runtime was started without an emulator"
        deadline = time.monotonic() + timeout
        while not self.emulator.wait_for_next_poll(timeout=0.05):
            if self.poll() is not None:
                pytest.fail(f"runtime exited ({self.wait()}) before polling /next:\n"
                            f"{self.describe()}")
            if time.monotonic() > deadline:
                pytest.fail(f"runtime did not poll /next within {timeout} s:\n{self.describe()}")

    def poll(self) -> int | None:
        self._remember_descendants()
        return self.process.poll()

    def wait(self, timeout: float = 20.0) -> int:
        """The exit status (negative: killed by that signal); fails the test on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.poll()
            if status is not None:
                self._drain()
                return status
            time.sleep(0.02)
        pytest.fail(f"runtime still running after {timeout} s; output:\n{self.describe()}")

    def send_signal(self, signum: int) -> None:
        self._remember_descendants()
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """Send ``signum``, wait up to ``timeout``, then SIGKILL; the exit status."""
        self.send_signal(signum)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self._drain()
        return status

    def descendants(self) -> list[psutil.Process]:
        """The runtime's live descendants (supervised mode: template, workers)."""
        self._remember_descendants()
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def leftovers(self, grace: float = 5.0) -> list[psutil.Process]:
        """Descendants seen while the runtime ran that are still alive after ``grace`` s."""
        # Polled rather than psutil.wait_procs: a zombie (exited, not yet reaped by
        # whoever inherited it) has left already and must not hold this up.
        deadline = time.monotonic() + grace
        while True:
            alive = [p for p in self._seen.values() if _is_running(p)]
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.02)

    def _remember_descendants(self) -> None:
        try:
            for child in psutil.Process(self.pid).children(recursive=True):
                self._seen.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def _drain(self) -> None:
        self._stdout.join(5.0)
        self._stderr.join(5.0)

    def cleanup(self) -> None:
        """Teardown: stop the runtime, then kill anything it left behind."""
        self.stop()
        for proc in self.leftovers(grace=2.0):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _is_running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class MakeEmulator(Protocol):
    def __call__(self, **kwargs: Any) -> Emulator: ...


class WriteModules(Protocol):
    def __call__(self, modules: Mapping[str, str]) -> Path: ...


class StartRuntime(Protocol):
    def __call__(
        self,
        handler: str | None = "app.handler",
        *,
        modules: Mapping[str, str] | None = None,
        emulator: Emulator | None = None,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
        isolation: str | None = "none",
        task_root: Path | None = None,
        wait_for_poll: bool = True,
    ) -> RuntimeProcess: ...


@pytest.fixture
def make_emulator() -> Iterator[MakeEmulator]:
    """Factory of started emulators, all stopped at teardown."""
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        emu = Emulator(**kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in reversed(started):
        emu.stop()


@pytest.fixture
def emulator(make_emulator: MakeEmulator) -> Emulator:
    """A started emulator with a 3 s function timeout."""
    return make_emulator(timeout_s=3.0)


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    """An empty directory for handler modules (the runtime's LAMBDA_TASK_ROOT)."""
    root = tmp_path / "task"
    root.mkdir()
    return root


@pytest.fixture
def write_modules(task_root: Path) -> WriteModules:
    """Write ``{relative path: source}`` under ``task_root``."""

    def write(modules: Mapping[str, str]) -> Path:
        return write_module_files(task_root, modules)

    return write


@pytest.fixture
def script(emulator: Emulator, task_root: Path) -> Iterator[Callable[[str], RuntimeProcess]]:
    """Run a Python script (dedented) with the emulator's function environment."""
    started: list[RuntimeProcess] = []

    def start(source: str) -> RuntimeProcess:
        path = task_root / "main.py"
        path.write_text(textwrap.dedent(source))
        proc = RuntimeProcess(
            [sys.executable, str(path)], runtime_env(emulator, task_root), task_root, emulator
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()


@pytest.fixture
def runtimes(request: pytest.FixtureRequest, task_root: Path) -> Iterator[Runtimes]:
    """Starts supervised runtimes serving ``_supervised.APP`` (the misbehaving
    test handler) against the ``emulator`` fixture (or another); stops them after."""
    from _supervised import Runtimes  # noqa: PLC0415 - it imports this module

    started = Runtimes(task_root, lambda: request.getfixturevalue("emulator"))
    yield started
    started.close()


@pytest.fixture
def rt(runtimes: Runtimes) -> RuntimeProcess:
    """A supervised runtime serving ``_supervised.APP`` with one worker."""
    return runtimes.start()


@pytest.fixture
def runtime(request: pytest.FixtureRequest, task_root: Path) -> Iterator[StartRuntime]:
    """Factory: start ``python -m lambda_bulkhead run`` against an emulator (see module doc)."""
    started: list[RuntimeProcess] = []
    default_root = task_root

    def start(
        handler: str | None = "app.handler",
        *,
        modules: Mapping[str, str] | None = None,
        emulator: Emulator | None = None,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
        isolation: str | None = "none",
        task_root: Path | None = None,
        wait_for_poll: bool = True,
    ) -> RuntimeProcess:
        root = task_root if task_root is not None else default_root
        if modules:
            write_module_files(root, modules)
        emu = emulator if emulator is not None else request.getfixturevalue("emulator")
        argv = [sys.executable, "-m", "lambda_bulkhead", "run"]
        if handler is not None:
            argv.append(handler)
        if isolation is not None:
            argv += ["--isolation", isolation]
        argv += list(args)
        proc = RuntimeProcess(argv, runtime_env(emu, root, env), root, emu)
        started.append(proc)
        if wait_for_poll and emu is not None:
            proc.wait_until_polling()
        return proc

    yield start
    for proc in reversed(started):
        proc.cleanup()
