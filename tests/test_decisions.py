"""The slot's decision core without processes: every row of the failure table
(docs/errors.md, docs/supervision.md) from what was observed to what is
answered, what becomes of the worker and what is reported."""

from __future__ import annotations

import json
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_bulkhead._errors import RestartStorm, runtime_exited
from lambda_bulkhead._streaming import stream_abandoned_error
from lambda_bulkhead.handler._handler import Answer
from lambda_bulkhead.supervisor._decisions import (
    CHANGED_FOR_GOOD,
    DIED_WHILE_IDLE,
    OUTPUT_LOST,
    WROTE_OUT_OF_TURN,
    CrashCounter,
    Disposal,
    IdleReplacement,
    InvocationReport,
    Outcome,
    Rerun,
    Verdict,
    abandoned_verdict,
    answer_verdict,
    deadline_verdict,
    death_verdict,
    dispose,
    idle_replacement,
    late_verdict,
    may_be_oom_kill,
    memory_verdict,
    out_of_turn_reason,
    over_memory_cap,
    report_after_stream,
    restart_storm,
    shutdown_verdict,
    shutting_down_error,
    stream_frame_violation,
    unframable_verdict,
    violation_verdict,
)
from lambda_bulkhead.supervisor._policy import RestartPolicy
from lambda_bulkhead.wire._frames import Chunk, Declined, Failure, Result, StreamEnd, StreamStart

RID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
MB = 1024 * 1024
STACK = ['  File "/var/task/app.py", line 3 in handler\n']


def signalled(signum: int) -> int:
    """The ``waitpid`` status of a death by ``signum``."""
    return signum


def exited(code: int) -> int:
    """The ``waitpid`` status of ``exit(code)``."""
    return code << 8


def kept(verdict: Verdict, invocations: int = 0) -> Disposal:
    """The disposal of a worker with no recycling and no retire reason."""
    return dispose(verdict, invocations, None, None)


# -- the message text --------------------------------------------------------------------


def test_runtime_exited_is_lambdas_wording_with_and_without_a_request_id() -> None:
    """runtime_exited: ``RequestId: <id> Error: Runtime exited with error: <reason>``,
    or just the reason's sentence where no invocation is named."""
    assert runtime_exited("signal: killed", "abc") == (
        "RequestId: abc Error: Runtime exited with error: signal: killed"
    )
    assert runtime_exited("exit status 3") == "Runtime exited with error: exit status 3"


def test_outcome_values_are_the_strings_the_report_shows() -> None:
    """Outcome's values are the record's words; as a str it renders as its value."""
    assert [o.value for o in Outcome] == ["success", "error", "crash", "timeout", "oom"]
    assert f"{Outcome.CRASH}" == "crash"
    assert isinstance(Outcome.SUCCESS, str)
    assert Outcome("success") is Outcome.SUCCESS
    assert json.dumps({"outcome": Outcome.OOM}) == '{"outcome": "oom"}'


# -- answers (rows 1-5) --------------------------------------------------------------------


def test_a_result_is_a_success_and_the_worker_is_kept() -> None:
    """Row 1: the response is posted; the count of crashes resets; the worker stays."""
    verdict = answer_verdict(Result(RID, "text/plain", b"hi", peak_rss=5 * MB, turn=7), RID)
    assert verdict == Verdict(Outcome.SUCCESS, answer=Answer(b"hi", "text/plain"), peak=5 * MB)
    assert kept(verdict) == Disposal(
        replace=False, reason=None, reap_later=False, crashed=False, completed=True
    )


def test_a_handlers_exception_is_posted_with_its_own_type_and_the_worker_is_kept() -> None:
    """Row 2: a non-fatal Failure: its error (type, message, stack, causes) as sent."""
    cause = {"errorType": "KeyError", "errorMessage": "'k'", "stackTrace": ["  x\n"]}
    failure = Failure(RID, "ValueError", "boom", tuple(STACK), causes=(cause,), peak_rss=1)
    verdict = answer_verdict(failure, RID)
    assert isinstance(verdict, Verdict)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.error is not None
    assert (verdict.error.error_type, verdict.error.error_message) == ("ValueError", "boom")
    assert verdict.error.stack_trace == tuple(STACK)
    assert [(c.error_type, c.error_message) for c in verdict.error.causes] == [("KeyError", "'k'")]
    assert not verdict.replace
    assert kept(verdict).reason is None
    assert kept(verdict).completed


