"""Handlers: loading ``module.function`` with the official init error types (in
this process and through a real ``lambda-bulkhead run``, in-process and
supervised), the official/raw/json handler shapes, and ``execute``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import StartRuntime, write_module_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lambda_bulkhead
from lambda_bulkhead import (
    Context,
    HandlerCrash,
    InitError,
    InvalidEvent,
    Invocation,
    InvocationError,
)
from lambda_bulkhead._context import FunctionMeta
from lambda_bulkhead.emulator import Emulator, NextHeaders
from lambda_bulkhead.handler._handler import (
    Answer,
    execute,
    json_handler,
    load_handler,
    official_handler,
    raw_handler,
)
from lambda_bulkhead.runtime_api._protocol import error_body

RUNTIME_DIR = str(Path(lambda_bulkhead.__file__ or "").parent)

# -- the init error cases, shared by load_handler and the real runtime ----------------

INIT_CASES: dict[str, tuple[str, dict[str, str], str, str, str]] = {
    # id: (handler, modules, errorType, header value, message start)
    "malformed": (
        "handler", {}, "Runtime.MalformedHandlerName", "Runtime.MalformedHandlerName",
        "Bad handler 'handler': not enough values to unpack (expected 2, got 1)",
    ),
    "builtin": (
        "sys.x", {}, "Runtime.BuiltInModuleConflict", "Runtime.BuiltInModuleConflict",
        "Cannot use built-in module sys as a handler module",
    ),
    "no-module": (
        "nosuchmodule.handler", {}, "Runtime.ImportModuleError", "Runtime.ImportModuleError",
        "Unable to import module 'nosuchmodule': No module named 'nosuchmodule'",
    ),
    "missing-dependency": (
        "app.handler",
        {"app.py": "import dependency_nobody_installed\n\ndef handler(e, c):\n    return 1\n"},
        "Runtime.ImportModuleError", "Runtime.ImportModuleError",
        "Unable to import module 'app': No module named 'dependency_nobody_installed'",
    ),
    "syntax": (
        "app.handler", {"app.py": "def handler(event, context:\n    return 1\n"},
        "Runtime.UserCodeSyntaxError", "Runtime.UserCodeSyntaxError",
        "Syntax error in module 'app': ",
    ),
    "no-handler": (
        "app.handler", {"app.py": "def other(event, context):\n    return 1\n"},
        "Runtime.HandlerNotFound", "Runtime.HandlerNotFound",
        "Handler 'handler' missing on module 'app'",
    ),
    "not-callable": (
        "app.handler", {"app.py": "handler = 42\n"},
        "Runtime.HandlerNotFound", "Runtime.HandlerNotFound",
        "Handler 'handler' missing on module 'app'",
    ),
    "value-error": (
        "app.handler", {"app.py": "raise ValueError('TABLE_NAME is not set')\n"},
        "ValueError", "Function.ValueError", "TABLE_NAME is not set",
    ),
    "sys-exit": (
        "app.handler", {"app.py": "import sys\nsys.exit(3)\n"},
        "Runtime.ExitError", "Runtime.ExitError", "Runtime exited with error: exit status 3",
    ),
}


@pytest.fixture
def load(task_root: Path) -> Iterator[Callable[[str], Callable[[Any, Context], Any]]]:
    """``load_handler(spec, task_root)``, undoing its sys.path and sys.modules changes."""
    before = set(sys.modules)
    yield lambda spec: load_handler(spec, str(task_root))
    while str(task_root) in sys.path:
        sys.path.remove(str(task_root))
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        if str(task_root) in str(getattr(module, "__file__", "") or ""):
            del sys.modules[name]


@pytest.mark.parametrize("case", list(INIT_CASES))
def test_load_handler_init_errors(
    load: Callable[[str], object], task_root: Path, case: str
) -> None:
    """Each way a handler cannot load is an InitError with the official type and message."""
    handler, modules, error_type, _header, message = INIT_CASES[case]
    write_module_files(task_root, modules)
    with pytest.raises(InitError) as caught:
        load(handler)
    assert caught.value.error_type == error_type
    assert caught.value.error_message.startswith(message)
    assert not any(RUNTIME_DIR in line for line in caught.value.stack_trace)


@pytest.mark.parametrize("spec", ["app.", ".handler", ""])
def test_load_handler_other_malformed_names(load: Callable[[str], object], spec: str) -> None:
    """An empty module or function name is Runtime.MalformedHandlerName too."""
    with pytest.raises(InitError) as caught:
        load(spec)
    assert caught.value.error_type == "Runtime.MalformedHandlerName"


def test_syntax_error_stack_names_the_file_and_line(
    load: Callable[[str], object], task_root: Path
) -> None:
    """Runtime.UserCodeSyntaxError's stack names the file, the line and the code."""
    write_module_files(task_root, {"app.py": "x = 1\ndef handler(:\n    pass\n"})
    with pytest.raises(InitError) as caught:
        load("app.handler")
    (line,) = caught.value.stack_trace
    assert f'File "{task_root / "app.py"}" Line 2' in line
    assert "def handler(:" in line


