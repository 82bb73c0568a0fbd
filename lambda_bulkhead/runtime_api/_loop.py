"""The invocation loop: poll ``/next``, run, post exactly one answer, repeat.

The loop takes what runs an invocation as a parameter (an :data:`Executor`):
the in-process runtime passes one that calls the handler here, the supervisor
one that hands the invocation to an isolated worker.  Both share this code.

Each invocation's executor gets a :class:`ResponseStream` with it: an executor
that streams its answer writes it there, and the loop then ends the stream
(with the error trailers for a failure after its first byte) instead of
posting a response; exactly one answer either way.

``serve`` only returns by raising: a
:class:`~lambda_bulkhead.RuntimeApiError` when the Runtime API fails (the
process should exit non-zero), or the ``SystemExit``/``KeyboardInterrupt`` of
an in-process handler, after its invocation was answered with ``/error``.
"""

from __future__ import annotations

from collections.abc import Callable

from lambda_bulkhead._context import FunctionMeta, Invocation
from lambda_bulkhead._errors import BrokenEvent, InvocationError, RuntimeApiError
from lambda_bulkhead.handler._handler import Answer, CoreHandler, Streamed, exit_error
from lambda_bulkhead.handler._handler import execute as execute_in_process
from lambda_bulkhead.runtime_api._client import RuntimeApi
from lambda_bulkhead.runtime_api._stream import ResponseStream

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = [
    "Executor",
    "in_process",
    "process_invocation",
    "send_streamed",
    "serve",
]


#: Runs one invocation (streaming its answer to the :class:`ResponseStream`, or
#: returning it); raises :class:`InvocationError` for a reportable failure.
Executor = Callable[[Invocation, ResponseStream], Answer]


def in_process(handler: CoreHandler, meta: FunctionMeta) -> Executor:
    """An executor that runs ``handler`` in this process."""

    def run(invocation: Invocation, stream: ResponseStream) -> Answer:
        answer = execute_in_process(handler, invocation, meta)
        if answer.stream is not None:
            send_streamed(answer.stream, stream)
        return answer

    return run


def send_streamed(streamed: Streamed, stream: ResponseStream) -> None:
    """Pull each chunk of a streaming handler and write it to ``stream`` before
    pulling the next (a slow Runtime API slows the handler's yield).  A failure
    to write stops the handler where it is (its generator is closed)."""
    try:
        for chunk in streamed:
            if not stream.begun:
                stream.begin(streamed.content_type)
            stream.send(chunk)
    except InvocationError:
        if stream.abandoned:  # the Runtime API's side gave out: the handler stops here
            streamed.close()
        raise  # else the handler's (it has ended) or the size limit's (it was closed)
    except BaseException:
        streamed.close()
        raise
    if not stream.begun:  # nothing yielded: an empty stream
        stream.begin(streamed.content_type)


def _execute(api: RuntimeApi, invocation: Invocation, execute: Executor) -> Answer | None:
    """Run ``invocation``: its answer, or None once it is answered (streamed, or
    its failure posted to ``/error`` or sent as the stream's trailers)."""
    request_id, invocation_id = invocation.request_id, invocation.invocation_id
    stream = api.open_stream(request_id, invocation_id=invocation_id)
    try:
        answer = execute(invocation, stream)
    except InvocationError as error:
        _fail(api, stream, error)
        return None
    except RuntimeApiError:
        raise  # the Runtime API failed while the answer was streamed: nothing to add
    except BaseException as exc:
        # Whatever ends the runtime here (SystemExit in-process, a supervisor
        # that can no longer get a worker), the event in hand gets its answer.
        _fail(api, stream, exit_error(request_id, exc))
        raise
    if stream.begun:
        stream.finish()
        return None
    return answer


def _fail(api: RuntimeApi, stream: ResponseStream, error: InvocationError) -> None:
    """Post ``error``: to ``/error`` before the answer's first byte, else as the
    stream's trailers."""
    if stream.started:
        stream.fail(error)
    else:
        api.send_error(stream.request_id, error, invocation_id=stream.invocation_id)


def _poll(api: RuntimeApi) -> Invocation | None:
    """``/next``; an event that could not be read is answered with ``/error``: None."""
    try:
        return api.next()
    except BrokenEvent as broken:
        api.send_error(broken.request_id, broken, invocation_id=broken.invocation_id)
        return None


def process_invocation(
    api: RuntimeApi,
    execute: Executor,
    *,
    invocation: Invocation | None = None,
    ready: Callable[[], bool] | None = None,
    before_wait: Callable[[], None] | None = None,
) -> Invocation | None:
    """One turn of the loop: poll ``/next``, run the invocation, post its one
    answer (``/response``, or ``/error`` for a failure).

    ``invocation``: one already polled (by the turn before), run instead of
    polling.  When the answer is a success and ``ready()`` says the next event
    can be taken at once, the response and the next poll go out together
    (:meth:`RuntimeApi.send_response_then_next`) and the next invocation is
    returned, for the next turn; otherwise None.  ``before_wait`` runs once,
    when the answer is written, before anything waits for the next event.

    Returns when the invocation was answered (including with an ``/error``);
    raises :class:`~lambda_bulkhead.RuntimeApiError` when the Runtime API failed.
    """
    if invocation is None:
        invocation = _poll(api)
        if invocation is None:
            return None
    answer = _execute(api, invocation, execute)
    request_id, invocation_id = invocation.request_id, invocation.invocation_id
    if answer is not None and ready is not None and ready():
        try:
            return api.send_response_then_next(
                request_id, answer.body, invocation_id=invocation_id,
                content_type=answer.content_type, before_wait=before_wait,
            )
        except BrokenEvent as broken:
            api.send_error(broken.request_id, broken, invocation_id=broken.invocation_id)
            return None
    if answer is not None:
        api.send_response(
            request_id, answer.body, invocation_id=invocation_id, content_type=answer.content_type
        )
    if before_wait is not None:
        before_wait()
    return None


def serve(
    api: RuntimeApi,
    execute: Executor,
    *,
    prepare: Callable[[], None] | None = None,
    ready: Callable[[], bool] | None = None,
    before_wait: Callable[[], None] | None = None,
) -> NoReturn:
    """:func:`process_invocation`, turn after turn, until the Runtime API fails (raised).

    ``prepare`` runs before each poll of ``/next``: the supervisor uses it to
    have a worker ready before it accepts an event (back-pressure).  After a
    successful answer, when the next event can be taken at once (``ready()``
    says so; without ``ready``, when there is no ``prepare``), the response and
    the next poll go out together.  ``before_wait`` runs once per answer, once
    it is written (pipelined: while the Runtime API takes it), before the loop
    waits for the next event: work that must not delay an answer (nor the
    dispatch of the next event) goes there.
    """
    if ready is None:
        ready = _never if prepare is not None else _always
    pending: Invocation | None = None
    while True:
        if pending is None and prepare is not None:
            prepare()
        pending = process_invocation(
            api, execute, invocation=pending, ready=ready, before_wait=before_wait
        )


def _always() -> bool:
    return True


def _never() -> bool:
    return False
