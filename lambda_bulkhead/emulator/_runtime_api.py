"""The Runtime API routes: ``/next``, ``/response`` (buffered or streamed), ``/error``,
``/init/error``, and SnapStart's ``/restore/next`` and ``/restore/error``.

An invocation's states and what moves it (rules cited in the code)::

    1. queued     --a /next poll takes it----> delivered    timeout clock starts
    2. queued     --/init/error posted-------> init_failed  invoke answered 502 + init error body
    3. queued     --runtime_exited()---------> exited       invoke answered 502 Runtime.ExitError
    4. delivered  --/response answered 202---> responded    invoke answered 200 + body
    5. delivered  --/error answered 202------> errored      200 + error body + X-Amz-Function-Error
    6. delivered  --timeout_s passes---------> timed_out    200 "Task timed out after N.NN seconds"
    7. delivered  --runtime_exited()---------> exited       502 Runtime.ExitError
    8. A post for a timed_out invocation is answered 410, for one that ended
       otherwise 403, for an id /next never gave out 400; a non-202 answer
       changes nothing.
    9. A queued invocation whose caller went away is dropped, never delivered.
   13. delivered  --a streamed /response begins--> streaming: the caller gets
       each chunk as it comes; a second /response or an /error is 403; the
       stream's end (202) makes it responded, or errored if the error trailers
       came; a timeout or runtime_exited() ends the caller's stream with error
       trailers; a stream over 200 MiB ends with Function.ResponseSizeTooLarge
       (413 to the runtime); a runtime connection lost mid-stream ends it with
       Runtime.TruncatedResponse.

And the emulator's own:

   10. After an /init/error (or /restore/error) every invoke is answered 502
       with its body and every /next 403: the runtime should have exited.
   11. After runtime_exited(), invokes are answered 502 until a runtime polls
       /next again (the owner restarted it), as the RIE re-inits on the next invoke.
   12. /init/error after init is complete is 403.
   14. No invocation is delivered before init is complete: every registered
       extension waits in event/next and, with SnapStart, restore/next was answered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import cast

from lambda_bulkhead.emulator._faults import (
    NextBody,
    NextFault,
    NextHeaders,
    NextPastDeadline,
    NextRequestId,
    NextReset,
    NextShortBody,
    NextStatus,
    PostFault,
    PostHang,
    PostReset,
    PostStatus,
    default_error_body,
)
from lambda_bulkhead.emulator._records import (
    InitErrorReport,
    InvokeKind,
    InvokeResult,
    NextDelivery,
    RestoreErrorReport,
    RuntimeAnswer,
)
from lambda_bulkhead.emulator._state import Invocation, Platform, State
from lambda_bulkhead.emulator._streaming import (
    ERROR_BODY_TRAILER,
    ERROR_TYPE_TRAILER,
    MAX_STREAM_BYTES,
    PreludeError,
    StreamCollector,
    decode_error_body,
    is_streaming,
)
from lambda_bulkhead.emulator._wire import (
    BodySink,
    BufferedBody,
    Connection,
    Request,
    RequestHead,
    json_error,
    raw_response,
    wire_text,
)

__all__ = ["MAX_RESPONSE_BYTES", "RuntimeRoutes"]

MAX_RESPONSE_BYTES = 6_291_556
"""Largest buffered ``/response`` or ``/error`` body the Runtime API accepts; more is 413."""

NEXT_PATH = "/2018-06-01/runtime/invocation/next"
INVOCATION_PREFIX = "/2018-06-01/runtime/invocation/"
INIT_ERROR_PATH = "/2018-06-01/runtime/init/error"
RESTORE_NEXT_PATH = "/2018-06-01/runtime/restore/next"
RESTORE_ERROR_PATH = "/2018-06-01/runtime/restore/error"
JSON_HEADERS = (("Content-Type", "application/json"),)
_ACCEPTED = b'{"status":"OK"}'


class _Drain:
    """A body nobody wants (the request was already answered): read and dropped."""

    def data(self, data: bytes, chunk_end: bool) -> None:
        pass

    def end(self, trailers: dict[str, str]) -> None:
        pass

    def lost(self) -> None:
        pass


class StreamingPost:
    """The body sink of one streamed ``/response`` (rule 13)."""

    def __init__(self, routes: RuntimeRoutes, connection: Connection, head: RequestHead,
                 request_id: str, invocation: Invocation, fault: PostFault | None) -> None:
        self._routes = routes
        self._connection = connection
        self._head = head
        self.request_id = request_id
        self.invocation = invocation
        self._fault = fault
        content_type = head.headers.get("content-type") or "application/octet-stream"
        self.collector = StreamCollector(content_type=content_type,
                                         keep_chunks=invocation.keep_chunks,
                                         on_chunk=invocation.on_chunk,
                                         limit=MAX_STREAM_BYTES)
        self.started_caller = False
        self.caller_disconnected = False
        self.ended = False  # the invocation has ended (by this stream or otherwise)
        self.answered = False  # the runtime's post was answered (before its body ended)
        if invocation.listener is not None:
            invocation.listener.set_source(connection)

    # -- BodySink ---------------------------------------------------------------------

    def data(self, data: bytes, chunk_end: bool) -> None:
        if self.ended:
            return
        collector = self.collector
        try:
            out = collector.feed(data, chunk_end, time.monotonic())
        except PreludeError as exc:
            self._routes.end_stream(self, "errored", "Runtime.InvalidHttpIntegrationResponse",
                                    str(exc), caller_status=502)
            return
        if collector.over_limit:
            self._routes.end_stream(
                self, "errored", "Function.ResponseSizeTooLarge",
                f"Response payload size exceeded maximum allowed payload size "
                f"({collector.limit} bytes).")
            self.answered = True
            self._routes.answer_post(self._connection, self._head, self.request_id, 413,
                                     json_error("RequestEntityTooLarge", "response stream over "
                                                f"{collector.limit} bytes"),
                                     self._fault, trailers={})
            return
        self.begin_caller()
        if out:
            self._to_caller(out)

    def end(self, trailers: dict[str, str]) -> None:
        routes = self._routes
        if self.ended:
            # Timed out or the runtime was declared dead meanwhile: a late answer.
            status, body = routes.late_post_answer(self.request_id, "response")
            routes.answer_post(self._connection, self._head, self.request_id, status, body,
                               self._fault, trailers=trailers)
            return
        try:
            self.collector.finish()
        except PreludeError as exc:
            routes.end_stream(self, "errored", "Runtime.InvalidHttpIntegrationResponse", str(exc),
                              caller_status=502)
        else:
            self.begin_caller()
            error_type = trailers.get(ERROR_TYPE_TRAILER)
            if error_type is not None:
                routes.end_stream(self, "errored", error_type, None,
                                  error_body=decode_error_body(trailers.get(ERROR_BODY_TRAILER)))
            else:
                routes.end_stream(self, "responded", None, None)
        if isinstance(self._fault, PostReset):
            routes.record_answer(self._head, self.request_id, "response", None, self._fault,
                                 streamed=True, trailers=trailers)
            self._connection.write_raw_then_reset(b"")
        else:
            routes.answer_post(self._connection, self._head, self.request_id, 202, _ACCEPTED,
                               self._fault, trailers=trailers)

    def lost(self) -> None:
        if not self.ended:
            self._routes.end_stream(self, "errored", "Runtime.TruncatedResponse",
                                    "the runtime's connection closed before the end of the "
                                    "response stream")
        if not self.answered:
            self._routes.record_answer(self._head, self.request_id, "response", None,
                                       self._fault, streamed=True, trailers={})

    # -- the caller's side -----------------------------------------------------------------

    def begin_caller(self) -> None:
        head = self.collector.head
        if self.started_caller or head is None:
            return
        self.started_caller = True
        listener = self.invocation.listener
        if listener is not None and not self.invocation.is_abandoned():
            listener.begin(head.status, [*head.headers,
                                         ("X-Amzn-RequestId", self.invocation.request_id)])

    def _to_caller(self, data: bytes) -> None:
        listener = self.invocation.listener
        if self.invocation.is_abandoned():
            self.caller_disconnected = True
        elif listener is not None:
            listener.body(data)


class RuntimeRoutes:
    """Answers the runtime's requests, delivers invocations and ends them."""

    def __init__(self, platform: Platform) -> None:
        self._p = platform
        self._timeout_ms = round(platform.config.timeout_s * 1000)
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._streams: dict[str, StreamingPost] = {}
        self._restore_polls: list[Connection] = []
        self._restore_answered = False
        platform.dispatch = self.dispatch

    # -- routing ---------------------------------------------------------------

    def route(self, connection: Connection, head: RequestHead) -> BodySink | None:
        """The sink for a Runtime API request, or ``None`` if the path is not one."""
        path, method = head.path, head.method
        if path == NEXT_PATH:
            return self._buffered(connection, head, "GET", self._on_next)
        if path.startswith(INVOCATION_PREFIX):
            segment, _, call = path[len(INVOCATION_PREFIX) :].partition("/")
            # One path segment, percent-decoded: the runtime encodes the id so.
            request_id = urllib.parse.unquote(segment, errors="surrogateescape")
            if not request_id or call not in ("response", "error"):
                return None
            if method != "POST":
                return _wrong_method(connection, method, "POST")
            if call == "response" and is_streaming(head.headers):
                return self._on_stream(connection, head, request_id)
            return BufferedBody(connection, head,
                                lambda request: self._on_post(connection, request, request_id,
                                                              call))
        if path == INIT_ERROR_PATH:
            return self._buffered(connection, head, "POST", self._on_init_error)
        if path == RESTORE_NEXT_PATH:
            return self._buffered(connection, head, "GET", self._on_restore_next)
        if path == RESTORE_ERROR_PATH:
            return self._buffered(connection, head, "POST", self._on_restore_error)
        return None

    @staticmethod
    def _buffered(connection: Connection, head: RequestHead, allowed: str,
                  handler: Callable[[Connection, Request], None]) -> BodySink:
        if head.method != allowed:
            return _wrong_method(connection, head.method, allowed)
        return BufferedBody(connection, head, lambda request: handler(connection, request))

    # -- /next -----------------------------------------------------------------

    def _on_next(self, connection: Connection, request: Request) -> None:
        p = self._p
        if p.fatal is not None:  # 10
            body = json_error(
                "InvalidStateTransition", "the runtime posted an init or restore error: it should "
                "have exited"
            )
            p.record_call("invocation/next", status=403)
            self._record_delivery(None, 403, JSON_HEADERS, len(body), None)
            connection.answer(403, JSON_HEADERS, body)
            return
        p.record_call("invocation/next")
        p.exit_reason = None  # 11
        p.initialized = True  # 12
        p.polls.append(connection)
        p.wake_init_waiters()
        self.dispatch()
        if p.poll_waiters:
            self.wake_poll_waiters()

    def dispatch(self) -> None:
        """Pair waiting polls with queued invocations (and with faults that need none)."""
        p = self._p
        polls = p.polls
        if not p.init_complete:  # 14
            return
        while polls:
            fault = cast(NextFault, p.next_faults[0].fault) if p.next_faults else None
            if fault is not None and not _uses_event(fault):
                self._take_next_fault()
                self._answer_without_event(polls.popleft(), fault)
                continue
            invocation = self._pop_queued()
            if invocation is None:
                return
            if fault is not None:
                self._take_next_fault()
            self._deliver(polls.popleft(), invocation, fault)

    def wake_poll_waiters(self) -> None:
        p = self._p
        waiting = len(p.polls)
        still_waiting = []
        for polls, waiter in p.poll_waiters:
            if waiting >= polls:
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(None)
            elif not waiter.cancelled():
                still_waiting.append((polls, waiter))
        p.poll_waiters = still_waiting

    def _pop_queued(self) -> Invocation | None:
        queue = self._p.queue
        while queue:
            invocation = queue.popleft()
            if not invocation.is_abandoned():  # 9
                return invocation
        return None

    def _take_next_fault(self) -> None:
        faults = self._p.next_faults
        pending = faults[0]
        pending.remaining -= 1
        if pending.remaining <= 0:
            faults.popleft()

    def _event_headers(self, invocation: Invocation) -> list[tuple[str, str]]:
        deadline_ms = int(time.time() * 1000) + self._timeout_ms
        headers = [
            ("Content-Type", invocation.content_type),
            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", self._p.config.arn),
            ("Lambda-Runtime-Trace-Id", invocation.trace_id),
        ]
        if invocation.client_context:
            headers.append(("Lambda-Runtime-Client-Context", invocation.client_context))
        if invocation.cognito_identity:
            headers.append(("Lambda-Runtime-Cognito-Identity", invocation.cognito_identity))
        if invocation.tenant_id:
            headers.append(("Lambda-Runtime-Aws-Tenant-Id", invocation.tenant_id))
        headers.append(("Lambda-Runtime-Invocation-Id", invocation.invocation_id))
        return headers

    def _deliver(self, connection: Connection, invocation: Invocation,
                 fault: NextFault | None) -> None:
        p = self._p
        invocation.state = "delivered"  # 1
        if isinstance(fault, NextRequestId):
            invocation.request_id = fault.request_id
        p.in_flight[invocation.request_id] = invocation
        invocation.expires_at = p.loop.time() + p.config.timeout_s
        if self._expiry_timer is None:
            self._expiry_timer = p.loop.call_at(invocation.expires_at, self._expire)
        headers = self._event_headers(invocation)
        body = invocation.payload
        request_id = invocation.request_id
        match fault:
            case None | NextRequestId():
                self._record_delivery(request_id, 200, headers, len(body), fault)
                connection.answer(200, headers, body)
            case NextHeaders(headers=overrides):
                headers = _override(headers, overrides)
                self._record_delivery(request_id, 200, headers, len(body), fault)
                connection.answer(200, headers, body)
            case NextPastDeadline(by_ms=by_ms):
                past = str(int(time.time() * 1000) - by_ms)
                headers = _override(headers, {"Lambda-Runtime-Deadline-Ms": past})
                self._record_delivery(request_id, 200, headers, len(body), fault)
                connection.answer(200, headers, body)
            case NextBody(body=replacement):
                self._record_delivery(request_id, 200, headers, len(replacement), fault)
                connection.answer(200, headers, replacement)
            case NextShortBody():
                declared = max(len(body), 1)
                sent = body[: declared // 2]
                self._record_delivery(request_id, 200, headers, declared, fault)
                connection.write_raw_then_close(
                    raw_response(200, headers, sent, declared_length=declared))
            case NextReset():
                head = raw_response(200, headers, b"", declared_length=len(body))
                self._record_delivery(request_id, 200, headers, len(body), fault)
                connection.write_raw_then_reset(head + body[: len(body) // 2])
            case _:
                raise AssertionError(f"unhandled /next fault {fault!r}")

    def _answer_without_event(self, connection: Connection, fault: NextFault) -> None:
        match fault:
            case NextStatus(status=status, body=body):
                body = default_error_body(status) if body is None else body
                self._record_delivery(None, status, JSON_HEADERS, len(body), fault)
                connection.answer(status, JSON_HEADERS, body)
            case NextReset(during="headers"):
                # Cut before Lambda-Runtime-Aws-Request-Id: no event is handed out.
                partial = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runt"
                self._record_delivery(None, 200, JSON_HEADERS, 0, fault)
                connection.write_raw_then_reset(partial.encode())
            case _:
                raise AssertionError(f"/next fault {fault!r} needs an event")

    # -- ending invocations -------------------------------------------------------

    def _expire(self) -> None:
        """Time out every invocation past its deadline; re-arm for the next one."""
        p = self._p
        self._expiry_timer = None
        now = p.loop.time()
        while p.in_flight:
            oldest = next(iter(p.in_flight.values()))
            if oldest.expires_at > now:
                self._expiry_timer = p.loop.call_at(oldest.expires_at, self._expire)
                return
            self._time_out(oldest)

    def cancel_timer(self) -> None:
        timer = self._expiry_timer
        if timer is not None:
            timer.cancel()

    def _time_out(self, invocation: Invocation) -> None:
        text = f"Task timed out after {self._p.config.timeout_s:.2f} seconds"
        stream = self._streams.get(invocation.request_id)
        if stream is not None:
            self.end_stream(stream, "timed_out", "Sandbox.Timedout", text)
            return
        result = InvokeResult(
            kind="timeout",
            status=200,
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "X-Amz-Function-Error": "Unhandled",
                "X-Amzn-RequestId": invocation.request_id,
            },
            body=text.encode(),
            request_id=invocation.request_id,
            invocation_id=invocation.invocation_id,
        )
        self._p.finish(invocation, "timed_out", result)  # 6

    def runtime_exited(self, reason: str) -> None:
        """The runtime process died: fail what it held (rules 3, 7, 11)."""
        p = self._p
        p.exit_reason = reason
        p.initialized = False
        for invocation in list(p.in_flight.values()):
            stream = self._streams.get(invocation.request_id)
            if stream is not None:
                message = _exit_message(invocation.request_id, reason)
                self.end_stream(stream, "exited", "Runtime.ExitError", message)
            else:
                p.finish(invocation, "exited", self.exit_result(invocation))

    def exit_result(self, invocation: Invocation) -> InvokeResult:
        message = _exit_message(invocation.request_id, self._p.exit_reason or "")
        body = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message})
        return InvokeResult(
            kind="exit",
            status=502,
            headers={"Content-Type": "application/json", "X-Amzn-RequestId": invocation.request_id},
            body=body.encode(),
            request_id=invocation.request_id,
            invocation_id=invocation.invocation_id,
        )

    def end_stream(self, stream: StreamingPost, state: State, error_type: str | None,
                   message: str | None, *, error_body: bytes | None = None,
                   caller_status: int | None = None) -> None:
        """End a streamed invocation in ``state``; an error goes to the caller as trailers."""
        if stream.ended:
            return
        stream.ended = True
        invocation = stream.invocation
        self._streams.pop(stream.request_id, None)
        if error_type is not None and error_body is None:
            error_body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
        collector = stream.collector
        kind: InvokeKind = (
            "response" if state == "responded" else "timeout" if state == "timed_out"
            else "exit" if state == "exited" else "error")
        if collector.head is None and not collector.http_integration:
            collector.finish()  # a plain stream's head needs no byte: 200 and its type
        if collector.head is None or (caller_status is not None and not stream.started_caller):
            # Nothing reached the caller yet: it gets an ordinary error answer.
            result = InvokeResult(
                kind=kind, status=caller_status or 502,
                headers={"Content-Type": "application/json",
                         "X-Amzn-RequestId": invocation.request_id,
                         "X-Amz-Function-Error": "Unhandled"},
                body=error_body or b"", request_id=invocation.request_id,
                invocation_id=invocation.invocation_id, streamed=True,
                chunk_count=collector.chunk_count, stream_bytes=collector.size,
                stream_sha256=collector.sha256, stream_error_type=error_type,
                stream_error_body=error_body)
            self._p.finish(invocation, state, result)
            return
        stream.begin_caller()
        trailers: dict[str, str] = {}
        if error_type is not None:
            trailers = {
                "Lambda-Runtime-Function-Error-Type": wire_text(error_type),
                "Lambda-Runtime-Function-Error-Body":
                    base64.b64encode(error_body or b"").decode("ascii"),
            }
        head = collector.head
        result = InvokeResult(
            kind=kind,
            status=head.status,
            headers={**dict(head.headers), "X-Amzn-RequestId": invocation.request_id},
            body=collector.body(),
            request_id=invocation.request_id,
            invocation_id=invocation.invocation_id,
            streamed=True,
            chunks=tuple(collector.chunks),
            chunk_count=collector.chunk_count,
            stream_bytes=collector.size,
            stream_sha256=collector.sha256,
            trailers=trailers,
            stream_error_type=error_type,
            stream_error_body=error_body if error_type is not None else None,
            caller_disconnected=stream.caller_disconnected or invocation.is_abandoned(),
        )
        self._p.finish(invocation, state, result)

    # -- /response and /error -------------------------------------------------------

    def _on_stream(self, connection: Connection, head: RequestHead,
                   request_id: str) -> BodySink:
        p = self._p
        fault = self._take_post_fault("response")
        invocation = p.in_flight.get(request_id)
        if isinstance(fault, PostStatus):
            body = default_error_body(fault.status) if fault.body is None else fault.body
            self.answer_post(connection, head, request_id, fault.status, body, fault, trailers={})
            return _Drain()
        if isinstance(fault, PostReset) and not fault.after_accept:
            self.record_answer(head, request_id, "response", None, fault, streamed=True,
                               trailers={})
            connection.write_raw_then_reset(b"")
            return _Drain()
        if invocation is None or request_id in self._streams:
            if invocation is None:
                status, body = self.late_post_answer(request_id, "response")
            else:  # 13: a second /response while the first streams
                status, body = 403, json_error(
                    "InvalidStateTransition", f"invocation {request_id} is already streaming "
                    "its response")
            self.answer_post(connection, head, request_id, status, body, fault, trailers={})
            return _Drain()
        stream = StreamingPost(self, connection, head, request_id, invocation, fault)
        if p.stream_reading is not None:
            connection.read_slowly(*p.stream_reading)
        invocation.state = "streaming"
        self._streams[request_id] = stream
        return stream

    def _on_post(self, connection: Connection, request: Request, request_id: str,
                 call: str) -> None:
        fault = self._take_post_fault(call)
        match fault:
            case PostHang(seconds=seconds):
                self._p.loop.call_later(
                    seconds, self._settle_post, connection, request, request_id, call, fault
                )
            case PostReset(after_accept=False):
                self.record_answer(request, request_id, call, None, fault, body=request.body)
                connection.write_raw_then_reset(b"")
            case _:
                self._settle_post(connection, request, request_id, call, fault)

    def _take_post_fault(self, call: str) -> PostFault | None:
        faults = self._p.post_faults
        for index, pending in enumerate(faults):
            fault = cast(PostFault, pending.fault)
            if fault.applies_to(call):
                pending.remaining -= 1
                if pending.remaining <= 0:
                    del faults[index]
                return fault
        return None

    def _settle_post(self, connection: Connection, request: Request, request_id: str,
                     call: str, fault: PostFault | None) -> None:
        invocation = self._p.in_flight.get(request_id)
        finish: tuple[State, InvokeResult] | None = None
        if isinstance(fault, PostStatus):
            status = fault.status
            body = default_error_body(status) if fault.body is None else fault.body
        else:
            status, body, finish = self._judge_post(invocation, request, request_id, call)
        if isinstance(fault, PostReset):  # after_accept=True: accepted, then reset
            self.record_answer(request, request_id, call, None, fault, body=request.body)
            connection.write_raw_then_reset(b"")
        else:
            self.record_answer(request, request_id, call, status, fault, body=request.body)
            connection.answer(status, JSON_HEADERS, body)
        if finish is not None and invocation is not None:
            self._p.finish(invocation, *finish)

    def late_post_answer(self, request_id: str, call: str) -> tuple[int, bytes]:
        """The answer to a post for an invocation not in flight (rule 8)."""
        ended = self._p.finished.get(request_id)
        if ended is None:
            message = f"unknown request id {request_id!r}: /next never gave it out"
            return 400, json_error("InvalidRequestID", message)
        if ended[0] == "timed_out":
            message = f"invocation {request_id} timed out; its {call} came too late"
            return 410, json_error("InvokeTimeout", message)
        message = f"invocation {request_id} has already ended ({ended[0]})"
        return 403, json_error("InvalidStateTransition", message)

    def _judge_post(self, invocation: Invocation | None, request: Request, request_id: str,
                    call: str) -> tuple[int, bytes, tuple[State, InvokeResult] | None]:
        """The status and body to answer a post with, and how it ends the invocation."""
        if invocation is None:  # 8
            return (*self.late_post_answer(request_id, call), None)
        if request_id in self._streams:  # 13: /error (or /response) after the stream began
            message = (f"invocation {request_id} has started streaming its response: "
                       f"{call} is no longer allowed")
            return 403, json_error("InvalidStateTransition", message), None
        size = len(request.body)
        if size > MAX_RESPONSE_BYTES:
            message = f"{call} body of {size} bytes exceeds the limit of {MAX_RESPONSE_BYTES}"
            return 413, json_error("RequestEntityTooLarge", message), None
        headers = {
            "Content-Type": request.headers.get("content-type") or "application/json",
            "X-Amzn-RequestId": request_id,
        }
        if call == "error":
            headers["X-Amz-Function-Error"] = "Unhandled"
        result = InvokeResult(
            kind="response" if call == "response" else "error",
            status=200,
            headers=headers,
            body=request.body,
            request_id=request_id,
            invocation_id=invocation.invocation_id,
        )
        return 202, _ACCEPTED, ("responded" if call == "response" else "errored", result)  # 4, 5

    def answer_post(self, connection: Connection, head: RequestHead, request_id: str,
                    status: int, body: bytes, fault: PostFault | None, *,
                    trailers: Mapping[str, str]) -> None:
        """Record and answer a streamed post (its body is not kept)."""
        self.record_answer(head, request_id, "response", status, fault, streamed=True,
                           trailers=trailers)
        connection.answer(status, JSON_HEADERS, body)

    # -- /init/error, /restore/next, /restore/error ------------------------------------

    def _on_init_error(self, connection: Connection, request: Request) -> None:
        p = self._p
        error_type = request.headers.get("lambda-runtime-function-error-type")
        status = 403 if p.init_complete else 202  # 12
        p.record_call("init/error", error_type, status)
        report = InitErrorReport(error_type=error_type, headers=request.headers,
                                 body=request.body, status=status)
        p.history.add_init_error(report)
        if status == 403:
            message = "init is over: the runtime already polled /next"
            connection.answer(403, JSON_HEADERS, json_error("InvalidStateTransition", message))
            return
        connection.answer(202, JSON_HEADERS, _ACCEPTED)
        self._fail_init("init_error", report)

    def _fail_init(self, kind: str, report: InitErrorReport | RestoreErrorReport) -> None:
        p = self._p
        if p.fatal is None:
            p.fatal = (kind, report)  # type: ignore[assignment]
        while p.queue:  # 2, 10
            invocation = p.queue.popleft()
            if not invocation.is_abandoned():
                p.finish(invocation, "init_failed", self.fatal_result(invocation))
        while p.polls:  # other pollers of a runtime whose init failed
            poll = p.polls.popleft()
            self._on_next(poll, Request("GET", NEXT_PATH, {}, b"", {}))

    def fatal_result(self, invocation: Invocation) -> InvokeResult:
        """The answer to an invoke after an init or restore error (rule 10)."""
        assert self._p.fatal is not None
        kind, report = self._p.fatal
        return InvokeResult(
            kind=kind,
            status=502,
            headers={
                "Content-Type": report.headers.get("content-type") or "application/json",
                "X-Amzn-RequestId": invocation.request_id,
            },
            body=report.body,
            request_id=invocation.request_id,
            invocation_id=invocation.invocation_id,
        )

    def _on_restore_next(self, connection: Connection, request: Request) -> None:
        p = self._p
        if not p.config.snap_start or self._restore_answered or p.initialized:
            p.record_call("restore/next", status=403)
            message = ("restore/next is for a SnapStart function, once, before /next"
                       if p.config.snap_start else "this function does not use SnapStart")
            connection.answer(403, JSON_HEADERS, json_error("InvalidStateTransition", message))
            return
        p.record_call("restore/next")
        self._restore_answered = True
        # The snapshot is taken now and restored after a pause: then restore/next answers.
        p.loop.call_later(p.config.restore_delay_s, self._restore, connection)

    def _restore(self, connection: Connection) -> None:
        p = self._p
        p.restored = True
        p.record_call("restored", status=200)
        connection.answer(200, (), b"")
        p.wake_init_waiters()
        self.dispatch()

    def _on_restore_error(self, connection: Connection, request: Request) -> None:
        p = self._p
        error_type = request.headers.get("lambda-runtime-function-error-type")
        allowed = p.config.snap_start and p.restored and not p.initialized
        status = 202 if allowed else 403
        p.record_call("restore/error", error_type, status)
        report = RestoreErrorReport(error_type=error_type, headers=request.headers,
                                    body=request.body, status=status)
        p.history.add_restore_error(report)
        if not allowed:
            message = "restore/error is for a restored SnapStart runtime, before /next"
            connection.answer(403, JSON_HEADERS, json_error("InvalidStateTransition", message))
            return
        connection.answer(202, JSON_HEADERS, _ACCEPTED)
        self._fail_init("restore_error", report)

    # -- records ---------------------------------------------------------------------

    def _record_delivery(self, request_id: str | None, status: int,
                         headers: Iterable[tuple[str, str]], body_size: int,
                         fault: NextFault | None) -> None:
        # Recorded before the answer is written, so a test that has read the
        # answer always finds its record.
        self._p.history.add_delivery(NextDelivery(
            request_id=request_id, status=status, headers=tuple(headers), body_size=body_size,
            fault=fault))

    def record_answer(self, request: Request | RequestHead, request_id: str, call: str,
                      status: int | None, fault: PostFault | None, *, body: bytes = b"",
                      streamed: bool = False, trailers: Mapping[str, str] | None = None) -> None:
        p = self._p
        invocation = p.in_flight.get(request_id)
        if invocation is not None:
            expected: str | None = invocation.invocation_id
        else:
            ended = p.finished.get(request_id)
            expected = ended[1] if ended is not None else None
        headers = request.headers
        p.history.add_answer(RuntimeAnswer(
            call="response" if call == "response" else "error",
            request_id=request_id,
            headers=headers,
            body=body,
            error_type=(trailers or {}).get(ERROR_TYPE_TRAILER)
            or headers.get("lambda-runtime-function-error-type"),
            invocation_id=headers.get("lambda-runtime-invocation-id"),
            expected_invocation_id=expected,
            status=status,
            fault=fault,
            streamed=streamed,
            trailers=dict(trailers or {}),
        ))


