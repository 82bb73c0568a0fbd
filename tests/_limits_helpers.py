"""Helpers for the memory, deadline and concurrency tests: starting a supervised
runtime on a handler module written for the test, and reading what it answered
and reported."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psutil
from conftest import RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator, InvokeResult


def start_supervised(
    runtime: StartRuntime,
    emulator: Emulator,
    source: str,
    *,
    handler: str = "app.handler",
    env: Mapping[str, str | None] | None = None,
) -> RuntimeProcess:
    """A supervised (``--isolation process``) runtime serving ``source`` as ``app.py``."""
    return runtime(
        handler, modules={"app.py": source}, emulator=emulator, env=env, isolation="process"
    )


def invoke(rt: RuntimeProcess, event: Any, *, timeout: float = 30.0) -> InvokeResult:
    """Invoke ``rt``'s function with ``event`` encoded as JSON."""
    return rt.invoke(json.dumps(event), timeout=timeout)


def answer(rt: RuntimeProcess, event: Any, *, timeout: float = 30.0) -> dict[str, Any]:
    """The JSON object ``rt``'s function answered ``event`` with (fails unless it
    posted a ``/response`` holding an object)."""
    result = invoke(rt, event, timeout=timeout)
    assert result.kind == "response", (result.kind, result.body[:500], rt.describe())
    value = json.loads(result.body)
    assert isinstance(value, dict)
    return value


def error_body(result: InvokeResult) -> dict[str, Any]:
    """The error JSON of a function error (fails unless the runtime posted ``/error``)."""
    assert result.kind == "error", (result.kind, result.body[:500])
    body = json.loads(result.body)
    assert isinstance(body, dict)
    return body


def report(rt: RuntimeProcess, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The supervisor's summary record (``"type": "bulkhead.report"``) for ``request_id``."""
    return rt.wait_for(
        lambda r: r.get("type") == "bulkhead.report" and r.get("requestId") == request_id,
        timeout,
    )


def started_record(rt: RuntimeProcess) -> dict[str, Any]:
    """The supervisor's "runtime started" record."""
    return rt.wait_for(lambda r: r.get("message") == "runtime started")


def workers_of(rt: RuntimeProcess) -> list[psutil.Process]:
    """The live (non-zombie) children of the runtime's template: its workers."""
    try:
        children = psutil.Process(rt.pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for template in children:
        try:
            found += [w for w in template.children() if w.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            continue
    return found
