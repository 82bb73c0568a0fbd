"""A handler cannot reach into the runtime's other processes.

On Lambda the runtime and the handler run as one unprivileged user, so the
kernel's same-user rules are all that separates a worker from its sibling
workers, the template and the supervisor.  The test runs the runtime without
the capabilities that let root past those rules (``CAP_SYS_PTRACE``,
``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``; dropping them needs root, so the
test is skipped otherwise), with a handler that does what
hostile code would: open another process's fds through ``/proc/<pid>/fd``,
and take them with ``pidfd_getfd``.  (Listing ``/proc/<pid>/fd`` is refused on
Lambda too, where the runtime's user is not root: a non-dumpable process's
``/proc`` files belong to root.  Here the runtime's user is root, their owner,
so only opening and taking are tested.)
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import pytest
from conftest import MakeEmulator, RuntimeProcess, runtime_env, write_module_files

APP = """
import ctypes
import os

SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438
libc = ctypes.CDLL(None, use_errno=True)


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def children_of(pid):
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if parent_of(int(name)) == pid:
                    found.append(int(name))
            except OSError:
                pass
    return found


def reach(pid):
    got = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = [str(fd) for fd in range(3, 16)]
    for fd in fds:
        try:
            os.close(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK))
            got.append(f"opened /proc/{pid}/fd/{fd}")
        except OSError:
            pass
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd >= 0:
        for fd in range(3, 16):
            taken = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
            if taken >= 0:
                got.append(f"took fd {fd} of {pid}")
                os.close(taken)
        os.close(pidfd)
    return got


def handler(event, context):
    template = os.getppid()
    supervisor = parent_of(template)
    siblings = [pid for pid in children_of(template) if pid != os.getpid()]
    targets = {"supervisor": supervisor, "template": template}
    targets.update({f"worker {pid}": pid for pid in siblings})
    return {
        "uid": os.getuid(),
        "siblings": len(siblings),
        "reached": {name: reach(pid) for name, pid in targets.items()},
    }
"""


#: linux/capability.h: what lets root past the same-user rules (the file
#: permission checks, and ptrace's), which an unprivileged user never has.
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE = 1, 2, 19
PR_CAPBSET_DROP = 24  # linux/prctl.h


def _as_an_unprivileged_user_would() -> None:
    """In the runtime's child before exec: drop those capabilities from the
    bounding set, so that the runtime (root here) has none of them."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")


def test_a_handler_cannot_reach_its_siblings_template_or_supervisor(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    """Two workers and the spare: no other process's fds can be opened or taken by
    the handler."""
    if os.geteuid() != 0:
        pytest.skip("dropping capabilities from the bounding set needs root")
    emu = make_emulator(timeout_s=20.0)
    write_module_files(tmp_path, {"app.py": APP})
    argv = [sys.executable, "-m", "lambda_bulkhead", "run", "app.handler"]
    env = runtime_env(emu, tmp_path, {"BULKHEAD_WORKERS": "2"})
    rt = RuntimeProcess(argv, env, tmp_path, emu, preexec=_as_an_unprivileged_user_would)
    try:
        rt.wait_until_polling()
        result = rt.invoke(b"{}", timeout=30)
        assert result.kind == "response", (result.body, rt.describe())
        answer = json.loads(result.body)
        assert answer["siblings"] >= 1, answer
        assert answer["reached"] == {name: [] for name in answer["reached"]}, answer
    finally:
        rt.cleanup()
