"""Reading parsed JSON into typed values, naming the field that does not fit.

Every reader here either returns a value of the promised type or raises
:class:`~lambda_bulkhead._errors.InvalidEvent` worded as::

    <envelope>: field '<path>' <problem>
    ApiGatewayV2Request: field 'requestContext.http.method' missing
    SqsEvent: field 'Records[2].body' must be a string, got number

``<path>`` spells the field the way AWS documents it: keys joined by dots, list
positions in brackets.  This module is the one place where ``KeyError``,
``TypeError``, ``binascii.Error``, Unicode, JSON and gzip errors are turned
into ``InvalidEvent``; nothing else in the events module catches them.

``json``, ``gzip``, ``zlib`` and ``urllib.parse`` are imported on first use:
a cold start pays for every module imported up front, and most handlers only
ever need one of them.
"""

from __future__ import annotations

import binascii
from typing import Any

from lambda_bulkhead._errors import InvalidEvent

_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type, as error messages spell it."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def field_error(envelope: str, path: str, problem: str) -> InvalidEvent:
    """The error for the field at ``path`` of ``envelope``."""
    return InvalidEvent(f"{envelope}: field '{path}' {problem}")


def _mistyped(envelope: str, path: str, expected: str, value: object) -> InvalidEvent:
    return field_error(envelope, path, f"must be {expected}, got {json_type(value)}")