@pytest.mark.parametrize("reason", ["exit status 3", "KeyboardInterrupt"])
def test_sys_exit_or_keyboard_interrupt_in_the_handler_replaces_the_worker(reason: str) -> None:
    """Row 2: sys.exit(3) / KeyboardInterrupt: the worker's fatal Failure is
    posted as it is, the worker is replaced, and it is no crash."""
    failure = Failure(RID, "Runtime.ExitError", runtime_exited(reason, RID), (), fatal=True)
    verdict = answer_verdict(failure, RID)
    assert isinstance(verdict, Verdict)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.error is not None
    assert verdict.error.error_message == (
        f"RequestId: {RID} Error: Runtime exited with error: {reason}"
    )
    disposal = kept(verdict)
    assert (disposal.replace, disposal.reason, disposal.reap_later) == (True, "error", False)
    assert (disposal.crashed, disposal.completed) == (False, True)


def test_a_native_allocation_failure_is_reported_as_out_of_memory() -> None:
    """Row 3: a Failure of type Runtime.OutOfMemory is an ``oom`` outcome, which
    leaves the crash count alone."""
    failure = Failure(RID, "Runtime.OutOfMemory", "out of memory", (), fatal=True)
    verdict = answer_verdict(failure, RID)
    assert isinstance(verdict, Verdict)
    assert verdict.outcome is Outcome.OOM
    disposal = kept(verdict)
    assert disposal.replace
    assert (disposal.crashed, disposal.completed) == (False, False)
    assert not disposal.completed


def test_a_stream_that_ends_well_is_a_success_and_the_worker_is_kept() -> None:
    """Row 14: StreamEnd after StreamStart is a success (its bytes went with the
    chunks); the worker stays, and its peak is the one it reported."""
    verdict = answer_verdict(StreamEnd(turn=7, peak_rss=3 * MB), RID, streaming=True)
    assert verdict == Verdict(Outcome.SUCCESS, answer=Answer(b"", ""), peak=3 * MB)
    assert kept(verdict).replace is False


def test_a_failure_mid_stream_is_the_same_verdict_as_without_a_stream() -> None:
    """A Failure after StreamStart gets the verdict it gets without one (the loop
    sends its error as the trailers)."""
    failure = Failure(RID, "KeyError", "'k'", (), turn=7)
    assert answer_verdict(failure, RID, streaming=True) == answer_verdict(failure, RID)


@pytest.mark.parametrize(
    ("message", "streaming", "why"),
    [
        (StreamEnd(turn=7), False, "a StreamEnd with no stream begun"),
        (Result(RID, "text/plain", b"x", turn=7), True, "a Result ends a streamed answer"),
        (Declined(turn=7), True, "a Declined ends a streamed answer"),
    ],
)
def test_an_answer_out_of_a_streams_order_is_a_protocol_violation(
    message: Result | Declined | StreamEnd, streaming: bool, why: str
) -> None:
    """Row 15: a stream ended without being begun, or a streamed answer ended by
    anything but StreamEnd or Failure, gets the worker killed."""
    verdict = answer_verdict(message, RID, streaming=streaming)
    assert isinstance(verdict, Verdict)
    assert verdict.outcome is Outcome.CRASH
    assert verdict.violation == why


