"""The supervisor's pure decisions: exit wording, deadlines, the storm guard, recycling,
faulthandler stacks; and the crash counter the slots share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_bulkhead._errors import InvocationError
from lambda_bulkhead.supervisor._decisions import CrashCounter
from lambda_bulkhead.supervisor._policy import (
    RestartPolicy,
    choose_worker_start,
    crash_error,
    describe_exit,
    fault_stack,
    function_timeout,
    kill_time,
    oom_error,
    recycle_after,
    signal_name,
    timeout_error,
)


def real_status(code: str) -> int:
    """The ``waitpid`` status of a Python child running ``code``."""
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], dict(os.environ))
    _, status = os.waitpid(pid, 0)
    return status


def signalled(signum: int, *, core: bool = False) -> int:
    return signum | (0x80 if core else 0)


def exited(code: int) -> int:
    return code << 8


# -- describe_exit / signal_name / crash_error ------------------------------------------


@pytest.mark.parametrize(
    ("code", "words", "name"),
    [
        ("import ctypes; ctypes.string_at(0)", "signal: segmentation fault", "SIGSEGV"),
        ("import os; os.abort()", "signal: aborted", "SIGABRT"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGBUS)", "signal: bus error", "SIGBUS"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "signal: killed", "SIGKILL"),
        ("import os; os._exit(7)", "exit status 7", None),
        ("import sys; sys.exit(3)", "exit status 3", None),
        ("pass", "exit status 0", None),
    ],
)
def test_real_exit_statuses_are_described_as_lambda_words_them(
    code: str, words: str, name: str | None
) -> None:
    """A real child's waitpid status reads as Lambda's platform words it."""
    status = real_status(code)
    assert describe_exit(status) == words
    assert signal_name(status) == name


@pytest.mark.parametrize(
    ("signum", "words"),
    [
        (signal.SIGSEGV, "segmentation fault"),
        (signal.SIGABRT, "aborted"),
        (signal.SIGBUS, "bus error"),
        (signal.SIGFPE, "floating point exception"),
        (signal.SIGILL, "illegal instruction"),
        (signal.SIGKILL, "killed"),
        (signal.SIGTERM, "terminated"),
        (signal.SIGINT, "interrupt"),
        (signal.SIGHUP, "hangup"),
        (signal.SIGPIPE, "broken pipe"),
        (signal.SIGQUIT, "quit"),
        (signal.SIGSYS, "bad system call"),
        (signal.SIGTRAP, "trace/breakpoint trap"),
        (signal.SIGUSR1, "user defined signal 1"),
        (signal.SIGUSR2, "user defined signal 2"),
        (signal.SIGXCPU, "CPU time limit exceeded"),
        (signal.SIGXFSZ, "file size limit exceeded"),
        (signal.SIGALRM, "alarm clock"),
    ],
)
def test_every_fatal_signal_has_go_words(signum: int, words: str) -> None:
    """Each signal is named in the words of Go's os.ProcessState (Lambda's platform)."""
    assert describe_exit(signalled(signum)) == f"signal: {words}"
    assert describe_exit(signalled(signum, core=True)) == f"signal: {words}"
    assert signal_name(signalled(signum)) == signal.Signals(signum).name


def test_an_unnamed_signal_is_described_by_number() -> None:
    """A real-time signal without a word is described by its number."""
    assert describe_exit(signalled(40)) == "signal: signal 40"
    assert signal_name(signalled(40)) == "SIG40"


@pytest.mark.parametrize("code", [0, 1, 7, 70, 255])
def test_exit_statuses_are_described_by_code(code: int) -> None:
    """A normal exit reads ``exit status N`` and has no signal name."""
    assert describe_exit(exited(code)) == f"exit status {code}"
    assert signal_name(exited(code)) is None


def test_a_stopped_status_is_described_raw() -> None:
    """A status that is neither an exit nor a death (stopped) is given as a number."""
    stopped = 0x7F | (signal.SIGSTOP << 8)
    assert describe_exit(stopped) == f"status {stopped}"


def test_crash_error_is_a_runtime_exit_error_in_lambdas_words() -> None:
    """crash_error: Runtime.ExitError, ``RequestId: <id> Error: Runtime exited with error: ...``."""
    error = crash_error("abc", signalled(signal.SIGSEGV), ["Current thread 0x1:\n"])
    assert error.error_type == "Runtime.ExitError"
    assert error.error_message == (
        "RequestId: abc Error: Runtime exited with error: signal: segmentation fault"
    )
    assert error.stack_trace == ("Current thread 0x1:\n",)
    unknown = crash_error("abc", None, [])
    assert unknown.error_message.endswith("Runtime exited with error: exit status unknown")


def test_timeout_and_oom_errors() -> None:
    """Timeouts read as Lambda's own line; OOM names the cap and the peak."""
    assert timeout_error(3.0, []) == InvocationError(
        "Sandbox.Timedout", "Task timed out after 3.00 seconds"
    )
    oom = oom_error(128.0, 300.4)
    assert oom.error_type == "Runtime.OutOfMemory"
    assert "128 MB" in oom.error_message
    assert "peak seen 301 MB" in oom.error_message  # rounded up: past the cap, never at it
    assert "peak seen 129 MB" in oom_error(128.0, 128.2).error_message


