"""What one invocation is: its payload and its :class:`Context`.

The attribute names are the official Python runtime's, so a handler written for
it (``def handler(event, context)``) runs unchanged: ``aws_request_id``,
``function_name``, ``memory_limit_in_mb`` (a string, as there),
``client_context.client.app_title``, ``identity.cognito_identity_id``,
``get_remaining_time_in_millis()``, ...
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

from lambda_bulkhead._config import FunctionMeta
from lambda_bulkhead._errors import InvocationError
from lambda_bulkhead._record import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "W3C_FIELDS",
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


class Client:
    """The mobile client app, as ``context.client_context.client``."""

    __slots__ = (
        "app_package_name", "app_title", "app_version_code", "app_version_name", "installation_id",
    )

    def __init__(
        self,
        *,
        installation_id: str | None = None,
        app_title: str | None = None,
        app_version_name: str | None = None,
        app_version_code: str | None = None,
        app_package_name: str | None = None,
    ) -> None:
        self.installation_id = installation_id
        self.app_title = app_title
        self.app_version_name = app_version_name
        self.app_version_code = app_version_code
        self.app_package_name = app_package_name

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}([installation_id={self.installation_id},"
            f"app_title={self.app_title},app_version_name={self.app_version_name},"
            f"app_version_code={self.app_version_code},"
            f"app_package_name={self.app_package_name}])"
        )


class ClientContext:
    """``context.client_context``: set for invocations from the AWS Mobile SDK
    (``None`` when the invocation has no client context, as in the official runtime)."""

    __slots__ = ("client", "custom", "env")

    def __init__(
        self, *, client: Client | None = None, custom: Any = None, env: Any = None
    ) -> None:
        self.client = client
        self.custom = custom
        self.env = env

    def __repr__(self) -> str:
        return f"{type(self).__name__}([custom={self.custom},env={self.env},client={self.client}])"


class CognitoIdentity:
    """``context.identity``: the Amazon Cognito identity of the caller.  Always an
    object; its fields are None when the invocation has no Cognito identity."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(
        self, *, cognito_identity_id: str | None = None, cognito_identity_pool_id: str | None = None
    ) -> None:
        self.cognito_identity_id = cognito_identity_id
        self.cognito_identity_pool_id = cognito_identity_pool_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


#: The W3C trace-context fields ``context.w3c()`` returns, as in the official runtime.
W3C_FIELDS = ("traceparent", "tracestate", "baggage")


class Context:
    """The context a handler receives beside its event: the official runtime's
    ``LambdaContext``, attribute for attribute and type for type.

    A plain object, as there: libraries may set attributes of their own on it
    (``setattr(context, "x", 1)``), and ``vars(context)`` lists the official
    instance attributes, in the official order, then this runtime's two extras
    (``trace_id``, ``invocation_id``).  Read-only extras, not in ``vars()``:
    ``deadline_ms`` (the official private ``_epoch_deadline_time_in_ms``) and the
    seed API's names ``request_id`` and ``cognito_identity``.
    """

    def __init__(
        self,
        aws_request_id: str,
        deadline_ms: int = 0,
        invoked_function_arn: str | None = None,
        *,
        client_context: ClientContext | None = None,
        identity: CognitoIdentity | None = None,
        tenant_id: str | None = None,
        trace_id: str | None = None,
        invocation_id: str | None = None,
        function_name: str | None = None,
        function_version: str | None = None,
        memory_limit_in_mb: str | None = None,
        log_group_name: str | None = None,
        log_stream_name: str | None = None,
        w3c: Mapping[str, str] | None = None,
    ) -> None:
        # The official runtime's attributes, in its order (vars(context) shows it).
        self.aws_request_id = aws_request_id
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self._w3c_fields: dict[str, str] = dict(w3c or {})
        self.client_context = client_context
        self.identity = CognitoIdentity() if identity is None else identity
        self._epoch_deadline_time_in_ms = deadline_ms
        # This runtime's extras: the X-Ray header of this invocation (the
        # _X_AMZN_TRACE_ID variable is per process, shared by in-process loop
        # threads) and the Runtime API's per-invoke nonce.
        self.trace_id = trace_id
        self.invocation_id = invocation_id

    @property
    def deadline_ms(self) -> int:
        """The invocation's deadline in epoch milliseconds (0: none known)."""
        return self._epoch_deadline_time_in_ms

    @property
    def request_id(self) -> str:
        """The seed API's name for :attr:`aws_request_id`."""
        return self.aws_request_id

    @property
    def cognito_identity(self) -> CognitoIdentity:
        """The seed API's name for :attr:`identity`."""
        return self.identity

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the deadline (0 when past it)."""
        return max(0, self._epoch_deadline_time_in_ms - int(time.time() * 1000))

    def w3c(self) -> dict[str, str]:
        """The W3C trace context the invoke carried in its client context's
        ``w3c`` object: ``traceparent``, ``tracestate``, ``baggage`` (strings only)."""
        return dict(self._w3c_fields)

    def log(self, msg: object) -> None:
        """Write ``str(msg)`` to the function's log as it is (no newline added), as
        the official runtime's ``context.log`` does outside its telemetry fd."""
        sys.stdout.write(str(msg))
        sys.stdout.flush()  # the official runtime's stdout is unbuffered

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )


def build_context(invocation: Invocation, meta: FunctionMeta) -> Context:
    """The handler's :class:`Context` for ``invocation``.

    Raises :class:`InvocationError` (``Runtime.UnmarshalError``) when the client
    context or Cognito identity header is not a JSON object: the official runtime
    fails such an invocation too, and a silently missing identity is worse.
    """
    client_context, w3c = None, None
    if invocation.client_context:
        raw = _json_object("Lambda-Runtime-Client-Context", invocation.client_context)
        w3c = _w3c_fields(raw.pop("w3c", None))
        client_context = _client_context(raw)
    return Context(
        invocation.request_id,
        invocation.deadline_ms,
        invocation.invoked_function_arn or None,
        client_context=client_context,
        identity=_identity(invocation.cognito_identity) if invocation.cognito_identity else None,
        tenant_id=invocation.tenant_id,
        trace_id=invocation.trace_id,
        invocation_id=invocation.invocation_id,
        function_name=meta.function_name,
        function_version=meta.function_version,
        memory_limit_in_mb=meta.memory_limit_in_mb,
        log_group_name=meta.log_group_name,
        log_stream_name=meta.log_stream_name,
        w3c=w3c,
    )


def _w3c_fields(raw: object) -> dict[str, str]:
    """The allow-listed string fields of a client context's ``w3c`` object."""
    if not isinstance(raw, dict):
        return {}
    return {key: raw[key] for key in W3C_FIELDS if isinstance(raw.get(key), str)}


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


def _client_context(raw: dict[str, Any]) -> ClientContext:
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