def test_a_streams_frames_must_come_in_order() -> None:
    """Row 15: one StreamStart, for the invocation's own request id, before any Chunk."""
    start = StreamStart(turn=7, request_id=RID, content_type="text/plain")
    assert stream_frame_violation(start, RID, streaming=False) is None
    assert stream_frame_violation(start, RID, streaming=True) == "a second StreamStart"
    assert stream_frame_violation(start._replace(request_id="other"), RID, streaming=False)
    chunk = Chunk(turn=7, size=1, pipe=0)
    assert stream_frame_violation(chunk, RID, streaming=True) is None
    assert stream_frame_violation(chunk, RID, streaming=False) == "a Chunk before its StreamStart"


def test_declined_reruns_the_event_on_another_worker() -> None:
    """Row 4: Declined: not run; the worker goes, another takes the event."""
    assert answer_verdict(Declined(turn=3), RID) == Rerun(CHANGED_FOR_GOOD)


def test_an_answer_in_turn_for_another_request_is_a_protocol_violation() -> None:
    """Row 5: a forged answer (another id) is blamed on its sender: killed,
    Runtime.ExitError, a crash."""
    verdict = answer_verdict(Result("someone-else", "application/json", b"{}"), RID)
    assert isinstance(verdict, Verdict)
    assert verdict.outcome is Outcome.CRASH
    assert verdict.violation == "unexpected answer for request id 'someone-else'"
    assert verdict.error is not None
    assert verdict.error.error_type == "Runtime.ExitError"
    assert verdict.error.error_message == (
        f"RequestId: {RID} Error: Runtime exited with error: worker protocol violation "
        "(unexpected answer for request id 'someone-else')"
    )
    disposal = kept(verdict)
    assert (disposal.replace, disposal.reason, disposal.crashed) == (True, "crash", True)


def test_a_malformed_frame_is_a_protocol_violation() -> None:
    """Row 5: bytes that are no frame: the same, with the decoder's words."""
    verdict = violation_verdict(RID, "frame version 9, expected 1")
    assert verdict.violation == "frame version 9, expected 1"
    assert verdict.replace
    assert verdict.error is not None
    assert verdict.error.error_message.endswith(
        "worker protocol violation (frame version 9, expected 1)"
    )


def test_a_frame_out_of_turn_retires_its_sender_after_the_answer_in_flight() -> None:
    """A frame out of turn answers nothing: it names the sender's frame, and the
    worker, though its own answer is a success, is replaced after it."""
    forged = Result("other-request", "application/json", b"{}", turn=1)
    assert out_of_turn_reason(forged) == "out of turn: Result for request id 'other-request'"
    assert out_of_turn_reason("a partial frame") == "out of turn: str for request id None"
    success = Verdict(Outcome.SUCCESS, answer=Answer(b"{}"))
    disposal = dispose(success, 0, None, WROTE_OUT_OF_TURN)
    assert (disposal.replace, disposal.reason) == (True, WROTE_OUT_OF_TURN)
    assert (disposal.crashed, disposal.completed) == (False, True)


# -- deaths (rows 6-8) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "words", "name"),
    [
        (signalled(signal.SIGSEGV), "signal: segmentation fault", "SIGSEGV"),
        (signalled(signal.SIGABRT), "signal: aborted", "SIGABRT"),
        (signalled(signal.SIGKILL), "signal: killed", "SIGKILL"),
        (exited(7), "exit status 7", None),
        (None, "exit status unknown", None),
    ],
)
def test_a_worker_that_dies_is_a_crash_in_lambdas_words(
    status: int | None, words: str, name: str | None
) -> None:
    """Row 6: segfault, abort, os._exit(n), a SIGKILL that was no OOM kill:
    Runtime.ExitError with the stack, a crash, the worker replaced."""
    verdict = death_verdict(RID, status, STACK)
    assert verdict.outcome is Outcome.CRASH
    assert verdict.signal == name
    assert verdict.error is not None
    assert verdict.error.error_type == "Runtime.ExitError"
    assert verdict.error.error_message == (
        f"RequestId: {RID} Error: Runtime exited with error: {words}"
    )
    assert verdict.error.stack_trace == tuple(STACK)
    disposal = kept(verdict)
    assert (disposal.replace, disposal.reason, disposal.reap_later) == (True, "crash", False)
    assert (disposal.crashed, disposal.completed) == (True, False)