def test_import_time_exception_stack_starts_in_user_code(
    load: Callable[[str], object], task_root: Path
) -> None:
    """An import-time exception's stack starts at the module: no runtime or importlib frames."""
    write_module_files(task_root, {
        "app.py": "import settings\n",
        "settings.py": "def read():\n    raise KeyError('DB_URL')\nread()\n",
    })
    with pytest.raises(InitError) as caught:
        load("app.handler")
    error = caught.value
    assert (error.error_type, error.error_message) == ("KeyError", "'DB_URL'")
    assert error.stack_trace[0].startswith(f'  File "{task_root / "app.py"}", line 1')
    assert error.stack_trace[-1].startswith(f'  File "{task_root / "settings.py"}", line 2')
    assert not any("importlib" in line for line in error.stack_trace)


def test_load_handler_from_a_folder(load: Callable[[str], Any], task_root: Path) -> None:
    """dir/module.function loads module from a folder of the task root."""
    write_module_files(task_root, {
        "src/__init__.py": "",
        "src/api/__init__.py": "",
        "src/api/routes.py": "def handler(event, context):\n    return 'routed'\n",
    })
    assert load("src/api/routes.handler")(None, None) == "routed"
    assert load("src.api.routes.handler")(None, None) == "routed"


def test_load_handler_resolves_against_the_task_root(
    load: Callable[[str], Any], task_root: Path
) -> None:
    """The module comes from the task root given, first on sys.path."""
    write_module_files(task_root, {"app.py": "def handler(event, context):\n    return 1\n"})
    handler = load("app.handler")
    assert handler.__module__ == "app"
    assert sys.modules["app"].__file__ == str(task_root / "app.py")


# -- the same through a real runtime ----------------------------------------------------


@pytest.mark.parametrize("isolation", ["none", "process"])
@pytest.mark.parametrize("case", list(INIT_CASES))
def test_runtime_posts_init_error_and_exits(
    runtime: StartRuntime, emulator: Emulator, isolation: str, case: str
) -> None:
    """A real `run` posts /init/error with the header, exits non-zero, never polls /next."""
    handler, modules, error_type, header, message = INIT_CASES[case]
    proc = runtime(handler, modules=modules, isolation=isolation, wait_for_poll=False)
    status = proc.wait(30)
    assert status > 0, proc.describe()
    (report,) = emulator.init_errors
    assert report.error_type == header
    body = json.loads(report.body)
    # The official runtime's keys; its init errors carry an empty requestId.
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body["requestId"] == ""
    assert body["errorType"] == error_type
    assert body["errorMessage"].startswith(message)
    assert emulator.deliveries == []
    assert not proc.leftovers()


