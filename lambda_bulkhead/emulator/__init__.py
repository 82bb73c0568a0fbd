"""A local stand-in for the AWS Lambda Runtime API, for tests and local runs.

One loopback HTTP/1.1 server (keep-alive) speaks the Runtime API
(``/2018-06-01/runtime/...``) to a runtime and, on the same port, the Runtime
Interface Emulator's invoke endpoint (``POST /2015-03-31/functions/function/invocations``)
to callers::

    from lambda_bulkhead.emulator import Emulator, NextStatus

    with Emulator(timeout_s=3.0) as emu:
        # start the runtime with emu.function_env() in its environment, then:
        result = emu.invoke(b'{"x": 1}', timeout=10)
        assert result.kind == "response"
        emu.inject(NextStatus(status=500))      # the next /next answers 500

See ``docs/emulator.md`` for every answer and the fault-injection API.
"""

from lambda_bulkhead.emulator._emulator import Emulator, InvokeStream
from lambda_bulkhead.emulator._faults import (
    NextBody,
    NextFault,
    NextHeaders,
    NextPastDeadline,
    NextRequestId,
    NextReset,
    NextShortBody,
    NextStatus,
    PostCall,
    PostFault,
    PostHang,
    PostReset,
    PostStatus,
)
from lambda_bulkhead.emulator._records import (
    ApiCall,
    ExtensionInfo,
    InitErrorReport,
    InvokeKind,
    InvokeResult,
    NextDelivery,
    RestoreErrorReport,
    RuntimeAnswer,
    ShutdownReport,
    StreamChunk,
)
from lambda_bulkhead.emulator._server import MAX_RESPONSE_BYTES
from lambda_bulkhead.emulator._streaming import MAX_STREAM_BYTES

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_STREAM_BYTES",
    "ApiCall",
    "Emulator",
    "ExtensionInfo",
    "InitErrorReport",
    "InvokeKind",
    "InvokeResult",
    "InvokeStream",
    "NextBody",
    "NextDelivery",
    "NextFault",
    "NextHeaders",
    "NextPastDeadline",
    "NextRequestId",
    "NextReset",
    "NextShortBody",
    "NextStatus",
    "PostCall",
    "PostFault",
    "PostHang",
    "PostReset",
    "PostStatus",
    "RestoreErrorReport",
    "RuntimeAnswer",
    "ShutdownReport",
    "StreamChunk",
]
