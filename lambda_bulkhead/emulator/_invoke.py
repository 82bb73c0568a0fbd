"""The invoke endpoint (``POST /2015-03-31/functions/function/invocations``), as the RIE has it.

A buffered answer goes back as one HTTP response.  A streamed one goes back as a
function URL sends it: the status and headers (from the prelude of an HTTP
integration response), then each chunk as the runtime sends it, chunked; an
error that ends the stream arrives as the trailers
``Lambda-Runtime-Function-Error-Type`` and ``Lambda-Runtime-Function-Error-Body``
(base64 of the error JSON).  When the caller reads slowly, the emulator stops
reading the runtime's stream until it catches up (back-pressure end to end).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable

from lambda_bulkhead.emulator._records import InvokeResult
from lambda_bulkhead.emulator._state import Invocation, Platform
from lambda_bulkhead.emulator._wire import (
    BodySink,
    BufferedBody,
    Connection,
    Request,
    RequestHead,
    json_error,
)

__all__ = ["INVOKE_PREFIX", "InvokeRoutes"]

INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"
_JSON = (("Content-Type", "application/json"),)


class HttpCaller:
    """An HTTP caller of the invoke endpoint: gets a streamed answer as it comes."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._source: Connection | None = None
        self.streaming = False
        connection.on_writable = self._writable

    def begin(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.streaming = True
        self._connection.start_stream(status, headers)

    def body(self, data: bytes) -> None:
        self._connection.send_chunk(data)

    def set_source(self, source: Connection | None) -> None:
        self._source = source
        if source is not None and not self._connection.writable:
            source.pause_reading(True)

    def _writable(self, writable: bool) -> None:
        if self._source is not None:
            self._source.pause_reading(not writable)

    def done(self, result: InvokeResult) -> None:
        self._connection.on_writable = None
        if self._source is not None:
            self._source.pause_reading(False)
            self._source = None
        if self.streaming:
            self._connection.end_stream(result.trailers.items())
        else:
            self._connection.answer(result.status, result.headers.items(), result.body)


class InvokeRoutes:
    """Turns invoke requests into invocations."""

    def __init__(self, platform: Platform, submit: Callable[[Invocation], None]) -> None:
        self._p = platform
        self._submit = submit

    def route(self, connection: Connection, head: RequestHead) -> BodySink | None:
        path = head.path
        if not (path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX)):
            return None
        if path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)] not in ("function", self._p.config.name):
            return None
        if head.method != "POST":
            message = f"method {head.method[:20]} not allowed here; use POST"
            return BufferedBody(connection, head, lambda _request: connection.answer(
                405, (*_JSON, ("Allow", "POST")), json_error("MethodNotAllowed", message)))
        return BufferedBody(connection, head, lambda request: self._on_invoke(connection, request))

    def _on_invoke(self, connection: Connection, request: Request) -> None:
        headers = request.headers
        try:
            client_context = _decode_client_context(headers.get("x-amz-client-context"))
        except ValueError as exc:
            connection.answer(400, _JSON, json_error("InvalidRequestContentException", str(exc)))
            return
        content_type = headers.get("content-type", "")
        # curl -d sends a form content type; Lambda's Invoke API has only JSON payloads.
        if not content_type or content_type.startswith("application/x-www-form-urlencoded"):
            content_type = "application/json"
        caller = HttpCaller(connection)
        invocation = Invocation(
            payload=request.body,
            content_type=content_type,
            client_context=client_context,
            cognito_identity=None,
            trace_id=headers.get("x-amzn-trace-id"),
            tenant_id=headers.get("x-amz-tenant-id"),
            on_done=caller.done,
            is_abandoned=connection.is_closed,
            on_cancel=connection.abort,
            keep_chunks=False,  # the caller has the bytes; the record keeps counts
            listener=caller,
        )
        self._submit(invocation)


def _decode_client_context(value: str | None) -> str | None:
    """``X-Amz-Client-Context`` (base64 of a JSON object) as the JSON text /next sends."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError("X-Amz-Client-Context is not valid base64") from exc
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ValueError("X-Amz-Client-Context is not base64 of JSON") from exc
    if isinstance(parsed, dict):
        # The wire bytes as they came, one code point per byte (see _wire).
        return raw.decode("latin-1")
    raise ValueError("X-Amz-Client-Context is not base64 of a JSON object")
