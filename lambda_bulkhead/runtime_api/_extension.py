"""The lifecycle calls' I/O edge: the internal extension, registered and
parked, and the SnapStart calls (the requests are in :mod:`._lifecycle`).

Each call is sent with the socket transport on a connection of its own, so it
never waits behind a slot's ``/next``.
"""

from __future__ import annotations

import _socket

from lambda_bulkhead._errors import InvocationError, TransportError
from lambda_bulkhead.runtime_api._http import SocketTransport, _open_connection, encode_head
from lambda_bulkhead.runtime_api._lifecycle import (
    after_restore_error_request,
    before_snapshot_error_request,
    check_restored,
    event_next_request,
    parse_register,
    register_request,
    restore_next_request,
)

__all__ = ["Registration", "ShutdownExtension", "report_hook_error", "wait_for_restore"]

#: How long a register or an error post may take (the Runtime API is local).
CALL_TIMEOUT_S = 10.0


class ShutdownExtension:
    """The internal extension: registered, its ``event/next`` waiting on a
    connection this object holds until :meth:`close`.

    Its only effect is Lambda's: a runtime with an extension gets SIGTERM at
    shutdown, then SIGKILL about 500 ms later, instead of SIGKILL at once.
    """

    def __init__(self, sock: _socket.socket) -> None:
        self._sock: _socket.socket | None = sock

    @classmethod
    def register(cls, endpoint: tuple[str, int]) -> ShutdownExtension:
        """Register, then send ``event/next`` (fully written when this returns,
        so it reaches the Runtime API before any ``/next`` sent afterwards).
        Raises :class:`~lambda_bulkhead.RuntimeApiError` when either fails."""
        return Registration(endpoint).finish()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Registration:
    """The internal extension's registration, sent: the Runtime API answers
    while the caller goes on (the supervisor waits for its template), and
    :meth:`finish` reads the answer.  Raises
    :class:`~lambda_bulkhead.RuntimeApiError` when the register cannot be sent."""

    def __init__(self, endpoint: tuple[str, int]) -> None:
        self._endpoint = endpoint
        self._transport = SocketTransport(*endpoint)
        try:
            self._transport.send(register_request(), timeout=CALL_TIMEOUT_S)
        except BaseException:
            self._transport.close()
            raise

    def finish(self) -> ShutdownExtension:
        """The registered extension, its ``event/next`` sent (see
        :meth:`ShutdownExtension.register`); raises
        :class:`~lambda_bulkhead.RuntimeApiError` when either fails."""
        try:
            identifier = parse_register(self._transport.receive_pending())
        finally:
            self._transport.close()
        host, port = self._endpoint
        request = event_next_request(identifier)
        try:
            # Sent and never read: the answer would only come with an event,
            # and the extension subscribed to none.
            sock = _open_connection(host, port)
            sock.sendall(encode_head(request, f"{host}:{port}"))
        except OSError as exc:
            raise TransportError(request.call, f"{type(exc).__name__}: {exc}") from exc
        return ShutdownExtension(sock)


def wait_for_restore(endpoint: tuple[str, int]) -> None:
    """``restore/next``: returns once the snapshot was restored (on Lambda,
    in another environment, maybe much later)."""
    transport = SocketTransport(*endpoint)
    try:
        check_restored(transport.request(restore_next_request(), timeout=None))
    finally:
        transport.close()


def report_hook_error(endpoint: tuple[str, int], error: InvocationError, *, restored: bool) -> None:
    """Post a failing snapshot hook: a before-snapshot one (``restored`` False)
    to ``/init/error``, an after-restore one to ``/restore/error``."""
    request = (after_restore_error_request if restored else before_snapshot_error_request)(error)
    transport = SocketTransport(*endpoint)
    try:
        transport.request(request, timeout=CALL_TIMEOUT_S)
    finally:
        transport.close()
