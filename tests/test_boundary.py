"""The isolation boundary against handlers that write where they should not, and
Runtime API input no runtime should die of (issue 15, docs/security.md).

A real supervisor, template and workers, driven by the emulator: a handler that
forges answer frames on its worker's result pipe, or leaves a thread writing to
it or to stdout; events with request ids that are not URL-safe and deadlines
that are not numbers; and the number of ``/next`` pollers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _supervised import Runtimes, act, body, records, report, started_record
from conftest import RuntimeProcess

from lambda_bulkhead._config import Config
from lambda_bulkhead.emulator import (
    Emulator,
    NextBody,
    NextHeaders,
    NextRequestId,
    PostStatus,
)
from lambda_bulkhead.wire._frames import MAX_FRAME


def serving_pid(rt: RuntimeProcess) -> int:
    """The pid of the worker that serves a normal invocation now (which must succeed)."""
    result = act(rt, "ok")
    assert result.kind == "response", rt.describe()
    pid: int = body(result)["pid"]
    return pid


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.005)


def violations(rt: RuntimeProcess) -> list[dict[str, object]]:
    return records(rt, "worker protocol violation")


# -- forged and out-of-turn answer frames (item 2) ---------------------------------------


def test_an_answer_forged_in_turn_is_the_forgers_own_and_the_next_invocation_is_untouched(
    rt: RuntimeProcess,
) -> None:
    """A handler writes a valid Result in its own turn, then returns: the forged body is
    its answer, its real Result is blamed on its worker, and the next invocation gets
    its own answer (from a fresh worker, or, when the real Result arrives only after
    that invocation was handed over, from the same one, replaced after it)."""
    pid = serving_pid(rt)
    forged = act(rt, "forge", in_turn=True)
    assert (forged.kind, body(forged)) == ("response", "forged")
    after = act(rt, "ok")
    assert after.kind == "response", body(after)
    assert body(after)["requestId"] == after.request_id
    assert [record["pid"] for record in violations(rt)] == [pid]
    if body(after)["pid"] == pid:
        assert report(rt, after.request_id)["workerReplaced"] is True
    assert serving_pid(rt) != pid


def test_an_answer_forged_out_of_turn_is_discarded_and_the_real_one_posted(
    rt: RuntimeProcess,
) -> None:
    """A Result for its own request id but not in its turn answers nothing: the
    handler's return value is posted, and its worker is replaced after."""
    pid = serving_pid(rt)
    result = act(rt, "forge", in_turn=False)
    assert (result.kind, body(result)) == ("response", "returned")
    assert report(rt, result.request_id)["workerReplaced"] is True
    assert [record["pid"] for record in violations(rt)] == [pid]
    assert "out of turn" in str(violations(rt)[0]["reason"])
    assert serving_pid(rt) != pid


def test_a_frame_a_left_thread_writes_during_the_next_invocation_is_not_its_answer(
    rt: RuntimeProcess, tmp_path: Path
) -> None:
    """A thread the previous invocation left running writes a Result frame while the
    next invocation runs on the same worker: that invocation still gets its own
    answer; the worker is blamed and replaced after it."""
    trigger, written = tmp_path / "trigger", tmp_path / "written"
    pid = serving_pid(rt)
    first = act(rt, "forge_later", trigger=str(trigger), done=str(written))
    assert (first.kind, body(first)) == ("response", "returned")
    assert rt.emulator is not None
    future = rt.emulator.submit(json.dumps({"action": "wait_file", "path": str(written)}).encode())
    rt.wait_for(lambda r: r.get("message") == "started")  # the second one runs
    trigger.touch()
    second = future.result(20)
    assert (second.kind, body(second)) == ("response", "finished"), rt.describe()
    assert report(rt, second.request_id)["workerPid"] == pid
    assert report(rt, second.request_id)["workerReplaced"] is True
    assert [record["pid"] for record in violations(rt)] == [pid]
    assert serving_pid(rt) != pid


