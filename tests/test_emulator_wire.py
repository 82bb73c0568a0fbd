"""h11 at the emulator's edge: odd but valid requests, and back-pressure to a slow caller."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lambda_bulkhead.emulator import Emulator

NEXT = "/2018-06-01/runtime/invocation/next"
INVOKE = "/2015-03-31/functions/function/invocations"
WAIT_S = 5.0


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(timeout_s=5.0) as emulator:
        yield emulator


def raw(emu: Emulator) -> socket.socket:
    return socket.create_connection(("127.0.0.1", emu.port), timeout=WAIT_S)


def next_event(emu: Emulator) -> tuple[str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=WAIT_S)
    conn.request("GET", NEXT)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return str(response.getheader("Lambda-Runtime-Aws-Request-Id")), body


def test_a_chunked_invoke_body_with_extensions_and_trailers_is_delivered(emu: Emulator) -> None:
    """An invoke whose body is chunked (with a chunk extension and a trailer) is read whole."""
    caller = raw(emu)
    caller.sendall(
        f"POST {INVOKE} HTTP/1.1\r\nhOsT: emu\r\ntransfer-encoding: chunked\r\n"
        "Content-Type:   application/json   \r\n\r\n"
        "3;ext=1\r\n{\"a\r\n6\r\n\": 1}\n\r\n0\r\nX-Checksum: 1\r\n\r\n".encode()
    )
    request_id, body = next_event(emu)
    assert body == b'{"a": 1}\n'
    runtime = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=WAIT_S)
    runtime.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", body=b"ok")
    assert runtime.getresponse().status == 202
    assert caller.recv(65536).startswith(b"HTTP/1.1 200 ")
    caller.close()
    runtime.close()


def test_http_1_0_closes_after_each_answer(emu: Emulator) -> None:
    """h11 does not keep HTTP/1.0 connections alive, even when asked to."""
    sock = raw(emu)
    sock.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 404 ")
    sock.close()


def test_a_query_string_does_not_change_the_route(emu: Emulator) -> None:
    emu.submit(b"{}")
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=WAIT_S)
    conn.request("GET", NEXT + "?x=1")
    assert conn.getresponse().status == 200
    conn.close()


def test_a_caller_that_does_not_read_holds_back_the_runtime(emu: Emulator) -> None:
    """Back-pressure end to end: the emulator stops reading the runtime's stream while
    an HTTP caller does not read, so 64 MiB cannot be written in half a second."""
    caller = raw(emu)
    caller.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    caller.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: emu\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    request_id, _ = next_event(emu)
    runtime = raw(emu)
    runtime.sendall(
        f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\nHost: emu\r\n"
        "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n"
        .encode()
    )
    size = 64 * 1024 * 1024
    done = threading.Event()

    def write() -> None:
        try:
            runtime.sendall(f"{size:x}\r\n".encode() + b"p" * size + b"\r\n")
        except OSError:
            return
        done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(0.5)
    assert not done.is_set()
    caller.close()  # the caller goes away: the emulator reads (and drops) the rest
    writer.join(WAIT_S)
    try:
        assert done.is_set()
        runtime.sendall(b"0\r\n\r\n")
        assert runtime.recv(65536).startswith(b"HTTP/1.1 202 ")
    finally:
        runtime.close()
