"""JSON for events and results, without importing :mod:`json` on the cold start.

Importing ``json`` imports ``re`` and compiles a handful of patterns (about
3 ms of a cold start here, on the template's path to its first worker), while
its speed comes from the C accelerator ``_json`` it wraps.  :func:`loads` and
:func:`dumps` drive ``_json``'s scanner and encoder directly, configured as
``json.loads`` and the runtime's ``json.dumps(..., ensure_ascii=False,
separators=(",", ":"))`` configure them.  Anything off their common path (an
input the scanner refuses, bytes that are not plain UTF-8, a circular
structure) is handed to :mod:`json` itself, imported then, so results and
error messages are exactly ``json``'s.  Where ``_json`` is missing (not
CPython), :mod:`json` is used throughout.
"""

from __future__ import annotations

from collections.abc import Callable

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "loads", "quote"]

_WHITESPACE = " \t\n\r"


class _ScannerSettings:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``: its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {
        "-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan"),
    }.__getitem__


def _c_scanner() -> Callable[[str, int], tuple[Any, int]] | None:
    """The C scanner, or None where ``_json`` is missing or differs from the
    CPython it was written against (then :mod:`json` does all the work)."""
    if _json is None:
        return None
    try:
        scan = _json.make_scanner(_ScannerSettings())  # type: ignore[arg-type]
        if scan('{"a": [1]}', 0) != ({"a": [1]}, 10):
            return None
    except (TypeError, AttributeError, ValueError, StopIteration):
        return None
    return scan


def _c_encoder(default: Callable[[object], object]) -> Callable[[object, int], list[str]]:
    """``_json``'s encoder as ``json.dumps`` makes it for the runtime's options
    (``ensure_ascii=False``, compact separators, circular references checked)."""
    return _json.make_encoder(
        {}, default, _json.encode_basestring, None, ":", ",", False, False, True
    )


def _c_encoder_works() -> bool:
    if _json is None:
        return False
    try:
        return "".join(_c_encoder(str)({"a": [1]}, 0)) == '{"a":[1]}'
    except (TypeError, AttributeError, ValueError):
        return False


_scan = _c_scanner()
_C_ENCODER = _c_encoder_works()


def quote(text: str) -> str:
    """``text`` as a JSON string literal, as ``json.dumps(text, ensure_ascii=False)``."""
    if _json is not None:
        return _json.encode_basestring(text)
    import json  # noqa: PLC0415 - not CPython

    return json.dumps(text, ensure_ascii=False)


def loads(data: bytes) -> Any:
    """``json.loads(data)``."""
    if _scan is not None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = ""  # UTF-16/32, or surrogates json accepts: json decides
        start = len(text) - len(text.lstrip(_WHITESPACE))
        if text and not text.startswith("\ufeff"):
            try:
                value, end = _scan(text, start)
            except (StopIteration, ValueError):
                pass  # json raises its own error, with its message
            else:
                if end == len(text) or not text[end:].strip(_WHITESPACE):
                    return value
    import json  # noqa: PLC0415 - the unusual cases only

    return json.loads(data)


def dumps(value: object, default: Callable[[object], object]) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)``."""
    if _C_ENCODER:
        try:
            return "".join(_c_encoder(default)(value, 0))
        except ValueError:
            pass  # a circular reference: json raises its own error
    import json  # noqa: PLC0415 - the unusual cases only

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)
