"""The template on its own, driven as the supervisor drives it: forked with
``fork_template``, read for TemplateReady, asked for workers with the
supervisor's TemplateClient.  Real processes, no runtime around them."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lambda_bulkhead._config import FunctionMeta, LogSettings
from lambda_bulkhead.supervisor._fork import TemplateHandles, fork_template
from lambda_bulkhead.supervisor._pool import TemplateClient, WorkerState
from lambda_bulkhead.wire._frames import FrameDecoder, TemplateReady

WAIT_S = 10.0
APP = "def handler(event, context):\n    return {}\n"
THREADED_APP = (
    "import threading\n"
    "threading.Thread(target=threading.Event().wait, daemon=True).start()\n" + APP
)


def _ready(handles: TemplateHandles) -> TemplateReady:
    handles.ctl.settimeout(WAIT_S)
    messages = FrameDecoder().feed(handles.ctl.recv(1 << 16))
    assert isinstance(messages[0], TemplateReady), messages
    return messages[0]


def _children(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children()
            if child.status() != psutil.STATUS_ZOMBIE]


def _children_after(pid: int, settle_s: float) -> list[int]:
    """``pid``'s live children once there is one, or after ``settle_s``."""
    end = time.monotonic() + settle_s
    while not (children := _children(pid)) and time.monotonic() < end:
        time.sleep(0.01)
    return children


@pytest.fixture
def template(tmp_path: Path) -> Iterator[list[TemplateHandles]]:
    """Templates forked by the test, killed with everything they forked."""
    forked: list[TemplateHandles] = []
    yield forked
    for handles in forked:
        for child in _children(handles.pid):
            os.kill(child, signal.SIGKILL)
        os.kill(handles.pid, signal.SIGKILL)
        os.waitpid(handles.pid, 0)
        handles.ctl.close()
        for fd in (handles.events_r, handles.fault_r, handles.stdout_r, handles.stderr_r):
            os.close(fd)


def _fork(tmp_path: Path, forked: list[TemplateHandles], module: str,
          *, standby: bool) -> TemplateHandles:
    (tmp_path / "app.py").write_text(module)
    handles = fork_template("app.handler", str(tmp_path), FunctionMeta.from_environ({}),
                            LogSettings.from_environ({}), None, standby=standby)
    forked.append(handles)
    return handles


def test_the_first_worker_is_forked_before_it_is_asked_for_and_takes_the_first_spawn(
    tmp_path: Path, template: list[TemplateHandles]
) -> None:
    """With ``standby``, the template forks its first worker once the handler is
    loaded; the first Spawn gets that process, set up with the Spawn's pipes."""
    handles = _fork(tmp_path, template, APP, standby=True)
    assert _ready(handles).threads == 1
    waiting = _children_after(handles.pid, WAIT_S)
    assert len(waiting) == 1, "no worker forked ahead of the first Spawn"
    client = TemplateClient(handles.ctl)
    first = client.spawn(None)
    assert first.pid == waiting[0]
    assert first.state is WorkerState.IDLE  # its Ready came on the Spawn's result pipe
    second = client.spawn(None)
    assert second.pid not in (first.pid, handles.pid)
    assert sorted(_children(handles.pid)) == sorted([first.pid, second.pid])
    for worker in (first, second):
        worker.kill()
        worker.close()


@pytest.mark.parametrize(("module", "standby"), [(APP, False), (THREADED_APP, True)],
                         ids=["not-asked", "import-left-a-thread"])
def test_no_worker_is_forked_ahead_when_not_asked_or_not_safe(
    tmp_path: Path, template: list[TemplateHandles], module: str, standby: bool
) -> None:
    """Without ``standby``, or when the handler's import left a thread (a fork
    might not be safe: the supervisor decides), the first Spawn forks."""
    handles = _fork(tmp_path, template, module, standby=standby)
    _ready(handles)
    assert _children_after(handles.pid, 0.3) == []
    worker = TemplateClient(handles.ctl).spawn(None)
    assert _children(handles.pid) == [worker.pid]
    worker.kill()
    worker.close()


def test_a_worker_forked_ahead_ends_with_its_template(
    tmp_path: Path, template: list[TemplateHandles]
) -> None:
    """A template that ends before the first Spawn leaves no worker behind."""
    handles = _fork(tmp_path, template, APP, standby=True)
    _ready(handles)
    [waiting] = _children_after(handles.pid, WAIT_S)
    os.kill(handles.pid, signal.SIGKILL)
    psutil.Process(waiting).wait(WAIT_S)  # it saw its socket close, and exited
