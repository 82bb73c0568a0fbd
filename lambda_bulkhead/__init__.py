"""lambda-bulkhead: a Python runtime for AWS Lambda that survives its own handlers.

The public API is imported lazily so that ``import lambda_bulkhead`` costs
almost nothing at cold start; see ``docs/api.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lambda_bulkhead._api import RuntimeApi
    from lambda_bulkhead._context import ClientContext, CognitoIdentity, Context, Invocation
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
    from lambda_bulkhead._loop import process_invocation, serve, start, start_json

_LAZY = {
    "RuntimeApi": "lambda_bulkhead._api",
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
    "process_invocation": "lambda_bulkhead._loop",
    "serve": "lambda_bulkhead._loop",
    "start": "lambda_bulkhead._loop",
    "start_json": "lambda_bulkhead._loop",
}

__all__ = [
    "BrokenEvent",
    "BulkheadError",
    "ClientContext",
    "CognitoIdentity",
    "ConfigError",
    "Context",
    "HandlerCrash",
    "InitError",
    "InvalidEndpoint",
    "InvalidEvent",
    "Invocation",
    "InvocationError",
    "MissingRequestId",
    "NotRunningInLambda",
    "RestartStorm",
    "RuntimeApi",
    "RuntimeApiError",
    "TransportError",
    "UnexpectedStatus",
    "__version__",
    "process_invocation",
    "serve",
    "start",
    "start_json",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lambda_bulkhead' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
