"""What one invocation is: its payload and its :class:`Context`.

The attribute names are the official Python runtime's, so a handler written for
it (``def handler(event, context)``) runs unchanged: ``aws_request_id``,
``function_name``, ``memory_limit_in_mb`` (a string, as there),
``client_context.client.app_title``, ``identity.cognito_identity_id``,
``get_remaining_time_in_millis()``, ...
"""

from __future__ import annotations

import time

from lambda_bulkhead._config import FunctionMeta
from lambda_bulkhead._errors import InvocationError
from lambda_bulkhead._record import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Client",
    "ClientContext",
    "CognitoIdentity",
    "Context",
    "FunctionMeta",
    "Invocation",
    "build_context",
]


class Invocation(NamedTuple):
    """The answer of ``/next``: the raw event and what its headers said.

    The payload is bytes: the runtime does not assume JSON or UTF-8.
    ``client_context`` and ``cognito_identity`` are the raw header texts.
    """

    request_id: str
    payload: bytes
    deadline_ms: int = 0
    invoked_function_arn: str = ""
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None
    tenant_id: str | None = None
    invocation_id: str | None = None
    content_type: str | None = None


class Client(NamedTuple):
    """The mobile client app, as ``context.client_context.client``."""

    installation_id: str | None = None
    app_title: str | None = None
    app_version_name: str | None = None
    app_version_code: str | None = None
    app_package_name: str | None = None


class ClientContext(NamedTuple):
    """``context.client_context``: set for invocations from the AWS Mobile SDK."""

    client: Client | None = None
    custom: Any = None
    env: Any = None


class CognitoIdentity(NamedTuple):
    """``context.identity``: the Amazon Cognito identity of the caller."""

    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


class Context(NamedTuple):
    """The context a handler receives beside its event."""

    aws_request_id: str
    deadline_ms: int
    invoked_function_arn: str
    trace_id: str | None = None
    client_context: ClientContext | None = None
    identity: CognitoIdentity | None = None
    tenant_id: str | None = None
    invocation_id: str | None = None
    function_name: str | None = None
    function_version: str | None = None
    memory_limit_in_mb: str | None = None
    log_group_name: str | None = None
    log_stream_name: str | None = None

    @property
    def request_id(self) -> str:
        """The seed API's name for :attr:`aws_request_id`."""
        return self.aws_request_id

    @property
    def cognito_identity(self) -> CognitoIdentity | None:
        """The seed API's name for :attr:`identity`."""
        return self.identity

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the deadline (0 when past it)."""
        return max(0, self.deadline_ms - int(time.time() * 1000))


def build_context(invocation: Invocation, meta: FunctionMeta) -> Context:
    """The handler's :class:`Context` for ``invocation``.

    Raises :class:`InvocationError` (``Runtime.UnmarshalError``) when the client
    context or Cognito identity header is not a JSON object: the official runtime
    fails such an invocation too, and a silently missing identity is worse.
    """
    return Context(
        aws_request_id=invocation.request_id,
        deadline_ms=invocation.deadline_ms,
        invoked_function_arn=invocation.invoked_function_arn,
        trace_id=invocation.trace_id,
        client_context=(
            _client_context(invocation.client_context) if invocation.client_context else None
        ),
        identity=_identity(invocation.cognito_identity) if invocation.cognito_identity else None,
        tenant_id=invocation.tenant_id,
        invocation_id=invocation.invocation_id,
        function_name=meta.function_name,
        function_version=meta.function_version,
        memory_limit_in_mb=meta.memory_limit_in_mb,
        log_group_name=meta.log_group_name,
        log_stream_name=meta.log_stream_name,
    )


def _json_object(header: str, text: str) -> dict[str, Any]:
    try:
        import json  # noqa: PLC0415 - only for these headers: json costs the supervisor ~5 ms

        value = json.loads(text)
    except ValueError as exc:
        raise InvocationError(
            "Runtime.UnmarshalError", f"Unable to unmarshal {header}: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise InvocationError(
            "Runtime.UnmarshalError", f"Unable to unmarshal {header}: not a JSON object"
        )
    return value


def _client_context(text: str) -> ClientContext:
    raw = _json_object("Lambda-Runtime-Client-Context", text)
    client = raw.get("client")
    return ClientContext(
        client=_client(client) if isinstance(client, dict) else None,
        custom=raw.get("custom"),
        env=raw.get("env"),
    )


def _client(raw: dict[str, Any]) -> Client:
    return Client(
        installation_id=raw.get("installation_id"),
        app_title=raw.get("app_title"),
        app_version_name=raw.get("app_version_name"),
        app_version_code=raw.get("app_version_code"),
        app_package_name=raw.get("app_package_name"),
    )


def _identity(text: str) -> CognitoIdentity:
    raw = _json_object("Lambda-Runtime-Cognito-Identity", text)
    return CognitoIdentity(
        cognito_identity_id=raw.get("cognitoIdentityId"),
        cognito_identity_pool_id=raw.get("cognitoIdentityPoolId"),
    )