def test_supervised_os_exit_at_import_is_an_exit_error(
    runtime: StartRuntime, emulator: Emulator
) -> None:
    """A handler module that kills the process at import is Runtime.ExitError (supervised)."""
    proc = runtime(
        "app.handler", modules={"app.py": "import os\nos._exit(4)\n"}, isolation="process",
        wait_for_poll=False,
    )
    assert proc.wait(30) > 0
    (report,) = emulator.init_errors
    assert report.error_type == "Runtime.ExitError"
    assert "exit status 4" in json.loads(report.body)["errorMessage"]
    assert emulator.deliveries == []


ENCODINGS = {"app.py": """\
    from decimal import Decimal

    def handler(event, context):
        kind = event["kind"] if isinstance(event, dict) else "echo-bytes"
        if kind == "echo-bytes":
            return event[::-1]
        if kind == "decimal":
            return {"price": Decimal("9.99"), "count": Decimal("3")}
        if kind == "set":
            return {1, 2}
        return event
"""}


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_encodings_through_a_real_runtime(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """Bytes in and out, Decimals, a set and invalid JSON, through `run` in both modes."""
    proc = runtime(modules=ENCODINGS, isolation=isolation)
    raw = proc.invoke(b"\x00\x01\xff", content_type="application/octet-stream")
    assert (raw.kind, raw.body) == ("response", b"\xff\x01\x00"), proc.describe()
    assert raw.headers["Content-Type"] == "application/unknown"
    decimal = proc.invoke(b'{"kind": "decimal"}')
    assert decimal.body == b'{"price":9.99,"count":3}'
    assert decimal.headers["Content-Type"] == "application/json"
    marshal = proc.invoke(b'{"kind": "set"}')
    assert marshal.kind == "error"
    assert json.loads(marshal.body)["errorType"] == "Runtime.MarshalError"
    unmarshal = proc.invoke(b'{"kind": ')
    assert unmarshal.kind == "error"
    assert json.loads(unmarshal.body)["errorType"] == "Runtime.UnmarshalError"
    assert [a.error_type for a in emulator.answers if a.call == "error"] == [
        "Runtime.MarshalError", "Runtime.UnmarshalError"
    ]


# -- handler shapes -----------------------------------------------------------------------

META = FunctionMeta(function_name="f")


def run(handler: Any, payload: bytes, content_type: str | None = "application/json",
        **fields: Any) -> Answer:
    invocation = Invocation("req-1", payload, content_type=content_type, **fields)
    return execute(handler, invocation, META)


def test_json_event_is_decoded_and_result_encoded() -> None:
    """An application/json event arrives decoded; the result is posted as compact JSON."""
    answer = run(official_handler(lambda event, context: {"got": event, "é": "ü"}), b'{"a": [1]}')
    assert answer == Answer(b'{"got":{"a":[1]},"\xc3\xa9":"\xc3\xbc"}', "application/json")


def test_json_with_parameters_is_still_json() -> None:
    """application/json; charset=utf-8 is JSON too."""
    answer = run(official_handler(lambda event, context: event), b"[1]",
                 "Application/JSON; charset=utf-8")
    assert answer.body == b"[1]"


def test_missing_content_type_is_json() -> None:
    """No content type: the event is JSON, as Lambda's default."""
    assert run(official_handler(lambda event, context: event), b'"x"', None).body == b'"x"'


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain", "image/png"])
def test_other_content_types_arrive_as_bytes(content_type: str) -> None:
    """Any non-JSON content type reaches the handler as the raw bytes."""
    seen: list[Any] = []
    run(official_handler(lambda event, context: seen.append(event)), b"\x00\xff{", content_type)
    assert seen == [b"\x00\xff{"]


@pytest.mark.parametrize("result", [b"\x89PNG\r\n", bytearray(b"ba"), memoryview(b"mv")])
def test_bytes_results_are_posted_raw(result: Any) -> None:
    """bytes, bytearray and memoryview results are posted as-is, application/unknown."""
    answer = run(official_handler(lambda event, context: result), b"{}")
    assert answer == Answer(bytes(result), "application/unknown")


def test_decimal_results_are_numbers() -> None:
    """Decimals are JSON numbers: integral ones as ints, others as floats."""
    answer = run(official_handler(
        lambda event, context: {"a": Decimal("2"), "b": Decimal("1.5"), "c": [Decimal("-0")]}
    ), b"{}")
    assert json.loads(answer.body) == {"a": 2, "b": 1.5, "c": [0]}
    assert answer.body == b'{"a":2,"b":1.5,"c":[0]}'


@pytest.mark.parametrize("result", [{1, 2}, object(), {"when": b"bytes inside"}])
def test_unencodable_result_is_a_marshal_error(result: Any) -> None:
    """A result that is not JSON-able is Runtime.MarshalError."""
    with pytest.raises(InvocationError) as caught:
        run(official_handler(lambda event, context: result), b"{}")
    assert caught.value.error_type == "Runtime.MarshalError"
    assert caught.value.error_message.startswith("Unable to marshal response: ")
    assert "is not JSON serializable" in caught.value.error_message


@pytest.mark.parametrize("payload", [b"{not json", b"", b"\xff\xfe"])
def test_invalid_json_event_is_an_unmarshal_error(payload: bytes) -> None:
    """A JSON event that does not parse is Runtime.UnmarshalError; the handler is not called."""
    called: list[Any] = []
    with pytest.raises(InvocationError) as caught:
        run(official_handler(lambda event, context: called.append(event)), payload)
    assert caught.value.error_type == "Runtime.UnmarshalError"
    assert caught.value.error_message.startswith("Unable to unmarshal input: ")
    assert called == []


@pytest.mark.parametrize(
    "payload",
    ['{"caf\u00e9": [1, "\u20ac"]}'.encode(encoding)
     for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32")]
    + [b'{"s": "\xed\xa0\x80"}', b'  {"a": 1}\n'],
    ids=["utf-8", "utf-8 BOM", "utf-16", "utf-16-le", "utf-16-be", "utf-32",
         "encoded surrogate", "whitespace"],
)
def test_events_decode_exactly_as_json_loads_decodes_the_bytes(payload: bytes) -> None:
    """UTF-16/32 (with or without a BOM), a UTF-8 BOM, an encoded surrogate: the
    event is what json.loads(payload) gives (the official runtime's simplejson
    refuses UTF-16/32: docs/api.md, differences)."""
    seen: list[Any] = []
    run(official_handler(lambda event, context: seen.append(event)), payload)
    assert seen == [json.loads(payload)]


def test_json_nested_too_deep_is_an_unmarshal_error() -> None:
    """An event nested deeper than json can decode (RecursionError) is an UnmarshalError."""
    with pytest.raises(InvocationError) as caught:
        run(official_handler(lambda event, context: event), b"[" * 100_000)
    assert caught.value.error_type == "Runtime.UnmarshalError"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64) | st.builds(
    lambda text, cut: text.encode()[:cut], st.text(max_size=40), st.integers(0, 60)
))
def test_any_bytes_as_a_json_event_give_a_result_or_an_unmarshal_error(payload: bytes) -> None:
    """Arbitrary bytes (and cut-off JSON-ish text) as an application/json event:
    the handler's result, or Runtime.UnmarshalError, and never anything else."""
    handler = official_handler(lambda event, context: event)
    try:
        answer: Answer | InvocationError = run(handler, payload)
    except InvocationError as error:
        answer = error
    if isinstance(answer, InvocationError):
        assert answer.error_type == "Runtime.UnmarshalError", answer
    else:
        assert answer == Answer(
            json.dumps(json.loads(payload), ensure_ascii=False, separators=(",", ":")).encode(),
            "application/json",
        )


