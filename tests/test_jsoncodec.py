"""The runtime's JSON for events and results: ``json``'s results and errors,
through ``_json`` directly (no ``json`` import on the cold start)."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_bulkhead._jsoncodec import dumps, loads, quote

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN included."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(values, st.sampled_from(["", " ", "\n\t ", "\r\n"]))
def test_loads_gives_what_json_gives(value: Any, padding: str) -> None:
    """Any JSON document, padded with whitespace, decodes as json.loads decodes it."""
    data = (padding + json.dumps(value, ensure_ascii=False) + padding).encode()
    assert _same(loads(data), json.loads(data))


@given(values)
def test_dumps_gives_what_json_gives(value: Any) -> None:
    """Any value encodes byte for byte as json.dumps with the runtime's options."""
    assert dumps(value, str) == json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), default=str
    )


@given(st.text())
def test_quote_gives_what_json_gives(text: str) -> None:
    """A JSON string literal, as json.dumps(text, ensure_ascii=False) writes it."""
    assert quote(text) == json.dumps(text, ensure_ascii=False)


@pytest.mark.parametrize(
    "data",
    [b"", b"   ", b"{", b'{"a": }', b'{"a": 1} x', b"[1, 2", b'"\\x"', b"nul", b"\xff\xfe",
     b"\xef\xbb\xbf{}", b'{"a": 1}{"b": 2}'],
)
def test_bad_or_unusual_input_fails_or_succeeds_exactly_as_json_does(data: bytes) -> None:
    """Errors (type and message) and the unusual successes (a UTF-8 BOM) are json's."""
    expected = _outcome(json.loads, data)
    assert _outcome(loads, data) == expected


def _outcome(decode: Any, data: bytes) -> tuple[str, str]:
    """What decoding ``data`` gave: ("ok", repr of the value) or (error type, message)."""
    try:
        return "ok", repr(decode(data))
    except ValueError as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_other_unicode_encodings_decode_as_json_decodes_them(encoding: str) -> None:
    """json.loads(bytes) detects UTF-16 and UTF-32; so does loads."""
    data = '{"caf\u00e9": [1, "\u20ac"]}'.encode(encoding)
    assert loads(data) == json.loads(data) == {"caf\u00e9": [1, "\u20ac"]}


def test_dumps_calls_default_and_refuses_what_json_refuses() -> None:
    """default converts what JSON cannot hold; a circular list is json's ValueError."""
    assert dumps({"n": Decimal("1.5")}, lambda value: float(str(value))) == "{\"n\":1.5}"
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(circular, str)

    def refuse(value: object) -> object:
        raise TypeError(f"not JSON: {type(value).__name__}")

    with pytest.raises(TypeError, match="not JSON: object"):
        dumps({"x": object()}, refuse)


def test_without_the_c_accelerator_json_does_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where _json is missing or not what the codec expects, json gives the answers."""
    from lambda_bulkhead import _jsoncodec  # noqa: PLC0415

    monkeypatch.setattr(_jsoncodec, "_scan", None)
    monkeypatch.setattr(_jsoncodec, "_C_ENCODER", False)
    monkeypatch.setattr(_jsoncodec, "_json", None)
    assert quote('say "\u00e9"\n') == json.dumps('say "\u00e9"\n', ensure_ascii=False)
    assert loads(b' {"a": [1, 2.5, null]} ') == {"a": [1, 2.5, None]}
    assert dumps({"a": "\u00e9", "n": Decimal("2")}, lambda value: int(str(value))) == (
        "{\"a\":\"\u00e9\",\"n\":2}"
    )
    with pytest.raises(ValueError, match="Expecting property name"):
        loads(b"{")
