"""Connections a handler's module opens at import are never shared by two workers.

AWS recommends creating SDK clients at module scope, and many handlers fetch
a secret there: a keep-alive connection opened in the template.  Each test
runs a loopback keep-alive HTTP server (plain, and TLS with a throwaway
self-signed certificate), a handler module whose requests session or urllib3
pool uses it at import, four workers and a few hundred concurrent invocations
with crashes in between: every answer must echo its own request id, and no
client may see an error.  Shared streams cross-wire answers (or break TLS
records) within a few dozen invocations.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from _keepalive import KeepAliveServer, serving
from _limits_helpers import start_supervised
from conftest import MakeEmulator, RuntimeProcess, StartRuntime

from lambda_bulkhead.emulator import Emulator, InvokeResult

APP = """
import ctypes
import os

CLIENT = os.environ["ECHO_CLIENT"]
URL = os.environ["ECHO_URL"]
CA = os.environ.get("ECHO_CA") or None

if CLIENT == "requests":
    import requests

    session = requests.Session()

    def get(path):
        response = session.get(URL + path, verify=CA or True, timeout=10)
        response.raise_for_status()
        return response.text
else:
    import urllib3

    pool = urllib3.PoolManager(ca_certs=CA) if CA else urllib3.PoolManager()

    def get(path):
        response = pool.request("GET", URL + path, timeout=10.0, retries=False)
        assert response.status == 200, response.status
        return response.data.decode()

SECRET = get("echo/secret-fetched-at-import")


def handler(event, context):
    if event.get("action") == "segv":
        ctypes.string_at(0)
    token = context.aws_request_id
    return {"echo": get("echo/" + token), "token": token, "pid": os.getpid()}
"""


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (openssl)."""
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            capture_output=True, check=True, timeout=60,
        )
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return cert, key


@pytest.fixture(params=["plain", "tls"])
def echo(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[KeepAliveServer]:
    context = None
    if request.param == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
    with serving(context) as server:
        yield server


def _start(runtime: StartRuntime, emu: Emulator, echo: KeepAliveServer, client: str,
           ca: Path | None) -> RuntimeProcess:
    env = {
        "BULKHEAD_WORKERS": "4", "ECHO_CLIENT": client, "ECHO_URL": echo.url,
        "ECHO_CA": "" if ca is None else str(ca),
    }
    rt = start_supervised(runtime, emu, APP, env=env)
    assert emu.wait_for_next_poll(timeout=20, polls=4), rt.describe()
    return rt


@pytest.mark.parametrize("client", ["requests", "urllib3"])
def test_no_answer_is_cross_wired_across_four_workers(
    runtime: StartRuntime, make_emulator: MakeEmulator, echo: KeepAliveServer,
    certificate: tuple[Path, Path], client: str,
) -> None:
    """240 concurrent invocations on 4 workers, a segfault every 30: each answer
    echoes its own request id and no client sees an error."""
    pytest.importorskip(client, reason=f"{client} is a test extra: pip install '.[test]'")
    emu = make_emulator(timeout_s=20.0)
    rt = _start(runtime, emu, echo, client, certificate[0] if echo.tls else None)
    futures: list[tuple[str, Future[InvokeResult]]] = []
    for number in range(240):
        action = "segv" if number % 30 == 29 else "echo"
        futures.append((action, emu.submit(json.dumps({"action": action}).encode())))
    wrong, failed, pids = [], [], set()
    for action, future in futures:
        result = future.result(timeout=120)
        if action == "segv":
            assert result.kind == "error", result.body
            continue
        if result.kind != "response":
            failed.append(result.body[:300])
            continue
        answer = json.loads(result.body)
        pids.add(answer["pid"])
        if answer["echo"] != answer["token"]:
            wrong.append(answer)
    assert (wrong, failed) == ([], []), rt.describe()
    assert echo.errors == []
    assert len(pids) >= 4
    record = rt.wait_for(lambda r: r.get("message") == "inherited connections")
    assert record["connections"] == [f"tcp 127.0.0.1:{echo.server_address[1]}"]
