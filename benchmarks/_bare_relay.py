"""The least a supervised Python runtime can do: a yardstick, not a runtime.

One process keeps the Runtime API conversation on a raw socket; a forked
child runs ``trivial.handler`` on each event it is handed over a pipe and
hands the answer back over another.  No deadline, memory, crash or output
handling, no logging, no error path: what is left is the two pipe hand-offs
and the least Python around them.  ``floor.py`` runs it beside lambda-bulkhead.
"""

from __future__ import annotations

import _socket
import json
import os
import struct
import sys

LENGTH = struct.Struct(">I")


def child(events: int, answers: int) -> None:
    sys.path.insert(0, os.getcwd())
    from trivial import handler  # noqa: PLC0415

    while True:
        frame = os.read(events, 1 << 20)
        if not frame:
            os._exit(0)
        body = json.dumps(handler(json.loads(frame[LENGTH.size:]), None)).encode()
        os.write(answers, LENGTH.pack(len(body)) + body)


def main() -> None:
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    if os.fork() == 0:
        os.close(to_child_w)
        os.close(from_child_r)
        child(to_child_r, from_child_w)
    os.close(to_child_r)
    os.close(from_child_w)
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.connect((host, int(port)))
    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    next_request = f"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {host}\r\n\r\n"
    sock.sendall(next_request.encode())
    pending = b""
    while True:
        data = pending
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += sock.recv(65536)
        lines = data[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        length = int(headers["content-length"])
        while len(data) < end + 4 + length:
            data += sock.recv(65536)
        body = data[end + 4 : end + 4 + length]
        pending = data[end + 4 + length :]
        if lines[0].startswith("HTTP/1.1 200"):
            request_id = headers["lambda-runtime-aws-request-id"]
            os.write(to_child_w, LENGTH.pack(len(body)) + body)
            answer = os.read(from_child_r, 1 << 20)[LENGTH.size:]
            post = (
                f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
                f"Host: {host}\r\nContent-Length: {len(answer)}\r\n\r\n"
            ).encode()
            sock.sendall(post + answer + next_request.encode())


if __name__ == "__main__":
    main()