@pytest.mark.parametrize("isolation", ["none", "process"])
@pytest.mark.parametrize("payload", [b'{"a":1', b"[" * 100_000, b'{"big": "' + b"x" * 70_000])
def test_the_first_malformed_event_of_a_fresh_runtime_is_an_unmarshal_error(
    runtime: StartRuntime, emulator: Emulator, isolation: str, payload: bytes
) -> None:
    """The first event of a new process, malformed, is Runtime.UnmarshalError (it
    once was a SystemError from a private decoder), in both isolation modes."""
    proc = runtime(modules=ENCODINGS, isolation=isolation)
    result = proc.invoke(payload)
    assert result.kind == "error", proc.describe()
    body = json.loads(result.body)
    assert body["errorType"] == "Runtime.UnmarshalError", proc.describe()
    assert body["errorMessage"].startswith("Unable to unmarshal input: ")
    assert proc.invoke(b'{"kind": "decimal"}').body == b'{"price":9.99,"count":3}'


def test_raw_handler_is_bytes_in_bytes_out() -> None:
    """A raw handler gets the payload bytes and its bytes are posted raw."""
    answer = run(raw_handler(lambda payload, context: payload[::-1]), b"abc", "text/plain")
    assert answer == Answer(b"cba", "application/unknown")


def test_raw_handler_returning_text_is_a_marshal_error() -> None:
    """A raw handler must return bytes; a str is Runtime.MarshalError naming the type."""
    with pytest.raises(InvocationError, match="raw handler returned str") as caught:
        run(raw_handler(lambda payload, context: "text"), b"")  # type: ignore[arg-type,return-value]
    assert caught.value.error_type == "Runtime.MarshalError"


