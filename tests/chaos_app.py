"""A handler that misbehaves on request, for the fault and soak suites.

The event names the misbehaviour: ``{"action": "segfault"}``.  :data:`EXPECTED`
says how lambda-bulkhead answers each (the emulator's answer kind and the
``errorType``); the suites write this file into the runtime's task root.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

#: action -> (answer kind, errorType or None)
EXPECTED: dict[str, tuple[str, str | None]] = {
    "ok": ("response", None),
    "raise": ("error", "ValueError"),
    "exit": ("error", "Runtime.ExitError"),
    "interrupt": ("error", "Runtime.ExitError"),
    "segfault": ("error", "Runtime.ExitError"),
    "abort": ("error", "Runtime.ExitError"),
    "kill": ("error", "Runtime.ExitError"),
    "os_exit": ("error", "Runtime.ExitError"),
    "oom": ("error", "Runtime.OutOfMemory"),
    "hang": ("error", "Sandbox.Timedout"),
    "spam": ("response", None),
    "close_stdout": ("response", None),
    "fork": ("response", None),
    "fork_and_crash": ("error", "Runtime.ExitError"),
    "ignore_sigterm": ("response", None),
    "signal_handlers": ("response", None),
    "excepthook": ("response", None),
    "big_result": ("error", "Function.ResponseSizeTooLarge"),
}


def _segfault() -> None:
    ctypes.string_at(0)


def handler(event: dict[str, Any], context: Any) -> Any:
    action = event.get("action", "ok")
    if action == "raise":
        raise ValueError("asked to raise")
    if action == "exit":
        sys.exit(3)
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "segfault":
        _segfault()
    if action == "abort":
        os.abort()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "os_exit":
        os._exit(7)
    if action == "oom":
        hoard = bytearray(1 << 30)  # past any cap the suites set
        return len(hoard)
    if action == "hang":
        time.sleep(60)
    if action == "spam":
        line = "x" * 1000
        for _ in range(1000):
            print(line)
    if action == "close_stdout":
        os.close(1)
    if action in ("fork", "fork_and_crash"):
        subprocess.Popen(["sleep", "60"])
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        if action == "fork_and_crash":
            _segfault()
    if action == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if action == "signal_handlers":
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    if action == "excepthook":
        sys.excepthook = lambda *args: None
    if action == "big_result":
        return "x" * (7 * 1024 * 1024)
    return {"action": action, "requestId": context.aws_request_id}