def _exit_message(request_id: str, reason: str) -> str:
    return f"RequestId: {request_id} Error: Runtime exited with error: {reason}"


def _uses_event(fault: NextFault) -> bool:
    """Whether a /next fault delivers (and so waits for) an invocation."""
    if isinstance(fault, NextStatus):
        return False
    return not (isinstance(fault, NextReset) and fault.during == "headers")


def _override(headers: list[tuple[str, str]],
              overrides: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """``headers`` with ``overrides`` applied by case-insensitive name; ``None`` removes.

    Overrides are sent as UTF-8: one code point per byte, like every header here.
    """
    by_name = {
        name.lower(): (wire_text(name), None if value is None else wire_text(value))
        for name, value in overrides.items()
    }
    result: list[tuple[str, str]] = []
    for name, value in headers:
        override = by_name.pop(name.lower(), None)
        if override is None:
            result.append((name, value))
        elif override[1] is not None:
            result.append((name, override[1]))
    result.extend((name, value) for name, value in by_name.values() if value is not None)
    return result


def _wrong_method(connection: Connection, method: str, allowed: str) -> BodySink:
    message = f"method {method[:20]} not allowed here; use {allowed}"
    headers = (*JSON_HEADERS, ("Allow", allowed))
    return BufferedBody(connection, RequestHead(method, "", {}),
                        lambda _request: connection.answer(
                            405, headers, json_error("MethodNotAllowed", message)))
