"""Faults from the handler side, each alone and mixed at random with concurrency,
against a real supervised runtime: every invocation gets exactly one answer,
of the documented kind, and nothing is left running afterwards.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import chaos_app
import pytest
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator

APP_SOURCE = Path(chaos_app.__file__).read_text()
LIMITS = {"BULKHEAD_MEMORY_LIMIT_MB": "128"}


def start_chaos(
    runtime: StartRuntime, emulator: Emulator, *, workers: int = 1
) -> RuntimeProcess:
    env = {**LIMITS, "BULKHEAD_WORKERS": str(workers)}
    return runtime(
        "chaos_app.handler", modules={"chaos_app.py": APP_SOURCE}, emulator=emulator,
        isolation=None, env=env,
    )


def check_answer(action: str, kind: str, body: bytes) -> None:
    expected_kind, expected_type = chaos_app.EXPECTED[action]
    assert kind == expected_kind, f"{action}: {kind} {body[:300]!r}"
    if expected_type is not None:
        assert json.loads(body)["errorType"] == expected_type, f"{action}: {body[:300]!r}"


def check_exactly_one_answer_each(emulator: Emulator, request_ids: list[str]) -> None:
    accepted = Counter(a.request_id for a in emulator.answers if a.status == 202)
    assert all(accepted[rid] == 1 for rid in request_ids), {
        rid: accepted[rid] for rid in request_ids if accepted[rid] != 1
    }


@pytest.mark.parametrize("action", sorted(chaos_app.EXPECTED))
def test_each_fault_alone_then_a_normal_invocation(
    make_emulator: MakeEmulator, runtime: StartRuntime, action: str
) -> None:
    """Each misbehaviour is answered as documented and the next invocation is served."""
    emulator = make_emulator(timeout_s=2.0)
    proc = start_chaos(runtime, emulator)
    result = proc.invoke(json.dumps({"action": action}).encode())
    check_answer(action, result.kind, result.body)
    after = proc.invoke(b'{"action": "ok"}')
    assert after.kind == "response", proc.describe()
    check_exactly_one_answer_each(emulator, [result.request_id, after.request_id])
    assert proc.poll() is None, "the runtime itself must survive"
    assert proc.stop() == 0
    assert not proc.leftovers(grace=3.0), "a process outlived the runtime"


def test_faults_mixed_at_random_with_four_workers(
    make_emulator: MakeEmulator, runtime: StartRuntime
) -> None:
    """A random mix of every fault over 4 concurrent workers: one right answer each."""
    emulator = make_emulator(timeout_s=2.0)
    proc = start_chaos(runtime, emulator, workers=4)
    rng = random.Random(20261121)
    quick = [a for a in chaos_app.EXPECTED if a != "hang"]
    actions = [rng.choice(quick) for _ in range(80)] + ["hang"] * 2
    rng.shuffle(actions)
    futures = [emulator.submit(json.dumps({"action": a}).encode()) for a in actions]
    results = [future.result(timeout=120) for future in futures]
    for action, result in zip(actions, results, strict=True):
        check_answer(action, result.kind, result.body)
    check_exactly_one_answer_each(emulator, [r.request_id for r in results])
    assert proc.poll() is None
    assert proc.stop() == 0
    assert not proc.leftovers(grace=3.0)
