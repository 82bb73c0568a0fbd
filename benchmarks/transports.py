"""HTTP clients for the Runtime API, compared: ``/next`` + ``/response`` pairs.

    python benchmarks/transports.py [--n 3000] [--rounds 3] [--server lean|emulator]

Each client runs in a fresh process (so its import cost is measured too) doing
``n`` pairs against one stand-in process serving queued events (100 B, or ``--size``):

* ``socket``: lambda-bulkhead's default (``RuntimeApi`` over ``SocketTransport``);
* ``socket-raw``: ``SocketTransport.request`` alone, without ``RuntimeApi``
  (``parse_next``, the ``Invocation`` value, ``post_outcome``);
* ``httpx``: ``RuntimeApi`` over ``HttpxTransport`` (``BULKHEAD_TRANSPORT=httpx``);
* ``httpx-raw``: a bare ``httpx.Client`` loop;
* ``http.client``: the standard library's ``HTTPConnection`` (what awslambdaric
  uses when its C++ client is unavailable);
* ``h11``: h11's state machine over one socket (the HTTP/1.1 engine under httpx);
* ``null``: the least a Python client can do (``_nullclient.py``'s loop).

Reported per client: pairs/s (wall, serial round trips), the client's CPU per
pair, and the time to import what it needs in a fresh interpreter.
"""

# Each client imports what it needs inside make_client: that import is measured.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENTS = ("socket", "socket-raw", "httpx", "httpx-raw", "http.client", "h11", "null")
NEXT = "/2018-06-01/runtime/invocation/next"
BODY = b'{"ok": true}'


def _post_path(request_id: str) -> str:
    return f"/2018-06-01/runtime/invocation/{request_id}/response"