def test_only_a_sigkill_may_be_the_kernels_oom_kill() -> None:
    """The OOM record is asked about a death by SIGKILL only."""
    assert may_be_oom_kill(signalled(signal.SIGKILL))
    assert not may_be_oom_kill(signalled(signal.SIGSEGV))
    assert not may_be_oom_kill(exited(137))


def test_an_oom_kill_is_out_of_memory_and_no_crash() -> None:
    """Row 7: the kernel's OOM kill: Runtime.OutOfMemory "signal: killed"; the
    crash count is left alone."""
    verdict = death_verdict(RID, signalled(signal.SIGKILL), STACK, oom_killed=True)
    assert verdict.outcome is Outcome.OOM
    assert verdict.signal == "SIGKILL"
    assert verdict.error is not None
    assert verdict.error.error_type == "Runtime.OutOfMemory"
    assert verdict.error.error_message == (
        f"RequestId: {RID} Error: Runtime exited with error: signal: killed"
    )
    disposal = kept(verdict)
    assert (disposal.replace, disposal.reason, disposal.crashed) == (True, "oom", False)


def test_a_worker_that_dies_right_after_answering_keeps_its_answer() -> None:
    """Row 8: what it answered before dying is posted; it is replaced."""
    answered = Verdict(Outcome.ERROR, error=shutting_down_error(RID), peak=3)
    verdict = death_verdict(RID, exited(3), [], answered=answered)
    assert verdict == answered._replace(replace=True)
    assert kept(verdict).reason == "error"


# -- stops (rows 9-11) ---------------------------------------------------------------------


def test_the_deadline_is_a_timeout_answered_before_the_worker_is_reaped() -> None:
    """Row 9: Sandbox.Timedout in Lambda's words; reaped after the answer."""
    verdict = deadline_verdict(3.0, STACK)
    assert verdict.outcome is Outcome.TIMEOUT
    assert verdict.error is not None
    assert verdict.error.error_type == "Sandbox.Timedout"
    assert verdict.error.error_message == "Task timed out after 3.00 seconds"
    assert verdict.error.stack_trace == tuple(STACK)
    disposal = kept(verdict)
    assert (disposal.replace, disposal.reason, disposal.reap_later) == (True, "timeout", True)
    assert (disposal.crashed, disposal.completed) == (False, False)


@given(
    cap=st.integers(min_value=0, max_value=2**34),
    baseline=st.integers(min_value=0, max_value=2**34),
    rss=st.integers(min_value=0, max_value=2**35),
)
def test_the_memory_cap_is_crossed_above_the_baseline(cap: int, baseline: int, rss: int) -> None:
    """Row 10: a worker is over its cap when its RSS above its baseline exceeds
    it; no cap (0) is never crossed."""
    assert over_memory_cap(rss, baseline, cap) == (cap > 0 and rss - baseline > cap)


def test_memory_over_the_cap_is_out_of_memory() -> None:
    """Row 10: Runtime.OutOfMemory naming the cap and the peak; reaped after the answer."""
    verdict = memory_verdict(256 * MB, 262 * MB)
    assert verdict.outcome is Outcome.OOM
    assert verdict.error is not None
    assert verdict.error.error_type == "Runtime.OutOfMemory"
    assert verdict.error.error_message == (
        "Runtime exited with error: worker memory exceeded the per-invocation cap of 256 MB "
        "(peak seen 262 MB above the worker's baseline)"
    )
    disposal = kept(verdict)
    assert (disposal.reason, disposal.reap_later, disposal.crashed) == ("oom", True, False)