@pytest.mark.parametrize(
    ("configured", "deadline_ms", "received", "expected"),
    [
        (3.0, 1_000_000, 999.9, 3.0),  # AWS_LAMBDA_FUNCTION_TIMEOUT wins (the RIE sets it)
        (0.5, 1_000_000, 999.9, 0.5),  # the emulator's fractional timeouts too
        (None, 1_003_000, 1000.004, 3.0),  # Lambda: received a little after the start
        (None, 903_000, 3.0, 900.0),
        (None, 1_000_000, 1000.5, 1.0),  # past the deadline already: at least 1 s
    ],
)
def test_function_timeout_is_configured_or_derived_in_whole_seconds(
    configured: float | None, deadline_ms: int, received: float, expected: float
) -> None:
    """The timeout the message names: the configured one, else the whole seconds
    from receiving the event to its deadline, rounded up."""
    assert function_timeout(configured, deadline_ms, received) == expected


# -- kill_time ------------------------------------------------------------------------


def test_no_deadline_means_no_kill_time() -> None:
    """A deadline of 0 (absent or not a number) never kills."""
    assert kill_time(0, 50, 1000.0, 5.0) is None
    assert kill_time(-1, 50, 1000.0, 5.0) is None


def test_kill_time_is_the_deadline_less_the_margin_on_the_monotonic_clock() -> None:
    """3 s to the deadline with a 50 ms margin: stop 2.95 s from now (monotonic)."""
    assert kill_time(1_003_000, 50, 1000.0, 5.0) == pytest.approx(7.95)
    assert kill_time(1_003_000, 0, 1000.0, 5.0) == pytest.approx(8.0)


def test_a_deadline_already_past_kills_now() -> None:
    """A deadline in the past, or closer than the margin, gives now."""
    assert kill_time(999_000, 50, 1000.0, 5.0) == 5.0
    assert kill_time(1_000_020, 50, 1000.0, 5.0) == 5.0


@given(
    deadline_ms=st.integers(1, 2**45),
    margin_ms=st.integers(0, 10_000),
    now_wall=st.floats(0, 2.0**35),
    now_monotonic=st.floats(0, 1e9),
)
def test_kill_time_is_never_before_now_nor_after_the_deadline(
    deadline_ms: int, margin_ms: int, now_wall: float, now_monotonic: float
) -> None:
    """The kill time lies between now and the deadline."""
    at = kill_time(deadline_ms, margin_ms, now_wall, now_monotonic)
    assert at is not None
    assert at >= now_monotonic
    assert at <= now_monotonic + max(0.0, deadline_ms / 1000.0 - now_wall) + 1e-6


# -- RestartPolicy and the crash counter ----------------------------------------------------


def test_default_restart_policy_delay_sequence() -> None:
    """Three free restarts, then 10 ms doubling to a 1 s cap, giving up at 20 crashes."""
    policy = RestartPolicy()
    delays = [policy.delay(n) for n in range(22)]
    assert delays[:4] == [0.0, 0.0, 0.0, 0.0]
    assert delays[4:11] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64])
    assert delays[11:20] == [1.0] * 9
    assert delays[20:] == [None, None]
    assert policy.give_up_after == 20


@given(
    free=st.integers(0, 10),
    base=st.floats(0.001, 1.0),
    cap=st.floats(0.001, 10.0),
    give_up=st.integers(1, 60),
)
def test_restart_delays_grow_are_capped_and_end_in_giving_up(
    free: int, base: float, cap: float, give_up: int
) -> None:
    """Delays never shrink, never pass the cap, and are None exactly from give_up_after."""
    policy = RestartPolicy(free_restarts=free, base_delay_s=base, max_delay_s=cap,
                           give_up_after=give_up)
    delays = [policy.delay(n) for n in range(give_up + 5)]
    waits = [d for d in delays if d is not None]
    assert len(waits) == give_up
    assert all(d is None for d in delays[give_up:])
    assert waits == sorted(waits)
    assert all(0.0 <= d <= max(cap, 0.0) for d in waits)
    assert all(d == 0.0 for d in waits[: free + 1])


def test_crash_counter_counts_consecutive_crashes_and_resets_on_completion() -> None:
    """Crashes add up; a completed invocation resets the count (and so the delay)."""
    policy = RestartPolicy()
    counter = CrashCounter(policy)
    for expected in range(1, 6):
        counter.crashed()
        assert counter.count == expected
        assert counter.delay() == policy.delay(expected)
    counter.completed()
    assert counter.count == 0
    assert counter.delay() == 0.0
    for _ in range(policy.give_up_after):
        counter.crashed()
    assert counter.delay() is None


