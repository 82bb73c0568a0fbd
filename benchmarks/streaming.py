"""Response streaming, side by side in one run: supervised, in-process, and a bare
Python socket writer.

    python benchmarks/streaming.py [--latency-n 300] [--mib 128] [--rounds 5]

Every contender streams to the same stand-in for the Runtime API, a thread of
this process that answers ``/next`` from a queue and reads each chunked
``/response`` with ``recv_into`` one buffer, noting (``time.monotonic_ns``,
the machine's one clock) when each answer's first chunk was read whole and when
its last chunk came:

* **first yield to first byte**: a handler that yields ``time.monotonic_ns()``
  as its first chunk; the figure is the stand-in's arrival stamp minus that
  (``--latency-n`` invocations per mode, after 20 to warm up);
* **throughput**: a handler that yields the same 1 MiB ``bytes`` ``--mib``
  times (at most 200 MiB: Lambda's limit); MB/s from the ``/next`` answer to
  the last chunk, the median of ``--rounds`` invocations; the bare writer is a
  fresh interpreter doing ``GET /next`` and the same chunked ``POST`` with
  ``socket.sendmsg``, as little as Python can do for it.

The runtimes are ``python -m lambda_bulkhead run`` subprocesses with the
socket transport (``--isolation process`` and ``--isolation none``), run with
``BULKHEAD_SHUTDOWN_EXTENSION=0``: the stand-in speaks only the runtime half of
the API, not the Extensions API the internal shutdown extension registers on,
which has nothing to do with streaming.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

HANDLER = '''
import time

CHUNK = b"x" * (1 << 20)


def first(event, context):
    yield b"%d" % time.monotonic_ns()


def throughput(event, context):
    for _ in range(event["mib"]):
        yield CHUNK
'''

BARE = r'''
import os, socket, sys
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
mib = int(sys.argv[1])
rounds = int(sys.argv[2])
sock = socket.create_connection((host, int(port)))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
chunk = memoryview(b"x" * (1 << 20))
head = b"%x\r\n" % len(chunk)
for _ in range(rounds):
    sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head_end = data.index(b"\r\n\r\n")
    headers = dict(
        line.split(": ", 1) for line in data[:head_end].decode().split("\r\n")[1:]
    )
    length = int(headers["Content-Length"])
    body = data[head_end + 4:]
    while len(body) < length:
        body += sock.recv(65536)
    request_id = headers["Lambda-Runtime-Aws-Request-Id"]
    sock.sendall(
        f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
        "Host: x\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    for _ in range(mib):
        views = [memoryview(head), chunk, memoryview(b"\r\n")]
        while views:
            sent = sock.sendmsg(views)
            while sent:
                if sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0
    sock.sendall(b"0\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
'''


class Answer:
    """What the stand-in saw of one streamed answer."""

    def __init__(self, sent_ns: int) -> None:
        self.sent_ns = sent_ns
        self.first_ns = 0
        self.first_data = b""
        self.end_ns = 0
        self.size = 0


class StandIn:
    """A Runtime API that streams' receiving end, lean enough not to be the
    bottleneck (see the module docstring)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.events: queue.Queue[bytes] = queue.Queue()
        self.answers: queue.Queue[Answer] = queue.Queue()
        self._count = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray(4 * MIB)
        view = memoryview(buffer)
        pending = b""
        answer: Answer | None = None
        while True:
            while b"\r\n\r\n" not in pending:
                try:
                    got = conn.recv(65536)
                except ConnectionResetError:  # a runtime ended while it polled
                    return
                if not got:
                    return
                pending += got
            head, _, pending = pending.partition(b"\r\n\r\n")
            if head.startswith(b"GET"):
                payload = self.events.get()
                self._count += 1
                request_id = f"req-{self._count}"
                deadline = int(time.time() * 1000) + 600_000
                reply = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Lambda-Runtime-Aws-Request-Id: {request_id}\r\n"
                    f"Lambda-Runtime-Deadline-Ms: {deadline}\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n"
                ).encode() + payload
                answer = Answer(time.monotonic_ns())
                conn.sendall(reply)
                continue
            assert answer is not None, head
            assert b"chunked" in head.lower(), head
            pending = self._read_chunks(conn, pending, answer, view)
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}")
            self.answers.put(answer)

    @staticmethod
    def _read_chunks(
        conn: socket.socket, pending: bytes, answer: Answer, view: memoryview
    ) -> bytes:
        """Read chunks to the last one; what came after it."""
        while True:
            while b"\r\n" not in pending:
                pending += conn.recv(65536)
            size_line, _, pending = pending.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while not pending.startswith(b"\r\n") and b"\r\n\r\n" not in pending:
                    pending += conn.recv(65536)
                answer.end_ns = time.monotonic_ns()
                return pending.partition(b"\r\n")[2] if pending.startswith(b"\r\n") else (
                    pending.partition(b"\r\n\r\n")[2]
                )
            need = size + 2
            first = pending[:need]
            pending = pending[need:]
            got = len(first)
            keep = first if answer.size == 0 else b""
            while got < need:
                received = conn.recv_into(view[: min(len(view), need - got)])
                if answer.size == 0:
                    keep += bytes(view[:received])
                got += received
            if answer.size == 0:
                answer.first_ns = time.monotonic_ns()
                answer.first_data = keep[:size]
            answer.size += size

    def invoke(self, event: dict[str, object]) -> Answer:
        self.events.put(json.dumps(event).encode())
        return self.answers.get(timeout=120)