def positive(data: Any) -> int:
    if not isinstance(data, dict) or not isinstance(data.get("n"), int) or data["n"] < 0:
        raise ValueError("field n: expected a non-negative integer")
    return int(data["n"])


def test_json_handler_decodes_calls_and_encodes() -> None:
    """A typed handler gets the decoder's value; the encoder's value is posted as JSON."""
    handler = json_handler(positive, lambda n, context: n * 2, lambda r: {"double": r})
    assert run(handler, b'{"n": 21}').body == b'{"double":42}'


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b'{"n": -1}', "ValueError: field n: expected a non-negative integer"),
     (b"not json", "JSONDecodeError")],
)
def test_json_handler_rejected_event_is_invalid_event(payload: bytes, message: str) -> None:
    """A payload the decoder rejects is Runtime.InvalidEvent; the handler is never called."""
    called: list[int] = []
    handler = json_handler(positive, lambda n, context: called.append(n), lambda r: r)
    with pytest.raises(InvalidEvent) as caught:
        run(handler, payload)
    assert caught.value.error_type == "Runtime.InvalidEvent"
    assert message in caught.value.error_message
    assert called == []


def test_json_handler_decoder_raising_invalid_event_keeps_its_message() -> None:
    """A decoder raising InvalidEvent itself is reported as it said."""

    def decoder(data: Any) -> int:
        raise InvalidEvent("field 'id': missing")

    with pytest.raises(InvalidEvent, match=r"^field 'id': missing$"):
        run(json_handler(decoder, lambda n, context: n, lambda r: r), b"{}")


# -- execute: failures and the environment ----------------------------------------------------


def test_handler_exception_is_a_handler_crash_with_a_clean_stack(
    load: Callable[[str], Any], task_root: Path
) -> None:
    """A raising handler is HandlerCrash: class name, message, stack starting in user code."""
    write_module_files(task_root, {"app.py": """\
        def helper(n):
            return 1 / n

        def handler(event, context):
            return helper(event["n"])
    """})
    with pytest.raises(HandlerCrash) as caught:
        run(official_handler(load("app.handler")), b'{"n": 0}')
    error = caught.value
    assert (error.error_type, error.error_message) == ("ZeroDivisionError", "division by zero")
    app = task_root / "app.py"
    first, second = error.stack_trace
    assert first.startswith(f'  File "{app}", line 5, in handler\n    return helper(event["n"])\n')
    assert second.startswith(f'  File "{app}", line 2, in helper\n    return 1 / n\n')


