"""The null runtime: GET /next, POST a constant /response, repeat, on one raw socket.

The least a runtime can do per invocation in Python; run against a stand-in it
measures the stand-in's own cost (``run.py``'s calibration).  Exits when the
server closes the connection.
"""

from __future__ import annotations

import os
import socket


def main() -> None:
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    get_next = f"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    body = b'{"ok":true}'
    pending = b""
    while True:
        sock.sendall(get_next)
        head, pending = read_head(sock, pending)
        length = header_int(head, b"content-length")
        _, pending = read_exact(sock, pending, length)
        start = head.lower().index(b"lambda-runtime-aws-request-id:") + 30
        request_id = head[start:head.index(b"\r\n", start)].strip().decode()
        post = (
            f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
            f"Host: {host}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        sock.sendall(post)
        head, pending = read_head(sock, pending)
        _, pending = read_exact(sock, pending, header_int(head, b"content-length"))


def read_head(sock: socket.socket, pending: bytes) -> tuple[bytes, bytes]:
    while (end := pending.find(b"\r\n\r\n")) < 0:
        data = sock.recv(262144)
        if not data:
            raise SystemExit(0)
        pending += data
    return pending[:end], pending[end + 4:]


def read_exact(sock: socket.socket, pending: bytes, size: int) -> tuple[bytes, bytes]:
    chunks = [pending]
    have = len(pending)
    while have < size:
        data = sock.recv(max(262144, size - have))
        if not data:
            raise SystemExit(0)
        chunks.append(data)
        have += len(data)
    data = b"".join(chunks)
    return data[:size], data[size:]


def header_int(head: bytes, name: bytes) -> int:
    lower = head.lower()
    start = lower.find(b"\r\n" + name + b":")
    if start < 0:
        return 0
    start += len(name) + 3
    end = lower.find(b"\r\n", start)
    return int(head[start:end if end >= 0 else None])


if __name__ == "__main__":
    main()