def start_runtime(port: int, root: Path, handler: str, isolation: str) -> subprocess.Popen[bytes]:
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("BULKHEAD_", "AWS_LAMBDA_", "_HANDLER", "LAMBDA_TASK_ROOT"))
    }
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "AWS_LAMBDA_FUNCTION_TIMEOUT": "600",
        "LAMBDA_TASK_ROOT": str(root), "PYTHONPATH": str(REPO),
        "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "ERROR",
        "BULKHEAD_SHUTDOWN_EXTENSION": "0",  # (see the module docstring)
    })
    return subprocess.Popen(
        [sys.executable, "-m", "lambda_bulkhead", "run", handler, "--isolation", isolation],
        env=env, cwd=root, stdout=subprocess.DEVNULL,
    )


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": ordered[len(ordered) // 2],
        "p90": ordered[int(len(ordered) * 0.9)],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def first_byte_us(root: Path, isolation: str, n: int) -> list[float]:
    server = StandIn()  # one per runtime: a poll left waiting must not take events
    runtime = start_runtime(server.port, root, "app.first", isolation)
    try:
        figures = []
        for index in range(n + 20):
            answer = server.invoke({})
            if index >= 20:
                figures.append((answer.first_ns - int(answer.first_data)) / 1000)
        return figures
    finally:
        runtime.terminate()
        runtime.wait()


def throughput_mb_s(root: Path, isolation: str, mib: int, rounds: int) -> list[float]:
    server = StandIn()
    runtime = start_runtime(server.port, root, "app.throughput", isolation)
    try:
        server.invoke({"mib": 1})  # warm
        figures = []
        for _ in range(rounds):
            answer = server.invoke({"mib": mib})
            assert answer.size == mib * MIB, answer.size
            figures.append(answer.size / MIB / ((answer.end_ns - answer.sent_ns) / 1e9))
        return figures
    finally:
        runtime.terminate()
        runtime.wait()


def bare_mb_s(mib: int, rounds: int) -> list[float]:
    server = StandIn()
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.port}"}
    writer = subprocess.Popen([sys.executable, "-c", BARE, str(mib), str(rounds)], env=env)
    figures = []
    for _ in range(rounds):
        server.events.put(b"{}")
        answer = server.answers.get(timeout=120)
        figures.append(answer.size / MIB / ((answer.end_ns - answer.sent_ns) / 1e9))
    writer.wait()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-n", type=int, default=300)
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.mib <= 200:
        parser.error("--mib is 1 to 200 (Lambda's limit for one stream)")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "app.py").write_text(HANDLER)
        latency = {
            mode: percentiles(first_byte_us(root, mode, args.latency_n))
            for mode in ("process", "none")
        }
        throughput = {
            mode: statistics.median(throughput_mb_s(root, mode, args.mib, args.rounds))
            for mode in ("process", "none")
        }
        throughput["bare socket"] = statistics.median(bare_mb_s(args.mib, args.rounds))
    print(f"first yield -> first byte at the Runtime API, us ({args.latency_n} invocations)")
    for mode, figures in latency.items():
        label = "supervised" if mode == "process" else "in-process"
        print(f"  {label:<12} p50 {figures['p50']:8.1f}  p90 {figures['p90']:8.1f}"
              f"  p99 {figures['p99']:8.1f}")
    hop = latency["process"]["p50"] - latency["none"]["p50"]
    print(f"  supervised hop (p50 difference): {hop:.1f} us (target < 200)")
    print(f"throughput, 1 MiB chunks, {args.mib} MiB per answer, median of {args.rounds}, MB/s")
    for mode, figure in throughput.items():
        label = {"process": "supervised", "none": "in-process"}.get(mode, mode)
        print(f"  {label:<12} {figure:8.1f}")
    ratio = throughput["process"] / throughput["none"]
    print(f"  supervised / in-process: {ratio:.2f} (target >= 0.8)")
    print(json.dumps({"latency_us": latency, "throughput_mb_s": throughput}))


if __name__ == "__main__":
    main()