def test_chained_causes_are_reported(load: Callable[[str], Any], task_root: Path) -> None:
    """raise ... from ... and implicit context both become causes, nearest first."""
    write_module_files(task_root, {"app.py": """\
        class ConfigError(Exception):
            pass

        def handler(event, context):
            try:
                try:
                    {}["key"]
                except KeyError:
                    int("nope")
            except ValueError as exc:
                raise ConfigError("settings are broken") from exc
    """})
    with pytest.raises(HandlerCrash) as caught:
        run(official_handler(load("app.handler")), b"{}")
    error = caught.value
    assert (error.error_type, error.error_message) == ("ConfigError", "settings are broken")
    assert [(c.error_type, c.error_message) for c in error.causes] == [
        ("ValueError", "invalid literal for int() with base 10: 'nope'"),
        ("KeyError", "'key'"),
    ]
    assert all(c.stack_trace for c in error.causes)
    assert not any(RUNTIME_DIR in line for c in error.causes for line in c.stack_trace)
    # Flat, as documented and as a worker's causes reach /error: the ValueError
    # does not carry the KeyError again (it comes after it in the list).
    body = json.loads(error_body(error, "id"))
    assert [list(cause) for cause in body["causes"]] == [
        ["errorMessage", "errorType", "stackTrace"], ["errorMessage", "errorType", "stackTrace"]
    ]



def test_suppressed_context_is_not_a_cause() -> None:
    """raise ... from None hides the context, as Python's own traceback does."""

    def handler(event: Any, context: Any) -> None:
        try:
            os.environ["__SURELY_NOT_SET__"]
        except KeyError:
            raise ValueError("clean") from None

    with pytest.raises(HandlerCrash) as caught:
        run(official_handler(handler), b"{}")
    assert caught.value.causes == ()


def test_invocation_error_raised_by_a_handler_keeps_its_type() -> None:
    """A handler may raise InvocationError to choose the errorType the caller sees."""

    def handler(event: Any, context: Any) -> None:
        raise InvocationError("Function.PaymentDeclined", "card expired")

    with pytest.raises(InvocationError) as caught:
        run(official_handler(handler), b"{}")
    assert type(caught.value) is InvocationError
    assert (caught.value.error_type, caught.value.error_message) == (
        "Function.PaymentDeclined", "card expired"
    )


@pytest.mark.parametrize("exc", [SystemExit(2), KeyboardInterrupt()])
def test_base_exceptions_propagate(exc: BaseException) -> None:
    """SystemExit and KeyboardInterrupt leave execute as they are: the caller decides."""

    def handler(event: Any, context: Any) -> None:
        raise exc

    with pytest.raises(type(exc)):
        run(official_handler(handler), b"{}")


def test_bad_client_context_fails_before_the_handler() -> None:
    """A client context that is not JSON fails the invocation without calling the handler."""
    called: list[Any] = []
    with pytest.raises(InvocationError) as caught:
        run(official_handler(lambda event, context: called.append(1)), b"{}",
            client_context="{oops")
    assert caught.value.error_type == "Runtime.UnmarshalError"
    assert called == []


def test_trace_id_is_set_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    """_X_AMZN_TRACE_ID is the invocation's trace id, and absent when it has none."""
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "stale-from-before")
    handler = official_handler(lambda event, context: os.environ.get("_X_AMZN_TRACE_ID"))
    assert run(handler, b"{}", trace_id="Root=1-abc;Sampled=1").body == b'"Root=1-abc;Sampled=1"'
    assert run(handler, b"{}", trace_id=None).body == b"null"
    assert "_X_AMZN_TRACE_ID" not in os.environ


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_trace_id_in_a_real_runtime(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """Through a real runtime, the handler sees each invocation's trace id, or none."""
    proc = runtime(isolation=isolation, modules={
        "app.py": "import os\n\ndef handler(event, context):\n"
                  "    return os.environ.get('_X_AMZN_TRACE_ID')\n",
    })
    first = proc.invoke(b"{}", trace_id="Root=1-65f0-abc;Parent=1;Sampled=1")
    assert json.loads(first.body) == "Root=1-65f0-abc;Parent=1;Sampled=1"
    emulator.inject(NextHeaders(headers={"Lambda-Runtime-Trace-Id": None}))
    second = proc.invoke(b"{}")
    assert second.kind == "response", proc.describe()
    assert json.loads(second.body) is None