def test_the_shutdown_grace_running_out_is_an_exit_error() -> None:
    """Row 11: the invocation is answered Runtime.ExitError; the worker was killed."""
    verdict = shutdown_verdict(RID)
    assert verdict.outcome is Outcome.CRASH
    assert verdict.error is not None
    assert verdict.error.error_message == (
        f"RequestId: {RID} Error: Runtime exited with error: runtime shut down (SIGTERM) "
        "before the invocation finished"
    )
    assert kept(verdict).reason == "crash"
    assert shutting_down_error(RID).error_message == (
        f"RequestId: {RID} Error: Runtime exited with error: runtime shutting down (SIGTERM)"
    )


def test_an_abandoned_stream_replaces_its_worker_without_a_crash() -> None:
    """A stream the Runtime API stopped taking: reported as an error (its
    summary record), the worker replaced, nothing counted as a crash."""
    error = stream_abandoned_error(RID, "the stream was not read in time")
    verdict = abandoned_verdict(error)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.error is error
    assert error.error_type == "Runtime.TruncatedResponse"
    disposal = kept(verdict)
    assert (disposal.replace, disposal.reason, disposal.crashed) == (True, "error", False)


def test_a_stream_given_up_after_the_worker_answered_is_reported_as_an_error() -> None:
    """The worker's success, whose stream the Runtime API then stopped taking,
    is reported with the abandonment's error; any other report is kept."""
    success = InvocationReport(RID, None, Outcome.SUCCESS, 1.0, 10.0, 7, False)
    error = stream_abandoned_error(RID, "the stream was not read in time")
    assert report_after_stream(success, None) is success
    given_up = report_after_stream(success, error)
    assert (given_up.outcome, given_up.error_type) == (Outcome.ERROR, "Runtime.TruncatedResponse")
    assert given_up.error_message == error.error_message
    timed_out = success._replace(outcome=Outcome.TIMEOUT, error_type="Sandbox.Timedout")
    assert report_after_stream(timed_out, error) is timed_out


# -- events not run (rows 12-13) -----------------------------------------------------------


def test_events_not_run_leave_the_worker_as_it_was() -> None:
    """Rows 12-13: a late event (timeout) and an unframable one (UnmarshalError)
    are answered without replacing the worker."""
    late = late_verdict(3.0)
    assert (late.outcome, late.replace) == (Outcome.TIMEOUT, False)
    assert late.error is not None
    assert late.error.error_message == "Task timed out after 3.00 seconds"
    unframable = unframable_verdict("frame of 200 MB over MAX_FRAME")
    assert (unframable.outcome, unframable.replace) == (Outcome.ERROR, False)
    assert unframable.error is not None
    assert unframable.error.error_type == "Runtime.UnmarshalError"
    assert unframable.error.error_message == (
        "Unable to hand the event to a worker: frame of 200 MB over MAX_FRAME"
    )


# -- closed output, recycling --------------------------------------------------------------


def test_a_worker_that_closed_its_output_is_replaced_after_its_answer() -> None:
    """A handler that closed fd 1 or 2: its answer goes out; then it is replaced."""
    success = Verdict(Outcome.SUCCESS, answer=Answer(b"{}"))
    disposal = dispose(success, 0, None, OUTPUT_LOST)
    assert (disposal.replace, disposal.reason) == (True, "closed its stdout/stderr")


@given(
    invocations=st.integers(min_value=0, max_value=1000),
    recycle_at=st.none() | st.integers(min_value=1, max_value=1000),
    outcome=st.sampled_from([Outcome.SUCCESS, Outcome.ERROR]),
)
def test_a_worker_is_recycled_when_it_reaches_its_count(
    invocations: int, recycle_at: int | None, outcome: Outcome
) -> None:
    """A worker that completes the invocation that brings it to ``recycle_at``
    is recycled, gently, after the answer; before that it is kept."""
    disposal = dispose(Verdict(outcome), invocations, recycle_at, None)
    due = recycle_at is not None and invocations + 1 >= recycle_at
    assert disposal.completed
    assert disposal.replace == due
    assert disposal.reason == ("recycled" if due else None)
    assert disposal.reap_later == disposal.gently == due


