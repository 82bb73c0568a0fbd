"""Responses for HTTP triggers, and partial batch failures for SQS, Kinesis and DynamoDB.

A plain handler returns the wire form, ``to_dict()`` of a response::

    def handler(event, context):
        req = ApiGatewayV2Request.decode(event)
        return proxy_response(200, f"hello from {req.path}").to_dict()

    start_json(ApiGatewayV2Request.decode, handle, ProxyResponse.to_dict)

:class:`ProxyResponse` is a typed value, not a ``dict``, because each
integration wants the same response written differently; a dict subclass could
only hold one of those shapes.  The runtime JSON-encodes whatever a handler
returns, and a dataclass is not JSON: return ``resp.to_dict(...)`` (or pass
``ProxyResponse.to_dict`` as the encoder of a typed loop).

``to_dict(target)`` writes the response for one integration; the default,
``"api-gateway-v2"``, is the common case, and every request envelope names its
own (``req.response_target``):

- ``"api-gateway-v2"``, ``"function-url"`` (payload format 2.0): ``statusCode``,
  ``headers``, ``cookies``, ``body``, ``isBase64Encoded``.
- ``"api-gateway-v1"``: ``statusCode``, ``headers``, ``multiValueHeaders`` (for
  ``Set-Cookie``), ``body``, ``isBase64Encoded``.
- ``"alb"``: ``statusCode``, ``statusDescription`` (``"200 OK"``), ``headers``,
  ``body``, ``isBase64Encoded``; one cookie at most.
- ``"alb-multi-value"``: ``statusCode``, ``statusDescription``,
  ``multiValueHeaders``, ``body``, ``isBase64Encoded``.

``bytes`` bodies are base64-encoded and flagged ``isBase64Encoded: true``.

A streaming handler (a generator function) that answers a function URL or API
Gateway's response streaming yields an :class:`HttpPrelude` first: its status,
headers and cookies, sent as the body's JSON prelude and 8 NUL bytes, with the
content type ``application/vnd.awslambda.http-integration-response``
(see docs/api.md, "Response streaming")::

    def handler(event, context):
        yield HttpPrelude(200, {"content-type": "text/event-stream"})
        for token in generate():
            yield f"data: {token}\n\n"

``json`` and ``http`` are imported on first use to keep the import light.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from lambda_bulkhead import _streaming

__all__ = [
    "HttpPrelude",
    "ProxyResponse",
    "ResponseTarget",
    "batch_item_failures",
    "json_response",
    "proxy_response",
]

#: The status, headers and cookies of a streamed HTTP response (defined beside the
#: runtime, which sends it; see :class:`lambda_bulkhead._streaming.HttpPrelude`).
HttpPrelude = _streaming.HttpPrelude

ResponseTarget = Literal[
    "api-gateway-v1", "api-gateway-v2", "function-url", "alb", "alb-multi-value"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyResponse:
    """An HTTP response for API Gateway, function URLs or an ALB.

    ``cookies`` are ``Set-Cookie`` values (``"id=42; Path=/; HttpOnly"``).
    ``body`` is base64 text when ``is_base64_encoded``; :func:`proxy_response`
    does the encoding.
    """

    status_code: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: tuple[str, ...] = ()
    is_base64_encoded: bool = False

    def __post_init__(self) -> None:
        if not 100 <= self.status_code <= 599:
            raise ValueError(f"HTTP status must be 100-599, got {self.status_code!r}")

    def to_dict(self, target: ResponseTarget = "api-gateway-v2") -> dict[str, Any]:
        """The JSON-ready response for ``target`` (see the module docstring)."""
        wire: dict[str, Any] = {"statusCode": self.status_code}
        if target in ("api-gateway-v2", "function-url"):
            wire["headers"] = dict(self.headers)
            if self.cookies:
                wire["cookies"] = list(self.cookies)
        elif target == "api-gateway-v1":
            wire["headers"] = dict(self.headers)
            if self.cookies:
                wire["multiValueHeaders"] = {"Set-Cookie": list(self.cookies)}
        elif target == "alb":
            if len(self.cookies) > 1:
                raise ValueError(
                    "an ALB without multi-value headers sends one Set-Cookie at most; "
                    "turn multi-value headers on and use target 'alb-multi-value'"
                )
            wire["statusDescription"] = _status_description(self.status_code)
            wire["headers"] = dict(self.headers)
            if self.cookies:
                wire["headers"]["Set-Cookie"] = self.cookies[0]
        elif target == "alb-multi-value":
            wire["statusDescription"] = _status_description(self.status_code)
            multi: dict[str, list[str]] = {name: [value] for name, value in self.headers.items()}
            if self.cookies:
                multi.setdefault("Set-Cookie", []).extend(self.cookies)
            wire["multiValueHeaders"] = multi
        else:
            raise ValueError(
                f"unknown response target {target!r}: use one of {get_args(ResponseTarget)}"
            )
        wire["body"] = self.body
        wire["isBase64Encoded"] = self.is_base64_encoded
        return wire

    def to_json(self, target: ResponseTarget = "api-gateway-v2") -> str:
        """:meth:`to_dict` encoded as JSON text."""
        import json  # noqa: PLC0415  (lazy: see the module docstring)

        return json.dumps(self.to_dict(target))


def _status_description(status: int) -> str:
    from http import HTTPStatus  # noqa: PLC0415  (lazy: see the module docstring)

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def proxy_response(
    status: int,
    body: str | bytes = "",
    *,
    headers: Mapping[str, str] | None = None,
    cookies: str | Iterable[str] | None = None,
    is_base64: bool | None = None,
) -> ProxyResponse:
    """A response with ``body``; ``bytes`` are sent base64-encoded.

    ``is_base64`` overrides the default (``True`` for bytes, ``False`` for
    text): ``True`` with a ``str`` body says the text is base64 already;
    ``False`` with ``bytes`` sends them as UTF-8 text.  ``cookies`` takes one
    ``Set-Cookie`` value or several.
    """
    if isinstance(body, bytes):
        if is_base64 is False:
            text = body.decode()
        else:
            text = binascii.b2a_base64(body, newline=False).decode("ascii")
            is_base64 = True
    else:
        text = body
    return ProxyResponse(
        status_code=status,
        body=text,
        headers=dict(headers or {}),
        cookies=(cookies,) if isinstance(cookies, str) else tuple(cookies or ()),
        is_base64_encoded=bool(is_base64),
    )


def json_response(
    status: int,
    value: object,
    *,
    headers: Mapping[str, str] | None = None,
    cookies: str | Iterable[str] | None = None,
) -> ProxyResponse:
    """A response whose body is ``value`` as JSON, ``content-type: application/json``.

    A ``content-type`` in ``headers`` (any case) wins over the default.
    """
    import json  # noqa: PLC0415  (lazy: see the module docstring)

    merged = dict(headers or {})
    if not any(name.lower() == "content-type" for name in merged):
        merged["content-type"] = "application/json"
    return proxy_response(status, json.dumps(value), headers=merged, cookies=cookies)


def batch_item_failures(ids: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    """A partial batch response naming the items to retry; ``[]`` means all succeeded.

    Pass SQS ``message_id`` values, or the ``sequence_number`` of Kinesis and
    DynamoDB stream records.  The event source mapping must have
    ``ReportBatchItemFailures`` turned on, or Lambda ignores the answer.
    """
    if isinstance(ids, str):
        raise TypeError("batch_item_failures takes a collection of ids, not one str")
    return {"batchItemFailures": [{"itemIdentifier": item_id} for item_id in ids]}