def test_a_frame_written_while_the_worker_is_idle_costs_no_invocation(
    rt: RuntimeProcess, tmp_path: Path
) -> None:
    """A Result frame a left thread writes between two invocations: the worker is
    replaced before the next invocation is given to it."""
    trigger, written = tmp_path / "trigger", tmp_path / "written"
    pid = serving_pid(rt)
    act(rt, "forge_later", trigger=str(trigger), done=str(written))
    trigger.touch()
    wait_for_file(written)
    after = act(rt, "ok")
    assert after.kind == "response", body(after)
    assert body(after)["pid"] != pid
    (violation,) = violations(rt)
    assert violation["pid"] == pid
    assert "no invocation in flight" in str(violation["reason"])


# -- late output (item 7) ---------------------------------------------------------------


def test_lines_printed_after_the_answer_keep_their_invocations_request_id(
    rt: RuntimeProcess, tmp_path: Path
) -> None:
    """A thread that keeps printing after its invocation was answered: its lines, the
    partial last one included, carry that invocation's id, never the next one's."""
    done = tmp_path / "done"
    serving_pid(rt)
    first = act(rt, "print_later", lines=80, done=str(done))
    wait_for_file(done)
    second = act(rt, "ok")
    assert second.kind == "response"
    report(rt, second.request_id)
    late = [r for r in rt.records() if str(r.get("message", "")).startswith("late")]
    assert len(late) == 81, rt.describe()
    assert {r.get("requestId") for r in late} == {first.request_id}


# -- Runtime API input (item 6) ---------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    ["a?b#c", "x y", "../../runtime/init/error", "..", "%41", "a/b", "id;x=1&y"],
)
def test_a_request_id_that_is_not_url_safe_is_answered_under_that_id(
    rt: RuntimeProcess, emulator: Emulator, request_id: str
) -> None:
    """The request id is one percent-encoded path segment: the answer reaches that
    invocation, and the runtime keeps serving."""
    emulator.inject(NextRequestId(request_id=request_id))
    result = act(rt, "ok")
    assert result.request_id == request_id
    assert result.kind == "response", rt.describe()
    assert body(result)["requestId"] == request_id
    assert emulator.init_errors == []
    assert serving_pid(rt) > 0
    assert rt.poll() is None


@pytest.mark.parametrize("isolation", ["process", "none"])
@pytest.mark.parametrize("request_id", ["a?b#c", "../../runtime/init/error"])
def test_the_httpx_transport_and_the_in_process_runtime_encode_the_id_too(
    runtimes: Runtimes, emulator: Emulator, request_id: str, isolation: str
) -> None:
    """The id is encoded by the protocol core, so the httpx transport and the
    in-process runtime send it the same way."""
    rt = runtimes.start(env={"BULKHEAD_TRANSPORT": "httpx"}, isolation=isolation)
    emulator.inject(NextRequestId(request_id=request_id))
    result = act(rt, "ok")
    assert (result.request_id, result.kind) == (request_id, "response"), rt.describe()
    assert act(rt, "ok").kind == "response"


@pytest.mark.parametrize(
    ("deadline", "remaining"),
    [
        ("99999999999999999999", "far"),  # past the i64: clamped
        ("9223372036854775807", "far"),  # the last i64
        ("soon", "none"),
        ("-5", "none"),
        ("1_000", "none"),
        ("", "none"),
        (None, "none"),  # missing
    ],
)
def test_a_deadline_out_of_range_or_not_a_number_is_answered(
    rt: RuntimeProcess, emulator: Emulator, deadline: str | None, remaining: str
) -> None:
    """Deadline-Ms past the i64 is the latest deadline; missing or not a plain decimal
    is no deadline known (remaining time 0, none enforced); each invocation is answered."""
    emulator.inject(NextHeaders(headers={"Lambda-Runtime-Deadline-Ms": deadline}))
    result = act(rt, "remaining")
    assert result.kind == "response", rt.describe()
    left = body(result)
    assert (left > 10**15) if remaining == "far" else (left == 0)
    assert serving_pid(rt) > 0