@given(
    outcome=st.sampled_from(list(Outcome)),
    replace=st.booleans(),
    invocations=st.integers(min_value=0, max_value=50),
    recycle_at=st.none() | st.integers(min_value=1, max_value=50),
    retire_reason=st.none() | st.sampled_from([OUTPUT_LOST, WROTE_OUT_OF_TURN, CHANGED_FOR_GOOD]),
)
def test_dispose_is_consistent(
    outcome: Outcome,
    replace: bool,
    invocations: int,
    recycle_at: int | None,
    retire_reason: str | None,
) -> None:
    """Whatever was observed: a verdict that replaces the worker replaces it, for
    its outcome; only answers count towards recycling and reset the crash count;
    only a kill of ours, or a healthy worker retired (gently), is ended after
    the answer."""
    disposal = dispose(Verdict(outcome, replace=replace), invocations, recycle_at, retire_reason)
    answered = outcome in (Outcome.SUCCESS, Outcome.ERROR)
    assert disposal.completed == answered
    assert disposal.crashed == (outcome is Outcome.CRASH)
    assert (disposal.reason is not None) == disposal.replace
    if replace:
        assert disposal.replace
        assert disposal.reason == outcome.value
    if answered and retire_reason is not None:
        assert disposal.replace
    if not answered and not replace:
        assert not disposal.replace
    killed = disposal.replace and outcome in (Outcome.TIMEOUT, Outcome.OOM)
    assert disposal.gently == (answered and disposal.replace and not replace)
    assert disposal.reap_later == (killed or disposal.gently)


# -- an idle worker, before the Invoke -------------------------------------------------------


def test_an_idle_worker_is_replaced_when_it_died_spoke_or_retires() -> None:
    """Before an Invoke: dead, out of turn (a violation logged), or retiring
    workers are replaced; a worker that only printed is kept."""
    spoke = "wrote on its result pipe with no invocation in flight"
    assert idle_replacement(spoke=False, died=False, retire_reason=None) is None
    assert idle_replacement(spoke=False, died=True, retire_reason=None) == IdleReplacement(
        DIED_WHILE_IDLE
    )
    assert idle_replacement(spoke=True, died=False, retire_reason=None) == IdleReplacement(
        WROTE_OUT_OF_TURN, spoke
    )
    assert idle_replacement(spoke=True, died=True, retire_reason=OUTPUT_LOST) == IdleReplacement(
        DIED_WHILE_IDLE, spoke
    )
    assert idle_replacement(spoke=False, died=False, retire_reason=OUTPUT_LOST) == IdleReplacement(
        OUTPUT_LOST
    )


# -- the storm guard -----------------------------------------------------------------------


@given(st.lists(st.sampled_from(list(Outcome)), max_size=60))
def test_the_crash_count_is_the_crashes_since_the_last_answer(outcomes: list[Outcome]) -> None:
    """CrashCounter.count_in: crashes add up, an answer resets, timeouts and
    memory kills leave the count alone; the delay is the policy's for it."""
    policy = RestartPolicy()
    counter = CrashCounter(policy)
    expected = 0
    for outcome in outcomes:
        counter.count_in(kept(Verdict(outcome, replace=outcome is not Outcome.SUCCESS)))
        if outcome is Outcome.CRASH:
            expected += 1
        elif outcome in (Outcome.SUCCESS, Outcome.ERROR):
            expected = 0
        assert counter.count == expected
        assert counter.delay() == policy.delay(expected)


def test_the_storm_guard_gives_up_after_consecutive_crashes() -> None:
    """Past give_up_after crashes in a row the runtime exits (RestartStorm)."""
    counter = CrashCounter(RestartPolicy(give_up_after=3))
    crash = kept(death_verdict(RID, signalled(signal.SIGSEGV), []))
    for _ in range(3):
        assert counter.delay() is not None
        counter.count_in(crash)
    assert counter.delay() is None
    error = restart_storm(counter.count)
    assert isinstance(error, RestartStorm)
    assert str(error) == (
        "3 workers in a row died without completing an invocation; exiting so that "
        "Lambda re-initialises the environment"
    )
