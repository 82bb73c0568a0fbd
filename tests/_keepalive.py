"""A loopback HTTP/1.1 keep-alive server for tests of handlers' own connections.

``GET /echo/X`` answers ``X``; any other path answers ``hello``.  It counts the
connections it accepts (a client that keeps its connection makes one) and the
requests it could not handle (two processes writing one stream break them),
and speaks TLS when given a server context.
"""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["KeepAliveServer", "serving"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        echo = self.path.startswith("/echo/")
        body = self.path.removeprefix("/echo/").encode() if echo else b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class KeepAliveServer(ThreadingHTTPServer):
    """See the module docstring; ``url`` ends with ``/``."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.connections = 0  # only the serving thread accepts
        self.errors: list[str] = []

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        self.connections += 1
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(repr(sys.exc_info()[1]))

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}/"


@contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[KeepAliveServer]:
    """A :class:`KeepAliveServer` serving on a thread until the block ends."""
    server = KeepAliveServer(tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
