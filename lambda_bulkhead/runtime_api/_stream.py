"""``ResponseStream``: one invocation's answer, when it is streamed.

The loop makes one per invocation and hands it to the executor with the
invocation; an executor that streams (a generator handler) calls
:meth:`~ResponseStream.begin` with the content type, then
:meth:`~ResponseStream.send` with each chunk as it comes.  The loop ends it:
:meth:`~ResponseStream.finish` when the executor returned,
:meth:`~ResponseStream.fail` when it raised after the first byte (the error
leaves as the two trailers; before the first byte it is an ordinary
``/error``, posted by the loop).  An executor that never calls ``begin``
answers as before, with its :class:`~lambda_bulkhead.Answer`.

The POST's head leaves with the first chunk, so an executor may call ``begin``
and still fail with an ordinary ``/error``.

A stream whose connection fails after its first byte left, or that the
Runtime API takes no byte of for the post timeout (a reader that stopped
reading), is *abandoned*: its connection is reset, which the caller sees as a
stream cut short, nothing more is sent for it (:meth:`~ResponseStream.finish`
and :meth:`~ResponseStream.fail` do nothing more),
:meth:`~ResponseStream.send` raises the ``Runtime.TruncatedResponse`` error for
the executor to stop, and the loop goes on to the next event on a new
connection.  Only that invocation is lost; a Runtime API that is really gone
fails the next ``/next``.  A stream that was all written, its end included,
but whose answer does not come within the post timeout is not abandoned: it
is complete on the wire, and only a warning says the answer did not come.  A
failure before any byte left is the Runtime API's, raised as for any post.
"""

from __future__ import annotations

from lambda_bulkhead._errors import InvocationError, TransportError
from lambda_bulkhead._streaming import (
    MAX_STREAM_BYTES,
    stream_abandoned_error,
    stream_too_large_error,
)
from lambda_bulkhead.runtime_api._protocol import (
    PostOutcome,
    post_outcome,
    stream_request,
    stream_trailers,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from lambda_bulkhead.logs._interface import RuntimeLog
    from lambda_bulkhead.runtime_api._http import ChunkedUpload, SocketTransport

__all__ = ["STREAM_TICK_S", "ResponseStream"]

#: How often a write the Runtime API holds back calls its ``blocked`` callback.
STREAM_TICK_S = 0.05


class ResponseStream:
    """The streamed answer of one invocation (see the module docstring)."""

    def __init__(
        self,
        transport: Callable[[], SocketTransport],
        request_id: str,
        invocation_id: str | None,
        *,
        post_timeout: float | None,
        log: Callable[[], RuntimeLog],
    ) -> None:
        self._transport = transport
        self.request_id = request_id
        self.invocation_id = invocation_id
        self._post_timeout = post_timeout
        self._log = log
        self._content_type: str | None = None
        self._upload: ChunkedUpload | None = None
        #: Bytes sent so far.
        self.size = 0
        #: Once given up (its connection failed or stalled, see the module
        #: docstring): the error it was given up with.
        self.abandoned: InvocationError | None = None

    @property
    def begun(self) -> bool:
        """Whether the executor streams this answer (:meth:`begin` was called)."""
        return self._content_type is not None

    @property
    def started(self) -> bool:
        """Whether any byte of the answer left: ``/error`` can no longer be used."""
        return self._upload is not None and self._upload.started

    def begin(self, content_type: str) -> None:
        """This answer is streamed, with ``content_type``."""
        self._content_type = content_type

    def send(self, chunk: bytes, blocked: Callable[[], object] | None = None) -> None:
        """Write ``chunk`` (not empty) to the Runtime API now.

        Returns once the Runtime API took it (back-pressure: a slow reader slows
        the caller).  ``blocked`` is called every :data:`STREAM_TICK_S` while it
        does not, and may raise to stop waiting (:meth:`fail` sends what is
        left).  A stream past ``MAX_STREAM_BYTES`` raises
        ``Function.ResponseSizeTooLarge`` without sending the chunk; a failed
        connection raises :class:`~lambda_bulkhead.TransportError`.
        """
        self._count(len(chunk))
        upload = self._open()
        try:
            upload.send(chunk, blocked)
        except TransportError as exc:
            raise self._abandon(upload, exc) from exc

    def send_from_pipe(
        self, fd: int, size: int, blocked: Callable[[], object] | None = None
    ) -> None:
        """As :meth:`send`, for a chunk of the next ``size`` bytes the pipe ``fd``
        holds (all of them already), moved to the socket without passing
        through this process (see :meth:`ChunkedUpload.send_from_pipe`)."""
        self._count(size)
        upload = self._open()
        try:
            upload.send_from_pipe(fd, size, blocked)
        except TransportError as exc:
            raise self._abandon(upload, exc) from exc

    def _count(self, size: int) -> None:
        if self.size + size > MAX_STREAM_BYTES:
            raise stream_too_large_error(self.size + size)
        self.size += size

    def finish(self) -> PostOutcome | None:
        """End the stream well; the Runtime API's answer (None: abandoned)."""
        return self._end(())

    def fail(self, error: InvocationError) -> PostOutcome | None:
        """End the stream with ``error`` in the trailers (None: abandoned)."""
        return self._end(stream_trailers(error, self.request_id))

    def _open(self) -> ChunkedUpload:
        upload = self._upload
        if upload is None:
            request = stream_request(
                self.request_id, self._content_type or "application/octet-stream",
                invocation_id=self.invocation_id,
            )
            upload = self._upload = self._transport().open_stream(
                request, tick=STREAM_TICK_S, stall_limit=self._post_timeout
            )
        return upload

    def _end(self, trailers: tuple[tuple[str, str], ...]) -> PostOutcome | None:
        if self.abandoned:
            return None
        upload = self._open()
        try:
            answer = upload.finish(trailers, timeout=self._post_timeout)
        except TransportError as exc:
            if not upload.written:
                self._abandon(upload, exc)
                return None
            self._log().warning(
                "streamed answer sent whole, but not acknowledged; serving on",
                requestId=self.request_id, reason=str(exc), bytesSent=self.size,
            )
            return None
        outcome = post_outcome("response", answer)
        if outcome is not PostOutcome.ACCEPTED:
            self._log().warning(
                "streamed answer refused by the Runtime API",
                requestId=self.request_id, status=answer.status,
            )
        return outcome

    def _abandon(self, upload: ChunkedUpload, failure: TransportError) -> InvocationError:
        """Give the stream up (its transport has closed the connection already);
        the error that stops its executor.  Before its first byte left, the
        failure is the Runtime API's: raised as it is."""
        if not upload.started:
            raise failure
        self.abandoned = stream_abandoned_error(self.request_id, str(failure))
        self._log().error(
            "response stream abandoned; serving on", requestId=self.request_id,
            reason=str(failure), bytesSent=self.size,
        )
        return self.abandoned
