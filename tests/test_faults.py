"""Faults from the Runtime API side, injected by the emulator, against a real
supervised runtime: each has one documented outcome (docs/reliability.md).

Every case checks the three promises: the runtime never hangs or spins, an
invocation is never answered twice, and what can be answered is answered.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import psutil
import pytest
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import (
    Emulator,
    NextBody,
    NextHeaders,
    NextPastDeadline,
    NextReset,
    NextShortBody,
    NextStatus,
    PostHang,
    PostReset,
    PostStatus,
)

APP = {
    "app.py": """
        def handler(event, context):
            if isinstance(event, bytes):
                return {"type": "bytes", "size": len(event)}
            if isinstance(event, dict) and "data" in event:
                return {"size": len(event["data"])}
            custom = context.client_context.custom if context.client_context else None
            identity = context.identity.cognito_identity_id if context.identity else None
            return {"ok": True, "custom": custom, "identity": identity}
    """
}


def _start(runtime: StartRuntime, emulator: Emulator, **kwargs: Any) -> RuntimeProcess:
    return runtime(modules=APP, emulator=emulator, isolation=None, **kwargs)


def _accepted_per_request(emulator: Emulator) -> Counter[str]:
    return Counter(a.request_id for a in emulator.answers if a.status == 202)


def _assert_answered_at_most_once(emulator: Emulator) -> None:
    doubled = {rid: n for rid, n in _accepted_per_request(emulator).items() if n > 1}
    assert not doubled, f"answered more than once: {doubled}"


def _assert_still_serving(proc: RuntimeProcess) -> None:
    result = proc.invoke(b'{"after": "fault"}')
    assert result.kind == "response", proc.describe()
    assert json.loads(result.body)["ok"] is True


def _error_type(body: bytes) -> str:
    return str(json.loads(body)["errorType"])


def _fatal_exit(proc: RuntimeProcess, timeout: float = 15.0) -> None:
    assert proc.wait(timeout) == 1, proc.describe()
    fatal = [r for r in proc.records() if r.get("level") == "ERROR" and "fatal" in r["message"]]
    assert len(fatal) == 1, proc.describe()
    assert not proc.leftovers(grace=3.0)


# -- /next ---------------------------------------------------------------------


def test_next_500_is_fatal_with_one_log_line(runtime: StartRuntime, emulator: Emulator) -> None:
    """A 500 from /next is a container error: the runtime exits 1 promptly, one clear line."""
    emulator.inject(NextStatus(status=500))
    proc = _start(runtime, emulator, wait_for_poll=False)
    _fatal_exit(proc)
    assert "500" in proc.stdout


@pytest.mark.parametrize("status", [403, 404])
def test_next_4xx_once_is_retried(runtime: StartRuntime, emulator: Emulator, status: int) -> None:
    """A 4xx from /next is polled again after a pause; the runtime keeps serving."""
    emulator.inject(NextStatus(status=status))
    proc = _start(runtime, emulator, wait_for_poll=False)
    _assert_still_serving(proc)
    assert any("polling again" in r["message"] for r in proc.records())


def test_next_4xx_every_time_becomes_fatal(runtime: StartRuntime, emulator: Emulator) -> None:
    """Four 4xx answers in a row (the first poll and three retries) are fatal."""
    emulator.inject(NextStatus(status=404), times=4)
    proc = _start(runtime, emulator, wait_for_poll=False)
    _fatal_exit(proc)
    assert len([d for d in emulator.deliveries if d.status == 404]) == 4


def test_next_reset_before_headers_is_retried(runtime: StartRuntime, emulator: Emulator) -> None:
    """A connection reset before an invocation is named is polled again, nothing lost."""
    emulator.inject(NextReset(during="headers"))
    proc = _start(runtime, emulator, wait_for_poll=False)
    _assert_still_serving(proc)


@pytest.mark.parametrize("fault", [NextReset(during="body"), NextShortBody()],
                         ids=["reset-mid-body", "short-body"])
def test_next_body_lost_after_headers_is_answered(
    runtime: StartRuntime, emulator: Emulator, fault: Any
) -> None:
    """An event whose headers named it but whose body never came whole is
    answered Runtime.UnmarshalError for that request id, not lost."""
    proc = _start(runtime, emulator)
    emulator.inject(fault)
    result = proc.invoke(b'{"x": 1}')
    assert result.kind == "error", proc.describe()
    assert _error_type(result.body) == "Runtime.UnmarshalError"
    assert result.headers.get("X-Amz-Function-Error") == "Unhandled"
    _assert_still_serving(proc)
    _assert_answered_at_most_once(emulator)


@pytest.mark.parametrize("value", [None, ""], ids=["missing", "empty"])
def test_next_without_request_id_is_fatal(
    runtime: StartRuntime, emulator: Emulator, value: str | None
) -> None:
    """An event no request id names cannot be answered: fatal (the seed's MissingRequestId)."""
    proc = _start(runtime, emulator)
    emulator.inject(NextHeaders(headers={"Lambda-Runtime-Aws-Request-Id": value}))
    emulator.submit(b"{}")
    _fatal_exit(proc)


def test_non_numeric_deadline_runs_without_a_deadline(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """A deadline that is not a number is treated as none: the handler runs and answers."""
    proc = _start(runtime, emulator)
    emulator.inject(NextHeaders(headers={"Lambda-Runtime-Deadline-Ms": "soon"}))
    assert proc.invoke(b"{}").kind == "response"


def test_deadline_already_past_is_answered_timed_out(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """An event whose deadline has passed is answered Sandbox.Timedout at once."""
    proc = _start(runtime, emulator)
    emulator.inject(NextPastDeadline(by_ms=1000))
    result = proc.invoke(b"{}")
    assert result.kind == "error", proc.describe()
    assert _error_type(result.body) == "Sandbox.Timedout"
    _assert_still_serving(proc)


@pytest.mark.parametrize("header", ["Lambda-Runtime-Client-Context",
                                    "Lambda-Runtime-Cognito-Identity"])
def test_invalid_context_json_fails_only_that_invocation(
    runtime: StartRuntime, emulator: Emulator, header: str
) -> None:
    """Client context / Cognito identity that is not JSON: Runtime.UnmarshalError naming it."""
    proc = _start(runtime, emulator)
    emulator.inject(NextHeaders(headers={header: "{not json"}))
    result = proc.invoke(b"{}")
    assert result.kind == "error"
    body = json.loads(result.body)
    assert body["errorType"] == "Runtime.UnmarshalError"
    assert header in body["errorMessage"]
    _assert_still_serving(proc)


def test_valid_context_json_reaches_the_handler(runtime: StartRuntime, emulator: Emulator) -> None:
    """Client context and Cognito identity JSON arrive as the official objects."""
    proc = _start(runtime, emulator)
    result = proc.invoke(
        b"{}",
        client_context={"custom": {"k": "v"}, "client": {"app_title": "t"}},
        cognito_identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool"},
    )
    assert json.loads(result.body) == {"ok": True, "custom": {"k": "v"}, "identity": "id-1"}


def test_unknown_content_type_reaches_the_handler_as_bytes(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """A content type other than JSON is delivered as bytes, as by the official runtime."""
    proc = _start(runtime, emulator)
    emulator.inject(NextHeaders(headers={"Content-Type": "application/x-unknown"}))
    result = proc.invoke(b"\x00\x01binary")
    assert json.loads(result.body) == {"type": "bytes", "size": 8}


def test_empty_json_body_is_an_unmarshal_error(runtime: StartRuntime, emulator: Emulator) -> None:
    """An empty body declared JSON is Runtime.UnmarshalError for that invocation."""
    proc = _start(runtime, emulator)
    emulator.inject(NextBody(body=b""))
    result = proc.invoke(b"{}")
    assert result.kind == "error"
    assert _error_type(result.body) == "Runtime.UnmarshalError"
    _assert_still_serving(proc)


def test_six_megabyte_event_is_delivered(runtime: StartRuntime, emulator: Emulator) -> None:
    """A 6 MB event crosses the supervisor and a worker whole."""
    proc = _start(runtime, emulator)
    data = "x" * (6 * 1024 * 1024 - 64)
    result = proc.invoke(json.dumps({"data": data}).encode())
    assert json.loads(result.body) == {"size": len(data)}


# -- /response and /error --------------------------------------------------------


@pytest.mark.parametrize("status", [400, 403, 410])
def test_refused_answer_is_logged_and_survived(
    make_emulator: MakeEmulator, runtime: StartRuntime, status: int
) -> None:
    """400/403/410 on /response: logged as refused (or late), the runtime keeps serving."""
    emulator = make_emulator(timeout_s=1.0)
    proc = _start(runtime, emulator)
    emulator.inject(PostStatus(status=status, call="response"))
    proc.invoke(b"{}")  # the platform did not take that answer: the invoke times out
    _assert_still_serving(proc)
    assert any("refused" in r["message"] for r in proc.records() if r.get("level") == "WARNING")
    _assert_answered_at_most_once(emulator)


def test_413_on_response_becomes_an_error_post(runtime: StartRuntime, emulator: Emulator) -> None:
    """413 on /response: the invocation is answered Function.ResponseSizeTooLarge instead."""
    proc = _start(runtime, emulator)
    emulator.inject(PostStatus(status=413, call="response"))
    result = proc.invoke(b"{}")
    assert result.kind == "error"
    assert _error_type(result.body) == "Function.ResponseSizeTooLarge"
    _assert_still_serving(proc)


def test_500_on_response_is_fatal(runtime: StartRuntime, emulator: Emulator) -> None:
    """500 on /response is a container error: exit 1 with one line."""
    proc = _start(runtime, emulator)
    emulator.inject(PostStatus(status=500, call="response"))
    emulator.submit(b"{}")
    _fatal_exit(proc)


def test_500_on_error_is_fatal(runtime: StartRuntime, emulator: Emulator) -> None:
    """500 on /error is fatal too."""
    proc = _start(runtime, emulator)
    emulator.inject(PostStatus(status=500, call="error"))
    emulator.inject(NextBody(body=b"not json"))
    emulator.submit(b"{}")
    _fatal_exit(proc)


@pytest.mark.parametrize("after_accept", [False, True], ids=["before-accept", "after-accept"])
def test_reset_post_is_sent_once_more_never_twice_accepted(
    runtime: StartRuntime, emulator: Emulator, after_accept: bool
) -> None:
    """A reset post is sent once more; if the first had landed, the second is refused."""
    proc = _start(runtime, emulator)
    emulator.inject(PostReset(call="response", after_accept=after_accept))
    result = proc.invoke(b"{}")
    assert result.kind == "response", proc.describe()
    _assert_answered_at_most_once(emulator)
    _assert_still_serving(proc)


def test_post_hanging_past_the_deadline_neither_hangs_nor_spins(
    make_emulator: MakeEmulator, runtime: StartRuntime
) -> None:
    """A /response held past the invocation's deadline: the runtime waits without
    burning CPU, takes the late answer (410) in its stride, and serves on."""
    emulator = make_emulator(timeout_s=1.0)
    proc = _start(runtime, emulator)
    emulator.inject(PostHang(seconds=2.5, call="response"))
    supervisor = psutil.Process(proc.pid)
    cpu_before = sum(supervisor.cpu_times()[:2])
    started = time.monotonic()
    result = proc.invoke(b"{}")
    assert result.kind == "timeout"
    proc.wait_for(lambda r: "late" in r.get("message", "") or "timed out" in r.get("message", ""),
                  timeout=10)
    _assert_still_serving(proc)
    elapsed = time.monotonic() - started
    cpu = sum(supervisor.cpu_times()[:2]) - cpu_before
    assert cpu < 0.5 * elapsed, f"{cpu:.2f} s CPU in {elapsed:.2f} s: a busy loop"
    _assert_answered_at_most_once(emulator)