def test_an_event_no_frame_can_carry_is_answered_and_the_worker_kept(
    rt: RuntimeProcess, emulator: Emulator
) -> None:
    """An event over the frame maximum (16 MiB; Lambda's limit is 6 MB) is answered
    Runtime.UnmarshalError without reaching a worker, which keeps serving."""
    pid = serving_pid(rt)
    emulator.inject(NextBody(body=b"x" * (MAX_FRAME + 1)))
    result = act(rt, "ok")
    assert result.kind == "error", rt.describe()
    error = body(result)
    assert error["errorType"] == "Runtime.UnmarshalError"
    assert "Unable to hand the event to a worker" in error["errorMessage"]
    assert serving_pid(rt) == pid


def test_a_post_refused_with_404_is_logged_and_the_runtime_goes_on(
    rt: RuntimeProcess, emulator: Emulator
) -> None:
    """A 4xx other than 410/413 on /response refuses that answer only: logged with
    its status, and the next invocation is served."""
    emulator.inject(PostStatus(status=404, call="response"))
    future = emulator.submit(json.dumps({"action": "ok"}).encode())
    refused = rt.wait_for(lambda r: r.get("message") == "answer refused by the Runtime API")
    assert refused["status"] == 404
    future.cancel()
    assert serving_pid(rt) > 0
    assert rt.poll() is None


# -- pollers (item 8) --------------------------------------------------------------------


def test_several_workers_without_concurrency_fall_back_to_one_poller(
    runtimes: Runtimes, emulator: Emulator
) -> None:
    """BULKHEAD_WORKERS=2 where Lambda takes one poll at a time (no
    AWS_LAMBDA_MAX_CONCURRENCY, no BULKHEAD_CONCURRENT_POLLS): one worker, one
    poll, and a warning that says why."""
    rt = runtimes.start(env={"BULKHEAD_WORKERS": "2", "BULKHEAD_CONCURRENT_POLLS": None})
    assert started_record(rt)["workers"] == 1
    assert not emulator.wait_for_next_poll(0.5, polls=2)
    assert any("2 workers asked for" in line and "running 1 worker" in line
               for line in rt.stderr_lines), rt.describe()
    assert serving_pid(rt) > 0


@pytest.mark.parametrize(
    "env",
    [
        {"BULKHEAD_CONCURRENT_POLLS": None, "AWS_LAMBDA_MAX_CONCURRENCY": "2"},
        {"BULKHEAD_CONCURRENT_POLLS": "1"},
    ],
)
def test_several_workers_poll_concurrently_where_the_environment_says_so(
    runtimes: Runtimes, emulator: Emulator, env: dict[str, str | None]
) -> None:
    """With AWS_LAMBDA_MAX_CONCURRENCY, or the explicit opt-in, two workers poll."""
    rt = runtimes.start(env={"BULKHEAD_WORKERS": "2", **env})
    assert started_record(rt)["workers"] == 2
    assert emulator.wait_for_next_poll(10, polls=2)
    assert not any("workers asked for" in line for line in rt.stderr_lines)


@pytest.mark.parametrize(
    ("env", "workers", "single_poller_for"),
    [
        ({}, 1, 0),
        ({"BULKHEAD_WORKERS": "1"}, 1, 0),
        ({"BULKHEAD_WORKERS": "4"}, 1, 4),
        ({"BULKHEAD_WORKERS": "4", "BULKHEAD_CONCURRENT_POLLS": "0"}, 1, 4),
        ({"BULKHEAD_WORKERS": "4", "BULKHEAD_CONCURRENT_POLLS": "on"}, 4, 0),
        ({"AWS_LAMBDA_MAX_CONCURRENCY": "3"}, 3, 0),
        ({"BULKHEAD_WORKERS": "4", "AWS_LAMBDA_MAX_CONCURRENCY": "3"}, 4, 0),
        # An explicit "no" wins over the platform's variable.
        ({"AWS_LAMBDA_MAX_CONCURRENCY": "3", "BULKHEAD_CONCURRENT_POLLS": "no"}, 1, 3),
    ],
)
def test_the_number_of_pollers_the_config_allows(
    env: dict[str, str], workers: int, single_poller_for: int
) -> None:
    """Several workers only where concurrent polls are served; otherwise one, and
    the number asked for is kept for the warning."""
    config = Config.from_environ(env)
    assert (config.workers, config.single_poller_for) == (workers, single_poller_for)

