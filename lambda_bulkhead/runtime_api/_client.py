"""``RuntimeApi``: the Runtime API client (the seed's ``Api``).

It turns the pure requests of :mod:`lambda_bulkhead.runtime_api._protocol` into calls on a
transport and applies the rules every caller needs: 410 and 400/403 answers to
a post are logged and survived, a 413 on ``/response`` becomes an ``/error``
for that invocation, a 500 (or any status we cannot go on from) is fatal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from lambda_bulkhead._config import Config, LogSettings
from lambda_bulkhead._context import Invocation
from lambda_bulkhead._errors import (
    BrokenEvent,
    InvocationError,
    NotRunningInLambda,
    RuntimeApiError,
    TransportError,
    UnexpectedStatus,
)
from lambda_bulkhead.logs._writer import default_log
from lambda_bulkhead.runtime_api._protocol import (
    MAX_RESPONSE_BYTES,
    PostOutcome,
    Request,
    Response,
    error_request,
    init_error_request,
    next_request,
    parse_next,
    post_outcome,
    response_request,
    too_large_error,
)
from lambda_bulkhead.runtime_api._stream import ResponseStream

TYPE_CHECKING = False
if TYPE_CHECKING:
    import httpx

    from lambda_bulkhead.logs._interface import RuntimeLog
    from lambda_bulkhead.runtime_api._http import SocketTransport
    from lambda_bulkhead.runtime_api._transport import PipelinedTransport, Transport

__all__ = [
    "DEFAULT_POST_TIMEOUT_S",
    "NEXT_RETRY_DELAYS_S",
    "RuntimeApi",
]

#: How long a post may wait for its answer before it is sent once more (and then
#: the runtime gives up on the Runtime API); ``/next`` itself never times out,
#: since the environment may be frozen between events.
DEFAULT_POST_TIMEOUT_S = 10.0
#: Pauses before polling ``/next`` again after a retryable failure.
NEXT_RETRY_DELAYS_S = (0.05, 0.2, 1.0)


DEFAULT_LOG_SETTINGS = LogSettings()


class RuntimeApi:
    """A client of one Runtime API endpoint.

    Build it with :meth:`from_env` in Lambda, or by hand around any
    :class:`Transport` (tests, other event sources).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        post_timeout: float | None = DEFAULT_POST_TIMEOUT_S,
        log: RuntimeLog | None = None,
        pipeline: bool = True,
        log_settings: LogSettings = DEFAULT_LOG_SETTINGS,
    ) -> None:
        """``log_settings``: the format and level of the log made on first use
        when no ``log`` is given."""
        self._transport = transport
        self._pipelined: PipelinedTransport | None = (
            transport  # type: ignore[assignment]  # has send_pair: it is one
            if pipeline and hasattr(transport, "send_pair")
            else None
        )
        self._post_timeout = post_timeout
        self._log = log
        self._log_settings = log_settings
        #: The connection streamed answers go over, when it is not the transport's
        #: own (httpx cannot send trailers): made on first use.
        self._stream_transport: SocketTransport | None = None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        http_client: httpx.Client | None = None,
        transport: str | None = None,
        log: RuntimeLog | None = None,
    ) -> RuntimeApi:
        """A client for ``AWS_LAMBDA_RUNTIME_API``.

        ``transport`` is ``"socket"`` (the default: a keep-alive socket with a
        minimal HTTP/1.1 client) or ``"httpx"``; passing ``http_client`` selects
        httpx with that client.  ``BULKHEAD_TRANSPORT`` sets the default.
        """
        env = os.environ if environ is None else environ
        if transport is not None:
            env = {**env, "BULKHEAD_TRANSPORT": transport}
        return cls.from_config(Config.from_environ(env), http_client=http_client, log=log)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        http_client: httpx.Client | None = None,
        log: RuntimeLog | None = None,
    ) -> RuntimeApi:
        """A client for the endpoint, transport and pipelining ``config`` names
        (what the runtime itself uses: the environment is read once, by Config)."""
        if config.endpoint is None:
            raise NotRunningInLambda
        host, port = config.endpoint
        chosen: Transport
        if http_client is not None or config.transport == "httpx":
            from lambda_bulkhead.runtime_api._httpx import HttpxTransport  # noqa: PLC0415

            chosen = HttpxTransport(host, port, http_client)
        else:
            from lambda_bulkhead.runtime_api._http import SocketTransport  # noqa: PLC0415

            chosen = SocketTransport(host, port)
        return cls(chosen, log=log, pipeline=config.pipeline, log_settings=config.log)

    def close(self) -> None:
        self._transport.close()
        if self._stream_transport is not None:
            self._stream_transport.close()

    def __enter__(self) -> RuntimeApi:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def log(self) -> RuntimeLog:
        if self._log is None:
            self._log = default_log(self._log_settings)
        return self._log

    def next(self) -> Invocation:
        """Long-poll ``/next`` until Lambda has an invocation to deliver.

        A connection failure before an invocation was named, or a 4xx answer,
        is retried after each of :data:`NEXT_RETRY_DELAYS_S` and then raised; a
        5xx or a missing request id is raised at once (all fatal).  A failure
        after the answer's headers named an invocation raises
        :class:`BrokenEvent`, which the loop answers with ``/error``.
        """
        return self._next(pending=False)

    def send_response_then_next(
        self,
        request_id: str,
        body: bytes,
        *,
        invocation_id: str | None = None,
        content_type: str = "application/json",
        before_wait: Callable[[], object] | None = None,
    ) -> Invocation:
        """:meth:`send_response`, then :meth:`next`, sent in one write where the
        transport can pipeline them (the socket transport), saving a round trip
        per invocation.  A 413 on the post is answered with ``/error`` over a
        second connection, since the first is already waiting on ``/next``.
        ``before_wait`` is called at most once, when the response is written:
        while the platform answers it, before the next event is waited for.
        """
        pipelined = self._pipelined
        if pipelined is None or len(body) > MAX_RESPONSE_BYTES:
            self.send_response(
                request_id, body, invocation_id=invocation_id, content_type=content_type
            )
            if before_wait is not None:
                before_wait()
            return self.next()
        request = response_request(
            request_id, body, invocation_id=invocation_id, content_type=content_type
        )
        try:
            answer = pipelined.send_pair(
                request, next_request(), timeout=self._post_timeout, after_send=before_wait
            )
        except TransportError as exc:
            # before_wait is not called here: it may have run with the first
            # write, and it promises at most one call.
            self._post_failed(request, request_id, exc)
            self._post(request, request_id)
            return self.next()
        if self._outcome(request, request_id, answer) is PostOutcome.TOO_LARGE:
            side = RuntimeApi(pipelined.clone(), post_timeout=self._post_timeout, log=self._log)
            with side:
                side.send_error(request_id, too_large_error(len(body)), invocation_id=invocation_id)
        return self._next(pending=True)

    def open_stream(self, request_id: str, *, invocation_id: str | None = None) -> ResponseStream:
        """The :class:`ResponseStream` an invocation's answer may be streamed on
        (nothing is sent until its first chunk)."""
        return ResponseStream(
            self._streaming_transport, request_id, invocation_id,
            post_timeout=self._post_timeout, log=lambda: self.log,
        )

    def _streaming_transport(self) -> SocketTransport:
        transport = self._transport
        if hasattr(transport, "open_stream"):  # the socket transport streams itself
            return transport  # type: ignore[return-value]
        if self._stream_transport is None:
            make = getattr(transport, "stream_transport", None)
            if make is None:
                raise TransportError("response", f"{type(transport).__name__} cannot stream")
            self._stream_transport = make()
        return self._stream_transport

    def _next(self, *, pending: bool) -> Invocation:
        delays = iter(NEXT_RETRY_DELAYS_S)
        while True:
            try:
                if pending and self._pipelined is not None:
                    pending = False
                    response = self._pipelined.receive_pending()
                else:
                    response = self._transport.request(next_request(), timeout=None)
                return parse_next(response)
            except TransportError as exc:
                named = (exc.headers or {}).get("lambda-runtime-aws-request-id")
                if named:
                    invocation_id = (exc.headers or {}).get("lambda-runtime-invocation-id")
                    raise BrokenEvent(named, invocation_id, exc.reason) from exc
                failure: RuntimeApiError = exc
            except UnexpectedStatus as exc:
                if exc.status >= 500:
                    raise
                failure = exc
            delay = next(delays, None)
            if delay is None:
                raise failure
            self.log.warning(
                "Runtime API next failed; polling again", error=str(failure), retryInSeconds=delay
            )
            time.sleep(delay)

    def send_response(
        self,
        request_id: str,
        body: bytes,
        *,
        invocation_id: str | None = None,
        content_type: str = "application/json",
    ) -> PostOutcome:
        """Post ``body`` as the invocation's result.

        A body over the platform's limit (``MAX_RESPONSE_BYTES``), or one the
        platform refuses with 413, is reported to ``/error`` as
        ``Function.ResponseSizeTooLarge`` instead; the outcome is then ``TOO_LARGE``.
        """
        if len(body) > MAX_RESPONSE_BYTES:
            outcome = PostOutcome.TOO_LARGE
        else:
            request = response_request(
                request_id, body, invocation_id=invocation_id, content_type=content_type
            )
            outcome = self._post(request, request_id)
        if outcome is PostOutcome.TOO_LARGE:
            self.send_error(request_id, too_large_error(len(body)), invocation_id=invocation_id)
        return outcome

    def send_error(
        self, request_id: str, error: InvocationError, *, invocation_id: str | None = None
    ) -> PostOutcome:
        """Post ``error`` as the invocation's failure."""
        return self._post(error_request(request_id, error, invocation_id=invocation_id), request_id)

    def send_init_error(self, error: InvocationError) -> None:
        """Report a failure to initialise; the caller should then exit non-zero."""
        self._post(init_error_request(error), None)

    def _post(self, request: Request, request_id: str | None) -> PostOutcome:
        try:
            answer = self._transport.request(request, timeout=self._post_timeout)
        except TransportError as exc:
            self._post_failed(request, request_id, exc)
            answer = self._transport.request(request, timeout=self._post_timeout)
        return self._outcome(request, request_id, answer)

    def _post_failed(self, request: Request, request_id: str | None, exc: TransportError) -> None:
        # The post is sent once more on a new connection: if the first one did
        # arrive, the platform refuses the second (403) or finds the invocation
        # over (410), both survived, so no answer is ever doubled.
        self.log.warning(
            "Runtime API post failed; sending it once more",
            call=request.call, requestId=request_id, error=exc.reason,
        )

    def _outcome(self, request: Request, request_id: str | None, answer: Response) -> PostOutcome:
        outcome = post_outcome(request.call, answer)
        if outcome is PostOutcome.LATE:
            self.log.warning("answer refused: invocation already timed out",
                             call=request.call, requestId=request_id, status=410)
        elif outcome is PostOutcome.REFUSED:
            self.log.warning("answer refused by the Runtime API",
                             call=request.call, requestId=request_id, status=answer.status)
        return outcome
