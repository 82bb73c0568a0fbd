"""API Gateway (REST and HTTP APIs), function URL and Application Load Balancer
requests.  Part of :mod:`lambda_bulkhead.events`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from lambda_bulkhead.events._decode import (
    JsonObject,
    decode_base64,
    encode_utf8,
    field_error,
    parse_json,
    parse_query_string,
    url_unquote,
)

if TYPE_CHECKING:
    from lambda_bulkhead.responses import ResponseTarget

__all__ = [
    "AlbRequest",
    "ApiGatewayV1Request",
    "ApiGatewayV2Request",
    "FunctionUrlRequest",
    "Headers",
    "HttpRequest",
    "QueryParams",
]


class QueryParams(Mapping[str, str]):
    """Immutable query-string parameters, where a name may repeat.

    ``params[name]`` is the last value, as the single-value
    ``queryStringParameters`` of API Gateway REST and the ALB hold it;
    :meth:`get_all` gives every value in order.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str | Iterable[str]] | None = None) -> None:
        merged: dict[str, tuple[str, ...]] = {}
        for name, value in (values or {}).items():
            key = self._key(name)
            merged[key] = merged.get(key, ()) + (
                (value,) if isinstance(value, str) else tuple(value)
            )
        self._values = {key: items for key, items in merged.items() if items}

    @staticmethod
    def _key(name: str) -> str:
        return name

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of ``name`` in order; empty when absent."""
        return self._values.get(self._key(name), ())

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        return self._values[self._key(name)][-1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QueryParams):
            return type(other) is type(self) and self._values == other._values
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"


class Headers(QueryParams):
    """Immutable, case-insensitive HTTP headers; names iterate lower-cased.

    ``headers[name]`` is the last value; :meth:`get_all` gives every value.
    HTTP API (payload 2.0) and function URLs join repeated headers with commas
    into one value before Lambda sees them.
    """

    __slots__ = ()

    @staticmethod
    def _key(name: str) -> str:
        return name.lower()


def _parse_cookies(pairs: Iterable[str]) -> dict[str, str]:
    """``name=value`` pairs from Cookie headers or HTTP API's ``cookies``.

    The first of two same-named cookies wins: browsers send the one with the
    most specific path first.
    """
    cookies: dict[str, str] = {}
    for header in pairs:
        for pair in header.split(";"):
            name, equals, value = pair.partition("=")
            if equals and name.strip():
                cookies.setdefault(name.strip(), value.strip())
    return cookies


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest(ABC):
    """What every HTTP trigger carries; the base of the four request envelopes.

    ``path`` is the request path as the client sent it (``rawPath`` in payload
    2.0).  ``body`` is the string the integration delivered; use
    :meth:`decoded_body` for the bytes whatever ``is_base64_encoded`` says.
    """

    method: str
    path: str
    headers: Headers = field(default_factory=Headers)
    query_params: QueryParams = field(default_factory=QueryParams)
    cookies: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    is_base64_encoded: bool = False
    request_context: Mapping[str, Any] = field(default_factory=dict)

    @property
    @abstractmethod
    def response_target(self) -> ResponseTarget:
        """The ``target`` to give :meth:`ProxyResponse.to_dict` when answering this request."""

    def decoded_body(self) -> bytes:
        """The body as bytes, base64-decoded when flagged so; ``b""`` when there is none."""
        if self.body is None:
            return b""
        if self.is_base64_encoded:
            return decode_base64(self.body, type(self).__name__, "body")
        return encode_utf8(self.body, type(self).__name__, "body")

    def json(self) -> Any:
        """The body parsed as JSON."""
        if self.body is None:
            raise field_error(type(self).__name__, "body", "missing")
        document = self.decoded_body() if self.is_base64_encoded else self.body
        return parse_json(document, type(self).__name__, "body")


@dataclass(frozen=True, slots=True, kw_only=True)
class _ApiGatewayRequest(HttpRequest):
    """What both API Gateway payload formats carry beside the HTTP request."""

    path_params: Mapping[str, str] = field(default_factory=dict)
    stage_variables: Mapping[str, str] = field(default_factory=dict)
    request_id: str | None = None
    stage: str | None = None
    source_ip: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiGatewayV1Request(_ApiGatewayRequest):
    """An API Gateway REST API proxy event (payload format 1.0).

    Headers and query parameters come from ``multiValueHeaders`` and
    ``multiValueQueryStringParameters`` when present (they hold every value),
    else from their single-value forms.  Cookies are parsed from the Cookie
    header.  Required: ``httpMethod``, ``path``.
    """

    resource: str | None = None

    @property
    def response_target(self) -> ResponseTarget:
        """Always ``"api-gateway-v1"``."""
        return "api-gateway-v1"

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode a REST API proxy event."""
        obj = JsonObject(cls.__name__, event)
        single_headers = obj.text_map("headers")
        multi_headers = obj.text_list_map("multiValueHeaders")
        headers = Headers(multi_headers or single_headers)
        single_query = obj.text_map("queryStringParameters")
        multi_query = obj.text_list_map("multiValueQueryStringParameters")
        context = obj.optional_child("requestContext")
        identity = context.optional_child("identity") if context else None
        return cls(
            method=obj.text("httpMethod"),
            path=obj.text("path"),
            headers=headers,
            query_params=QueryParams(multi_query or single_query),
            cookies=_parse_cookies(headers.get_all("cookie")),
            body=obj.optional_text("body"),
            is_base64_encoded=obj.flag("isBase64Encoded"),
            request_context=context.fields if context else {},
            resource=obj.optional_text("resource"),
            path_params=obj.text_map("pathParameters"),
            stage_variables=obj.text_map("stageVariables"),
            request_id=context.optional_text("requestId") if context else None,
            stage=context.optional_text("stage") if context else None,
            source_ip=identity.optional_text("sourceIp") if identity else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiGatewayV2Request(_ApiGatewayRequest):
    """An API Gateway HTTP API event (payload format 2.0).

    ``query_params`` is parsed from ``rawQueryString`` so repeated parameters
    keep every value (``queryStringParameters`` joins them with commas); it
    falls back to ``queryStringParameters`` when the raw string is empty.
    Required: ``rawPath``, ``requestContext.http.method``.
    """

    route_key: str | None = None
    raw_query_string: str = ""

    @property
    def response_target(self) -> ResponseTarget:
        """Always ``"api-gateway-v2"``."""
        return "api-gateway-v2"

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode a payload format 2.0 event."""
        obj = JsonObject(cls.__name__, event)
        context = obj.child("requestContext")
        http = context.child("http")
        raw_query = obj.optional_text("rawQueryString") or ""
        single_query = obj.text_map("queryStringParameters")
        return cls(
            method=http.text("method"),
            path=obj.text("rawPath"),
            headers=Headers(obj.text_map("headers")),
            query_params=QueryParams(parse_query_string(raw_query) if raw_query else single_query),
            cookies=_parse_cookies(obj.text_list("cookies")),
            body=obj.optional_text("body"),
            is_base64_encoded=obj.flag("isBase64Encoded"),
            request_context=context.fields,
            route_key=obj.optional_text("routeKey"),
            raw_query_string=raw_query,
            path_params=obj.text_map("pathParameters"),
            stage_variables=obj.text_map("stageVariables"),
            request_id=context.optional_text("requestId"),
            stage=context.optional_text("stage"),
            source_ip=http.optional_text("sourceIp"),
        )


class FunctionUrlRequest(ApiGatewayV2Request):
    """A Lambda function URL event: payload format 2.0 under its own name.

    ``route_key`` and ``stage`` are ``"$default"``; there are no path
    parameters or stage variables.
    """

    # Still a frozen, slotted dataclass through its base; it adds no field, and
    # decorating it again would only cost import time.
    __slots__ = ()

    @property
    def response_target(self) -> ResponseTarget:
        """Always ``"function-url"``."""
        return "function-url"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlbRequest(HttpRequest):
    """An Application Load Balancer event, in either headers mode.

    ``multi_value`` says whether the target group has multi-value headers on
    (the event has ``multiValueHeaders``); the response must then use the
    ``"alb-multi-value"`` target, which :attr:`response_target` picks.  The ALB
    passes query parameters as the client encoded them; they are URL-decoded
    here like every other trigger's.  Required: ``httpMethod``, ``path``.
    """

    multi_value: bool = False
    target_group_arn: str | None = None

    @property
    def response_target(self) -> ResponseTarget:
        """``"alb-multi-value"`` or ``"alb"``, following the event's headers mode."""
        return "alb-multi-value" if self.multi_value else "alb"

    @classmethod
    def decode(cls, event: object) -> Self:
        """Decode an ALB target group event."""
        obj = JsonObject(cls.__name__, event)
        multi_value = obj.fields.get("multiValueHeaders") is not None
        single_headers = obj.text_map("headers")
        multi_headers = obj.text_list_map("multiValueHeaders")
        headers = Headers(multi_headers if multi_value else single_headers)
        single_query = obj.text_map("queryStringParameters")
        multi_query = obj.text_list_map("multiValueQueryStringParameters")
        query: Mapping[str, str | Iterable[str]] = multi_query if multi_value else single_query
        context = obj.optional_child("requestContext")
        elb = context.optional_child("elb") if context else None
        return cls(
            method=obj.text("httpMethod"),
            path=obj.text("path"),
            headers=headers,
            query_params=QueryParams(_unquote_query(query)),
            cookies=_parse_cookies(headers.get_all("cookie")),
            body=obj.optional_text("body"),
            is_base64_encoded=obj.flag("isBase64Encoded"),
            request_context=context.fields if context else {},
            multi_value=multi_value,
            target_group_arn=elb.optional_text("targetGroupArn") if elb else None,
        )


def _unquote_query(query: Mapping[str, str | Iterable[str]]) -> dict[str, list[str]]:
    unquoted: dict[str, list[str]] = {}
    for name, values in query.items():
        items = [values] if isinstance(values, str) else values
        unquoted.setdefault(url_unquote(name), []).extend(url_unquote(v) for v in items)
    return unquoted