class JsonObject:
    """A JSON object of ``envelope`` found at ``path``, read one field at a time.

    Required readers raise when the key is absent (``missing``) or of another
    type, ``null`` included.  Optional readers treat an absent key and ``null``
    alike, as AWS sends either for "not there".
    """

    __slots__ = ("envelope", "fields", "path")

    def __init__(self, envelope: str, value: object, path: str = "") -> None:
        if not isinstance(value, dict):
            if path:
                raise _mistyped(envelope, path, "an object", value)
            raise InvalidEvent(f"{envelope}: event must be a JSON object, got {json_type(value)}")
        self.envelope = envelope
        self.fields: dict[str, object] = value
        self.path = path

    def path_of(self, key: str) -> str:
        """The dotted path of ``key`` inside this object."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> InvalidEvent:
        """The error for ``key`` (a key or a ``key.sub[0]`` suffix) of this object."""
        return field_error(self.envelope, self.path_of(key), problem)

    def _required(self, key: str) -> object:
        try:
            return self.fields[key]
        except KeyError:
            raise self.error(key, "missing") from None

    def text(self, key: str) -> str:
        """A required string."""
        value = self._required(key)
        if isinstance(value, str):
            return value
        raise _mistyped(self.envelope, self.path_of(key), "a string", value)

    def optional_text(self, key: str) -> str | None:
        """A string, or ``None`` when absent or null."""
        value = self.fields.get(key)
        if value is None or isinstance(value, str):
            return value
        raise _mistyped(self.envelope, self.path_of(key), "a string", value)

    def flag(self, key: str) -> bool:
        """A boolean, ``False`` when absent or null."""
        value = self.fields.get(key)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        raise _mistyped(self.envelope, self.path_of(key), "a boolean", value)

    def integer(self, key: str) -> int:
        """A required integer (a JSON ``true`` is not one)."""
        value = self._required(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _mistyped(self.envelope, self.path_of(key), "an integer", value)

    def optional_integer(self, key: str) -> int | None:
        """An integer, or ``None`` when absent or null."""
        if self.fields.get(key) is None:
            return None
        return self.integer(key)

    def optional_number(self, key: str) -> float | None:
        """A number as a float, or ``None`` when absent or null."""
        value = self.fields.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _mistyped(self.envelope, self.path_of(key), "a number", value)
        try:
            return float(value)
        except OverflowError:
            raise self.error(key, "is out of range") from None

    def child(self, key: str) -> JsonObject:
        """A required nested object."""
        return JsonObject(self.envelope, self._required(key), self.path_of(key))

    def optional_child(self, key: str) -> JsonObject | None:
        """A nested object, or ``None`` when absent or null."""
        value = self.fields.get(key)
        if value is None:
            return None
        return JsonObject(self.envelope, value, self.path_of(key))

    def raw_object(self, key: str) -> dict[str, Any] | None:
        """A nested object handed over undecoded, or ``None`` when absent or null."""
        value = self.fields.get(key)
        if value is None or isinstance(value, dict):
            return value
        raise _mistyped(self.envelope, self.path_of(key), "an object", value)

    def objects(self, key: str) -> list[JsonObject]:
        """A required array of objects, such as ``Records``."""
        value = self._required(key)
        path = self.path_of(key)
        if not isinstance(value, list):
            raise _mistyped(self.envelope, path, "an array", value)
        return [JsonObject(self.envelope, item, f"{path}[{i}]") for i, item in enumerate(value)]

    def text_list(self, key: str) -> tuple[str, ...]:
        """An array of strings, empty when absent or null."""
        value = self.fields.get(key)
        if value is None:
            return ()
        return self._strings(self.path_of(key), value)

    def text_map(self, key: str) -> dict[str, str]:
        """An object of strings (headers, parameters), empty when absent or null."""
        value = self.fields.get(key)
        if value is None:
            return {}
        path = self.path_of(key)
        if not isinstance(value, dict):
            raise _mistyped(self.envelope, path, "an object", value)
        for name, item in value.items():
            if not isinstance(item, str):
                raise _mistyped(self.envelope, f"{path}.{name}", "a string", item)
        return dict(value)

    def text_list_map(self, key: str) -> dict[str, tuple[str, ...]]:
        """An object of string arrays (multi-value headers), empty when absent or null."""
        value = self.fields.get(key)
        if value is None:
            return {}
        path = self.path_of(key)
        if not isinstance(value, dict):
            raise _mistyped(self.envelope, path, "an object", value)
        return {name: self._strings(f"{path}.{name}", items) for name, items in value.items()}

    def _strings(self, path: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _mistyped(self.envelope, path, "an array", value)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _mistyped(self.envelope, f"{path}[{i}]", "a string", item)
        return tuple(value)


def decode_base64(text: str, envelope: str, path: str) -> bytes:
    """Standard, padded base64 as AWS writes it; anything else is rejected."""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError as exc:
        raise field_error(envelope, path, f"is not valid base64: {exc}") from exc


def encode_utf8(text: str, envelope: str, path: str) -> bytes:
    """``text`` as UTF-8; JSON can carry lone surrogates, which UTF-8 cannot."""
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise field_error(envelope, path, "is not valid Unicode text") from exc


def parse_json(document: str | bytes, envelope: str, path: str) -> Any:
    """Parse ``document`` as JSON; nesting too deep for the parser counts as not JSON."""
    import json  # noqa: PLC0415  (lazy: see the module docstring)

    try:
        return json.loads(document)
    except (ValueError, RecursionError) as exc:
        raise field_error(envelope, path, f"is not JSON: {exc}") from exc


def gunzip(data: bytes, envelope: str, path: str) -> bytes:
    """Decompress a gzip member."""
    import gzip  # noqa: PLC0415  (lazy: see the module docstring)
    import zlib  # noqa: PLC0415

    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise field_error(envelope, path, f"is not gzip data: {exc}") from exc


def url_unquote(text: str) -> str:
    """Undo form URL-encoding (``+`` is a space); never fails."""
    from urllib.parse import unquote_plus  # noqa: PLC0415  (lazy: see the module docstring)

    return unquote_plus(text)


def parse_query_string(query: str) -> dict[str, list[str]]:
    """Every value of every parameter of a raw query string, in order, blanks kept."""
    from urllib.parse import parse_qsl  # noqa: PLC0415  (lazy: see the module docstring)

    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    return params