def make_client(name: str, host: str, port: int) -> Callable[[], None]:
    """Import what ``name`` needs and return one pair as a function."""
    if name in ("socket", "httpx"):
        from lambda_bulkhead.runtime_api._client import RuntimeApi

        api = RuntimeApi.from_env(
            {"AWS_LAMBDA_RUNTIME_API": f"{host}:{port}"}, transport=name
        )

        def pair() -> None:
            invocation = api.next()
            api.send_response(invocation.request_id, BODY,
                              invocation_id=invocation.invocation_id)

        return pair
    if name == "socket-raw":
        from lambda_bulkhead.runtime_api._http import SocketTransport
        from lambda_bulkhead.runtime_api._protocol import Request

        transport = SocketTransport(host, port)
        get_next = Request("next", "GET", NEXT)

        def pair() -> None:
            answer = transport.request(get_next)
            request_id = answer.headers["lambda-runtime-aws-request-id"]
            transport.request(Request("response", "POST", _post_path(request_id),
                                      (("Content-Type", "application/json"),), BODY),
                              timeout=30)

        return pair
    if name == "httpx-raw":
        import httpx

        client = httpx.Client(base_url=f"http://{host}:{port}", timeout=None)

        def pair() -> None:
            answer = client.get(NEXT)
            request_id = answer.headers["lambda-runtime-aws-request-id"]
            client.post(_post_path(request_id), content=BODY)

        return pair
    if name == "http.client":
        import http.client

        stdlib = http.client.HTTPConnection(host, port)

        def pair() -> None:
            stdlib.request("GET", NEXT)
            answer = stdlib.getresponse()
            answer.read()
            request_id = answer.getheader("Lambda-Runtime-Aws-Request-Id") or ""
            stdlib.request("POST", _post_path(request_id), BODY,
                           {"Content-Type": "application/json"})
            stdlib.getresponse().read()

        return pair
    if name == "h11":
        import socket

        import h11

        h11_sock = socket.create_connection((host, port))
        h11_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        machine = h11.Connection(h11.CLIENT)
        host_header = f"{host}:{port}"

        def exchange(method: str, path: str, body: bytes) -> tuple[h11.Response, bytes]:
            headers = [("Host", host_header)]
            if method == "POST":
                headers.append(("Content-Length", str(len(body))))
            data = machine.send(h11.Request(method=method, target=path, headers=headers))
            if body:
                data += machine.send(h11.Data(data=body))
            data += machine.send(h11.EndOfMessage())
            h11_sock.sendall(data)
            response: h11.Response | None = None
            chunks = []
            while True:
                event = machine.next_event()
                if event is h11.NEED_DATA:
                    machine.receive_data(h11_sock.recv(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    machine.start_next_cycle()
                    assert response is not None
                    return response, b"".join(chunks)

        def pair() -> None:
            response, _ = exchange("GET", NEXT, b"")
            request_id = dict(response.headers)[b"lambda-runtime-aws-request-id"].decode()
            exchange("POST", _post_path(request_id), BODY)

        return pair
    if name == "null":
        import socket

        sys.path.insert(0, str(HERE))
        from _nullclient import header_int, read_exact, read_head

        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw_next = f"GET {NEXT} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        state = {"pending": b""}

        def pair() -> None:
            sock.sendall(raw_next)
            head, pending = read_head(sock, state["pending"])
            _, pending = read_exact(sock, pending, header_int(head, b"content-length"))
            start = head.lower().index(b"lambda-runtime-aws-request-id:") + 30
            request_id = head[start:head.index(b"\r\n", start)].strip().decode()
            sock.sendall(
                f"POST {_post_path(request_id)} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY
            )
            head, pending = read_head(sock, pending)
            _, state["pending"] = read_exact(sock, pending, header_int(head, b"content-length"))

        return pair
    raise SystemExit(f"unknown client {name!r}")


def client_main(name: str, port: int, n: int) -> None:
    started = time.perf_counter()
    pair = make_client(name, "127.0.0.1", port)
    import_ms = (time.perf_counter() - started) * 1000
    for _ in range(min(200, n // 10)):  # warm-up
        pair()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        pair()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(json.dumps({"pairs_per_s": n / wall, "cpu_us": cpu / n * 1e6, "import_ms": import_ms}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=["lean", "emulator"], default="lean")
    parser.add_argument("--size", type=int, default=100, help="event size in bytes")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.port, args.n)
        return

    sys.path.insert(0, str(HERE))
    import run

    setup = run.set_up()
    python = str(setup.bulkhead_python)
    clients = args.clients.split(",")
    per_client = args.n + min(200, args.n // 10)
    total = per_client * len(clients) * args.rounds
    server = subprocess.Popen(
        [python, str(HERE / "_driver.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    spec = {"mode": "serve", "backend": args.server, "n": total, "size": args.size}
    server.stdin.write(json.dumps(spec) + "\n")
    server.stdin.flush()
    port = int(server.stdout.readline())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    figures: dict[str, dict[str, list[float]]] = {c: {} for c in clients}
    print(f"load average {os.getloadavg()[0]:.2f}; {args.server} stand-in on port {port}; "
          f"{args.size} B events")
    try:
        for _ in range(args.rounds):
            for client in clients:
                done = subprocess.run(
                    [python, __file__, "--client", client, "--port", str(port),
                     "--n", str(args.n)],
                    env=env, capture_output=True, text=True, check=False, timeout=300,
                )
                if done.returncode != 0:
                    print(f"{client}: failed: {done.stderr.strip()[-500:]}")
                    continue
                for key, value in json.loads(done.stdout).items():
                    figures[client].setdefault(key, []).append(value)
    finally:
        server.stdin.close()
        server.wait(10)
    print()
    print("| client | pairs/s | client CPU per pair (µs) | import (ms) |")
    print("|---|---:|---:|---:|")
    for client in clients:
        row = figures[client]
        if not row:
            continue
        pairs, cpu = statistics.median(row["pairs_per_s"]), statistics.median(row["cpu_us"])
        imports = statistics.median(row["import_ms"])
        print(f"| {client} | {pairs:,.0f} | {cpu:.0f} | {imports:.1f} |")
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
