"""The emulator's lifecycle side: Extensions API, init completion, shutdown signals, SnapStart."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambda_bulkhead.emulator import Emulator

WAIT_S = 5.0
REGISTER = "/2020-01-01/extension/register"
EVENT_NEXT = "/2020-01-01/extension/event/next"
NEXT = "/2018-06-01/runtime/invocation/next"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(timeout_s=5.0, handler="app.handler") as emulator:
        yield emulator


_OPEN: list[http.client.HTTPConnection] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def connect(emu: Emulator) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=WAIT_S)
    _OPEN.append(conn)
    return conn


def register(emu: Emulator, events: list[str]) -> str:
    conn = connect(emu)
    conn.request("POST", REGISTER, body=json.dumps({"events": events}),
                 headers={"Lambda-Extension-Name": "bulkhead"})
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 200
    assert body == {"functionName": "test_function", "functionVersion": "$LATEST",
                    "handler": "app.handler"}
    return str(response.getheader("Lambda-Extension-Identifier"))


def park(emu: Emulator, identifier: str) -> http.client.HTTPConnection:
    conn = connect(emu)
    conn.request("GET", EVENT_NEXT, headers={"Lambda-Extension-Identifier": identifier})
    return conn


def test_unknown_extension_identifier_is_403(emu: Emulator) -> None:
    conn = connect(emu)
    conn.request("GET", EVENT_NEXT, headers={"Lambda-Extension-Identifier": "nope"})
    response = conn.getresponse()
    assert response.status == 403
    assert json.loads(response.read())["errorType"] == "Extension.InvalidExtensionIdentifier"


def test_bad_registration_is_400(emu: Emulator) -> None:
    conn = connect(emu)
    conn.request("POST", REGISTER, body=b'{"events": ["BOGUS"]}',
                 headers={"Lambda-Extension-Name": "x"})
    assert conn.getresponse().status == 400


def test_init_completes_only_after_every_extension_waits(emu: Emulator) -> None:
    """An invoke is delivered only once the extension parked in event/next and /next polled."""
    identifier = register(emu, [])
    future = emu.submit(b"{}")
    runtime = connect(emu)
    runtime.request("GET", NEXT)
    assert not emu.wait_for_init(0.3)
    assert not future.done()
    parked = park(emu, identifier)
    assert emu.wait_for_init(WAIT_S)
    response = runtime.getresponse()
    assert response.status == 200
    names = [call.name for call in emu.calls]
    assert names[:3] == ["extension/register", "invocation/next", "extension/event/next"]
    assert emu.extensions[0].name == "bulkhead"
    assert emu.extensions[0].events == ()
    parked.close()
    runtime.close()


SLEEPER = """
import signal, sys, time
marker = sys.argv[1]
def on_term(signum, frame):
    open(marker, "w").write("term")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(60)
"""


def start_sleeper(tmp_path: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", SLEEPER, str(tmp_path / "marker")],
                               stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


def test_shutdown_with_an_extension_sends_sigterm_then_shutdown_event(
    emu: Emulator, tmp_path: Path
) -> None:
    identifier = register(emu, ["SHUTDOWN"])
    parked = park(emu, identifier)
    process = start_sleeper(tmp_path)
    report = emu.shutdown(process, grace=2.0)
    assert process.stdout is not None
    process.stdout.close()
    assert report.sigterm
    assert not report.sigkill
    assert report.exited_in_grace
    assert (tmp_path / "marker").read_text() == "term"
    event = json.loads(parked.getresponse().read())
    assert event["eventType"] == "SHUTDOWN"
    assert event["shutdownReason"] == "spindown"
    parked.close()


def test_shutdown_without_an_extension_is_sigkill_at_once(emu: Emulator, tmp_path: Path) -> None:
    process = start_sleeper(tmp_path)
    report = emu.shutdown(process)
    assert process.stdout is not None
    process.stdout.close()
    assert not report.sigterm
    assert report.sigkill
    assert report.returncode == -9
    assert not (tmp_path / "marker").exists()


def test_snap_start_restores_before_delivering() -> None:
    with Emulator(snap_start=True, restore_delay_s=0.05) as emu:
        assert emu.function_env()["AWS_LAMBDA_INITIALIZATION_TYPE"] == "snap-start"
        future = emu.submit(b"{}")
        restore = connect(emu)
        restore.request("GET", "/2018-06-01/runtime/restore/next")
        assert restore.getresponse().status == 200
        runtime = connect(emu)
        runtime.request("GET", NEXT)
        assert runtime.getresponse().status == 200
        names = [call.name for call in emu.calls]
        assert names == ["restore/next", "restored", "invocation/next"]
        assert not future.done()
        restore.close()
        runtime.close()


def test_restore_error_fails_invokes() -> None:
    with Emulator(snap_start=True, restore_delay_s=0.0) as emu:
        conn = connect(emu)
        conn.request("GET", "/2018-06-01/runtime/restore/next")
        conn.getresponse().read()
        conn.request("POST", "/2018-06-01/runtime/restore/error", body=b'{"errorType": "E"}',
                     headers={"Lambda-Runtime-Function-Error-Type": "Runtime.AfterRestoreError"})
        assert conn.getresponse().status == 202
        result = emu.invoke(b"{}", timeout=WAIT_S)
        assert result.kind == "restore_error"
        assert result.status == 502
        assert emu.restore_errors[0].error_type == "Runtime.AfterRestoreError"
        conn.close()


def test_restore_next_without_snap_start_is_403(emu: Emulator) -> None:
    conn = connect(emu)
    conn.request("GET", "/2018-06-01/runtime/restore/next")
    assert conn.getresponse().status == 403


def test_no_delivery_before_restore() -> None:
    """With SnapStart, a /next before restore/next waits (init is not complete)."""
    with Emulator(snap_start=True) as emu:
        emu.submit(b"{}")
        runtime = socket.create_connection(("127.0.0.1", emu.port), timeout=0.3)
        runtime.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: emu\r\n\r\n".encode())
        assert not emu.wait_for_init(0.3)
        with pytest.raises(TimeoutError):
            runtime.recv(1024)
        runtime.close()
