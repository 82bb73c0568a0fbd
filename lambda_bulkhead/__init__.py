"""lambda-bulkhead: a Python runtime for AWS Lambda that survives its own handlers.

The public API is imported lazily so that ``import lambda_bulkhead`` costs
almost nothing at cold start; see ``docs/api.md``.
"""

from __future__ import annotations

from lambda_bulkhead._lazy import lazy_exports

TYPE_CHECKING = False

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lambda_bulkhead._context import (
        Client,
        ClientContext,
        CognitoIdentity,
        Context,
        Invocation,
    )
    from lambda_bulkhead._errors import (
        BrokenEvent,
        BulkheadError,
        ConfigError,
        HandlerCrash,
        InitError,
        InvalidEndpoint,
        InvalidEvent,
        InvocationError,
        MissingRequestId,
        NotRunningInLambda,
        RestartStorm,
        RuntimeApiError,
        TransportError,
        UnexpectedStatus,
    )
    from lambda_bulkhead._runtime import start, start_json
    from lambda_bulkhead.handler._handler import Answer
    from lambda_bulkhead.handler._hooks import on_worker_end, on_worker_start
    from lambda_bulkhead.runtime_api._client import RuntimeApi
    from lambda_bulkhead.runtime_api._loop import Executor, process_invocation, serve
    from lambda_bulkhead.runtime_api._protocol import PostOutcome, Request, Response
    from lambda_bulkhead.runtime_api._stream import ResponseStream
    from lambda_bulkhead.runtime_api._transport import Transport

_LAZY = {
    "RuntimeApi": "lambda_bulkhead.runtime_api._client",
    "Transport": "lambda_bulkhead.runtime_api._transport",
    "Client": "lambda_bulkhead._context",
    "Answer": "lambda_bulkhead.handler._handler",
    "Executor": "lambda_bulkhead.runtime_api._loop",
    "PostOutcome": "lambda_bulkhead.runtime_api._protocol",
    "Request": "lambda_bulkhead.runtime_api._protocol",
    "Response": "lambda_bulkhead.runtime_api._protocol",
    "ResponseStream": "lambda_bulkhead.runtime_api._stream",
    "ClientContext": "lambda_bulkhead._context",
    "CognitoIdentity": "lambda_bulkhead._context",
    "Context": "lambda_bulkhead._context",
    "Invocation": "lambda_bulkhead._context",
    "BrokenEvent": "lambda_bulkhead._errors",
    "BulkheadError": "lambda_bulkhead._errors",
    "ConfigError": "lambda_bulkhead._errors",
    "HandlerCrash": "lambda_bulkhead._errors",
    "InitError": "lambda_bulkhead._errors",
    "InvalidEndpoint": "lambda_bulkhead._errors",
    "InvalidEvent": "lambda_bulkhead._errors",
    "InvocationError": "lambda_bulkhead._errors",
    "MissingRequestId": "lambda_bulkhead._errors",
    "NotRunningInLambda": "lambda_bulkhead._errors",
    "RestartStorm": "lambda_bulkhead._errors",
    "RuntimeApiError": "lambda_bulkhead._errors",
    "TransportError": "lambda_bulkhead._errors",
    "UnexpectedStatus": "lambda_bulkhead._errors",
    "on_worker_end": "lambda_bulkhead.handler._hooks",
    "on_worker_start": "lambda_bulkhead.handler._hooks",
    "process_invocation": "lambda_bulkhead.runtime_api._loop",
    "serve": "lambda_bulkhead.runtime_api._loop",
    "start": "lambda_bulkhead._runtime",
    "start_json": "lambda_bulkhead._runtime",
}

__all__ = [
    "Answer",
    "BrokenEvent",
    "BulkheadError",
    "Client",
    "ClientContext",
    "CognitoIdentity",
    "ConfigError",
    "Context",
    "Executor",
    "HandlerCrash",
    "InitError",
    "InvalidEndpoint",
    "InvalidEvent",
    "Invocation",
    "InvocationError",
    "MissingRequestId",
    "NotRunningInLambda",
    "PostOutcome",
    "Request",
    "Response",
    "ResponseStream",
    "RestartStorm",
    "RuntimeApi",
    "RuntimeApiError",
    "Transport",
    "TransportError",
    "UnexpectedStatus",
    "__version__",
    "on_worker_end",
    "on_worker_start",
    "process_invocation",
    "serve",
    "start",
    "start_json",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