def test_crash_counter_counts_every_crash_from_many_threads() -> None:
    """Slots crash concurrently: no crash is lost."""
    counter = CrashCounter(RestartPolicy(give_up_after=10_000))

    def crash_500() -> None:
        for _ in range(500):
            counter.crashed()

    threads = [threading.Thread(target=crash_500) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.count == 2000


# -- recycling ----------------------------------------------------------------------------


def test_recycling_off() -> None:
    """0 (the default) never recycles."""
    assert recycle_after(0, 0.5) is None


@given(st.integers(1, 1_000_000), st.floats(0.0, 1.0, exclude_max=True))
def test_recycle_after_adds_at_most_ten_percent(max_invocations: int, jitter: float) -> None:
    """Recycling comes after max_invocations plus up to 10 %, no sooner."""
    after = recycle_after(max_invocations, jitter)
    assert after is not None
    assert max_invocations <= after <= max_invocations * 1.1
    assert recycle_after(max_invocations, 0.0) == max_invocations


def test_recycle_jitter_spreads_large_limits() -> None:
    """Workers started together with a limit of 1000 recycle over a spread of 100."""
    values = {recycle_after(1000, j / 100) for j in range(100)}
    assert min(values) == 1000  # type: ignore[type-var]
    assert max(values) == 1099  # type: ignore[type-var]


# -- fault_stack ---------------------------------------------------------------------------

_FAULT_TEXT = """\
Fatal Python error: Segmentation fault

Thread 0x00007f0000000002 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait
  File "/opt/rt/lambda_bulkhead/worker/_worker.py", line 40 in helper

Current thread 0x00007f0000000001 (most recent call first):
  File "/var/task/app.py", line 7 in crash_here
  File "/var/task/app.py", line 25 in handler
  File "/opt/rt/lambda_bulkhead/handler/_handler.py", line 94 in execute
  File "/opt/rt/lambda_bulkhead/worker/_worker.py", line 150 in run_worker
  File "<frozen runpy>", line 88 in _run_code
  File "<frozen runpy>", line 198 in _run_module_as_main

Extension modules: _cffi_backend, psutil._psutil_linux (total: 2)
"""


def test_fault_stack_keeps_the_handlers_frames_and_thread_headers() -> None:
    """The runtime's frames, python -m's frames, blank and banner lines are dropped."""
    assert fault_stack(_FAULT_TEXT, "/opt/rt/lambda_bulkhead") == [
        "Thread 0x00007f0000000002 (most recent call first):\n",
        '  File "/usr/lib/python3.11/threading.py", line 320 in wait\n',
        "Current thread 0x00007f0000000001 (most recent call first):\n",
        '  File "/var/task/app.py", line 7 in crash_here\n',
        '  File "/var/task/app.py", line 25 in handler\n',
    ]


def test_fault_stack_of_nothing_is_empty() -> None:
    """No faulthandler output (SIGKILL, os._exit): no stack."""
    assert fault_stack("", "/opt/rt") == []


def test_fault_stack_of_a_real_segfault(tmp_path: Path) -> None:
    """faulthandler's real output for a segfault under a 'runtime' frame keeps the user's frames."""
    runtime_dir = tmp_path / "runtime"
    task = tmp_path / "task"
    runtime_dir.mkdir()
    task.mkdir()
    (runtime_dir / "loop.py").write_text("def run(handler):\n    handler()\n")
    (task / "app.py").write_text(textwrap.dedent("""\
        import ctypes

        def crash_here():
            ctypes.string_at(0)

        def handler():
            crash_here()
        """))
    code = "import faulthandler, loop, app; faulthandler.enable(); loop.run(app.handler)"
    env = {**os.environ, "PYTHONPATH": f"{runtime_dir}{os.pathsep}{task}"}
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               check=False, timeout=60)
    assert completed.returncode == -signal.SIGSEGV
    stack = fault_stack(completed.stderr.decode(), str(runtime_dir))
    assert stack[0].startswith("Current thread ")
    frames = stack[1:]
    assert "in crash_here" in frames[1]
    assert "in handler" in frames[2]
    assert all(str(runtime_dir) not in line for line in stack)
    assert all(line.endswith("\n") and line.strip() for line in stack)


@pytest.mark.parametrize(
    ("setting", "threads", "by_name", "surviving", "mode"),
    [
        ("auto", 1, True, 0, "fork"),
        ("auto", 3, True, 0, "import"),
        ("auto", 3, True, 2, "fork"),  # all but the main thread OpenBLAS's pool
        ("auto", 4, True, 2, "import"),  # one thread nothing accounts for
        ("fork", 9, True, 0, "fork"),
        ("import", 1, True, 0, "import"),
        ("import", 9, False, 0, "fork"),  # a function given to start(): nothing to import
    ],
)
def test_choose_worker_start(
    setting: str, threads: int, by_name: bool, surviving: int, mode: str
) -> None:
    """Fork unless the import left threads that a fork may not survive, or the
    setting says otherwise; a handler given as a function is always forked."""
    start = choose_worker_start(setting, threads, by_name, surviving)
    assert start.mode == mode
    assert start.reason


def test_forking_a_threaded_template_anyway_says_it_may_hang() -> None:
    """BULKHEAD_WORKER_START=fork with threads at risk: the reason warns."""
    assert "will hang" in choose_worker_start("fork", 5, True).reason
