"""The supervisor's view of workers: the lifecycle table, exit statuses, and a
handle's kill/close on real processes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest
from _supervised import group_members, is_alive, wait_until_gone, wait_until_group_gone

from lambda_bulkhead.supervisor._pool import (
    TRANSITIONS,
    ExitRegistry,
    WorkerHandle,
    WorkerState,
)


def test_every_state_can_die_and_dead_is_final() -> None:
    """A worker can die in any state; nothing leaves DEAD but another death."""
    for state in WorkerState:
        assert TRANSITIONS[(state, "died")] is WorkerState.DEAD
    assert {event for (state, event) in TRANSITIONS if state is WorkerState.DEAD} == {"died"}


def test_the_lifecycle_table() -> None:
    """The documented rows, and only those."""
    assert {key: value for key, value in TRANSITIONS.items() if key[1] != "died"} == {
        (WorkerState.STARTING, "ready"): WorkerState.IDLE,
        (WorkerState.IDLE, "invoke"): WorkerState.BUSY,
        (WorkerState.BUSY, "answer"): WorkerState.IDLE,
        (WorkerState.BUSY, "retire"): WorkerState.DRAINING,
        (WorkerState.IDLE, "retire"): WorkerState.DRAINING,
    }


def test_exit_registry_hands_a_status_to_its_waiter_once() -> None:
    """A recorded status is returned once, then forgotten."""
    exits = ExitRegistry()
    exits.record(10, 11)
    assert exits.wait(10, 0.0) == 11
    assert exits.wait(10, 0.01) is None


def test_exit_registry_wakes_a_waiting_slot() -> None:
    """A slot waiting for a status is woken when the main thread records it."""
    exits = ExitRegistry()
    got: list[int | None] = []
    waiter = threading.Thread(target=lambda: got.append(exits.wait(7, 10.0)))
    waiter.start()
    time.sleep(0.05)
    exits.record(8, 1)
    exits.record(7, 9 << 8)
    waiter.join(10.0)
    assert got == [9 << 8]
    exits.forget(8)
    assert exits.wait(8, 0.0) is None


@pytest.fixture
def pipes() -> list[int]:
    """Seven pipe ends, as a handle holds them (closed by the handle)."""
    fds = []
    for _ in range(7):
        read_end, write_end = os.pipe()
        os.close(write_end)
        fds.append(read_end)
    return fds


def test_a_handle_kills_the_workers_whole_group(pipes: list[int]) -> None:
    """kill() signals the worker's process group: its children die with it."""
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    read_end, write_end = os.pipe()
    pid = os.posix_spawn(
        sys.executable, [sys.executable, "-c", script], dict(os.environ), setpgroup=0,
        file_actions=[(os.POSIX_SPAWN_DUP2, write_end, 1)],
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as out:
            grandchild = int(out.readline())
        handle = WorkerHandle(pid, pipes)
        assert handle.is_alive()
        assert sorted(group_members(pid)) == sorted([pid, grandchild])
        handle.kill()
        _, status = os.waitpid(pid, 0)
        assert os.WTERMSIG(status) == signal.SIGKILL
        assert wait_until_gone([grandchild]) == []
        assert wait_until_group_gone(pid) == []
        assert not handle.is_alive()
        handle.close()
        handle.close()  # once only: a second close is a no-op
        assert handle.closed
    finally:
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_a_handle_kills_a_process_that_is_not_a_group_leader(pipes: list[int]) -> None:
    """Before the worker has called setpgid, kill() still reaches the process itself."""
    pid = os.posix_spawn(
        sys.executable, [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ)
    )
    try:
        handle = WorkerHandle(pid, pipes)
        handle.kill()
        _, status = os.waitpid(pid, 0)
        assert os.WTERMSIG(status) == signal.SIGKILL
        handle.close()
    finally:
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
