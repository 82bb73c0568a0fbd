"""The Runtime API over httpx: for users who bring their own ``httpx.Client``
(proxies, event hooks, instrumentation) or choose ``BULKHEAD_TRANSPORT=httpx``.

httpx's exceptions are translated here and nowhere else.
"""

from __future__ import annotations

import httpx

from lambda_bulkhead._errors import TransportError
from lambda_bulkhead.runtime_api._http import SocketTransport
from lambda_bulkhead.runtime_api._protocol import Request, Response

__all__ = ["HttpxTransport"]


class HttpxTransport:
    """Sends :class:`Request` values with an ``httpx.Client`` (keep-alive).

    A client passed in is used as it is and left open on :meth:`close`; the
    default client has no timeouts, since ``/next`` may legitimately wait for
    as long as the environment is frozen.

    httpx can stream a chunked request body but cannot send request trailers,
    and a stream that fails after its first byte must end with them: streamed
    answers go over the socket transport's own connection to the same endpoint
    (:meth:`stream_transport`), not through the httpx client.
    """

    def __init__(self, host: str, port: int, client: httpx.Client | None = None) -> None:
        self._address = (host, port)
        self._base = f"http://{host}:{port}"
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(None),
            limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=None),
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def stream_transport(self) -> SocketTransport:
        """The connection streamed answers are sent on (see the class docstring)."""
        return SocketTransport(*self._address)

    def request(self, request: Request, *, timeout: float | None = None) -> Response:
        # Streamed, so that the headers are known when the body fails to arrive:
        # /next then still names the invocation whose event was lost.
        headers: dict[str, str] | None = None
        try:
            with self._client.stream(
                request.method,
                self._base + request.path,
                headers=list(request.headers),
                content=request.body,
                timeout=httpx.Timeout(timeout),
            ) as answer:
                headers = {name.lower(): value for name, value in answer.headers.items()}
                body = answer.read()
        except httpx.TimeoutException as exc:
            reason = f"no answer within {timeout} s"
            raise TransportError(request.call, reason, headers) from exc
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise TransportError(request.call, reason, headers) from exc
        return Response(answer.status_code, headers, body)
