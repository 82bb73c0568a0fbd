"""Handlers: loading one by name, and calling it as the official runtime does.

Every handler shape becomes a :data:`CoreHandler` — ``(Invocation, Context) ->
Answer``, raising :class:`InvocationError` for a reportable failure:

* :func:`official_handler` wraps ``def handler(event, context)``: an
  ``application/json`` event is decoded, any other content type arrives as
  bytes; a ``bytes`` result is posted raw, anything else as JSON.
* :func:`raw_handler` wraps ``(payload: bytes, context) -> bytes`` (``start``).
* :func:`json_handler` wraps a decoder, a typed handler and an encoder
  (``start_json``).

:func:`execute` runs one invocation through a core handler in the current
process; the in-process loop and the isolated worker both use it.

:func:`official_handler` also takes a generator function or an async generator
function (``yield`` in the handler): its answer is then *streamed*, an
:class:`Answer` whose ``stream`` (a :class:`Streamed`) gives each yielded item's
bytes as the caller pulls them (see :mod:`lambda_bulkhead._streaming`).

Each wrapper also takes a coroutine function (``async def``), or a function
that wraps one (``functools.wraps``): which it is, is decided once, when the
handler is wrapped, so a plain function pays nothing per invocation.  The
coroutine is run to completion on the thread's persistent event loop (see
:mod:`lambda_bulkhead.handler._coroutines`) and the result treated as a plain
function's; the core handler is then a :class:`CoroutineHandler`.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Awaitable, Callable

from lambda_bulkhead._context import Context, FunctionMeta, Invocation, build_context
from lambda_bulkhead._errors import (
    HandlerCrash,
    InitError,
    InvalidEvent,
    InvocationError,
    handler_stack,
    runtime_exited,
)
from lambda_bulkhead._record import NamedTuple
from lambda_bulkhead._streaming import (
    DEFAULT_STREAM_CONTENT_TYPE,
    HTTP_INTEGRATION_CONTENT_TYPE,
    MAX_STREAM_BYTES,
    HttpPrelude,
    chunk_bytes,
    stream_too_large_error,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from typing import Any, TypeVar

    from lambda_bulkhead.handler._coroutines import EventLoops

    E = TypeVar("E")

__all__ = [
    "Answer",
    "CoreHandler",
    "CoroutineHandler",
    "CurrentInvocation",
    "HandlerSource",
    "Streamed",
    "execute",
    "exit_error",
    "is_coroutine_handler",
    "is_streaming_handler",
    "json_handler",
    "load_handler",
    "official_handler",
    "raw_handler",
    "set_trace_id",
]


class Answer(NamedTuple):
    """A successful result, ready to post to ``/response``; for a streamed one,
    ``stream`` gives the body and ``body`` is empty."""

    body: bytes
    content_type: str = "application/json"
    stream: Streamed | None = None


class Streamed:
    """A streaming handler's answer: the bytes of each item it yields, pulled one
    at a time (the handler runs only while an item is pulled).

    :attr:`content_type` is known once the first item was pulled: an
    :class:`~lambda_bulkhead._streaming.HttpPrelude` first makes the stream an
    HTTP integration response, whose first bytes are the prelude's.  Empty items
    are skipped (an empty HTTP chunk would end the body).  A failure of the
    handler is raised as an :class:`InvocationError` (the handler's own class
    name, as for a plain handler); a stream past
    :data:`~lambda_bulkhead._streaming.MAX_STREAM_BYTES` raises
    ``Function.ResponseSizeTooLarge`` after closing the handler's generator.
    """

    __slots__ = ("_close", "_items", "_pulled", "content_type", "size")

    def __init__(self, items: Iterator[object], close: Callable[[], object]) -> None:
        self._items = items
        self._close = close
        self._pulled = False
        self.content_type = DEFAULT_STREAM_CONTENT_TYPE
        #: Bytes given so far.
        self.size = 0

    def __iter__(self) -> Streamed:
        return self

    def __next__(self) -> bytes:
        while True:
            try:
                item = next(self._items)
            except (StopIteration, InvocationError):
                raise
            except Exception as exc:
                raise HandlerCrash.from_exception(exc) from exc
            if not self._pulled:
                self._pulled = True
                if isinstance(item, HttpPrelude):
                    self.content_type = HTTP_INTEGRATION_CONTENT_TYPE
                    item = item.encode()
            data = chunk_bytes(item)
            if data:
                break
        self.size += len(data)
        if self.size > MAX_STREAM_BYTES:
            self.close()
            raise stream_too_large_error(self.size)
        return data

    def close(self) -> None:
        """Stop the handler where it is (its ``finally`` blocks run): the stream
        will not be read further."""
        self._close()


CoreHandler = Callable[[Invocation, Context], Answer]
#: What a runtime serves: a ``module.function`` name to load, or a core handler.
HandlerSource = str | CoreHandler


class CurrentInvocation:
    """Which invocation this process is running, for its log records' request id."""

    __slots__ = ("request_id", "tenant_id")

    def __init__(self) -> None:
        self.request_id: str | None = None
        self.tenant_id: str | None = None

_JSON = "application/json"
#: The official runtime's content type for a handler's ``bytes`` result.
_BYTES = "application/unknown"


def set_trace_id(trace_id: str | None) -> None:
    """Expose the X-Ray trace header to the handler (and the AWS SDK) as Lambda does."""
    environ = os.environ
    if trace_id:
        # Set without comparing first: on Lambda every invocation has its own.
        environ["_X_AMZN_TRACE_ID"] = trace_id
    elif "_X_AMZN_TRACE_ID" in environ:
        del environ["_X_AMZN_TRACE_ID"]


def execute(handler: CoreHandler, invocation: Invocation, meta: FunctionMeta) -> Answer:
    """Run one invocation; every failure leaves as an :class:`InvocationError`.

    A ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``) propagates: the caller decides what exiting means.
    """
    context = build_context(invocation, meta)
    set_trace_id(invocation.trace_id)
    try:
        return handler(invocation, context)
    except InvocationError:
        raise
    except Exception as exc:
        raise HandlerCrash.from_exception(exc) from exc


def _media_type(content_type: str | None) -> str:
    if content_type is None or content_type == _JSON:  # nearly every event
        return _JSON
    return (content_type or _JSON).split(";", 1)[0].strip().lower()


def _decimal_to_number(value: object) -> object:
    from decimal import Decimal  # noqa: PLC0415 - only results holding Decimals pay for it

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@functools.cache
def _json_codec() -> tuple[Callable[[bytes], Any], Callable[[object], str]]:
    """``(loads, dumps)`` for events and results: the public :mod:`json` module,
    ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` with the
    ``Decimal`` default.  Made when the first handler is wrapped (the template's
    or the in-process runtime's init), not when this module is imported: the
    supervisor imports it too and never decodes an event.
    """
    import json  # noqa: PLC0415

    # One encoder for every result: json.dumps with options builds a new one each call.
    dumps = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), default=_decimal_to_number
    ).encode

    def loads(data: bytes) -> Any:
        """``json.loads(data)``.  For bytes it first detects the encoding in Python
        code; nearly every event is UTF-8 with no BOM and no NUL among its first
        four bytes (which UTF-16 and UTF-32 text would have), and that decodes to
        the same text here, faster.  Anything else is json's to decode."""
        if b"\x00" not in data[:4] and not data.startswith(b"\xef\xbb\xbf"):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                pass  # json decodes with surrogatepass, or fails with its own message
            else:
                return json.loads(text)
        return json.loads(data)

    return loads, dumps


def encode_json(value: object) -> bytes:
    """A result as JSON bytes; ``Runtime.MarshalError`` when it is not JSON-able."""
    try:
        return _json_codec()[1](value).encode()
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvocationError(
            "Runtime.MarshalError", f"Unable to marshal response: {exc}"
        ) from exc


#: The code flags of an ``async def`` function, a generator function and an async
#: generator function (``inspect.CO_COROUTINE``...: inspect itself costs about 8 ms
#: of a cold start, so it is not imported for this).
_CO_COROUTINE = 0x80
_CO_GENERATOR = 0x20
_CO_ASYNC_GENERATOR = 0x200


def is_coroutine_handler(function: object) -> bool:
    """Whether ``function`` is a coroutine function, or wraps one.

    As ``inspect.iscoroutinefunction``, bound methods and ``functools.partial``
    are seen through; so is a callable object whose ``__call__`` is one; and
    so is a decorator made with ``functools.wraps`` (``__wrapped__``) around
    one, as handler decorators are: calling it gives the inner coroutine.
    """
    return _has_code_flag(function, _CO_COROUTINE)


def is_streaming_handler(function: object) -> bool:
    """Whether ``function`` is a generator or async generator function, or wraps
    one (seen through as :func:`is_coroutine_handler` sees)."""
    return _has_code_flag(function, _CO_GENERATOR | _CO_ASYNC_GENERATOR)


def _has_code_flag(function: object, mask: int) -> bool:
    seen: set[int] = set()
    candidate: object = function
    while candidate is not None and id(candidate) not in seen:
        seen.add(id(candidate))
        target = getattr(candidate, "__func__", candidate)
        while isinstance(target, functools.partial):
            target = target.func
        code = getattr(target, "__code__", None)
        if code is None and callable(target):
            code = getattr(type(target).__call__, "__code__", None)
        flags = getattr(code, "co_flags", 0)
        if isinstance(flags, int) and flags & mask:
            return True
        candidate = getattr(candidate, "__wrapped__", None)
    return False


class CoroutineHandler:
    """A core handler whose user function is a coroutine function, run on
    :attr:`loops` (the worker also reads its tasks' stacks at a deadline)."""

    __slots__ = ("_call", "loops")

    def __init__(self, call: CoreHandler, loops: EventLoops) -> None:
        self._call = call
        self.loops = loops

    def __call__(self, invocation: Invocation, context: Context) -> Answer:
        return self._call(invocation, context)


def _on_event_loop(
    function: Callable[..., Any], wrap: Callable[[Callable[..., Any]], CoreHandler]
) -> CoroutineHandler:
    """``wrap`` (a plain-function wrapper) around ``function`` run to completion on
    the thread's event loop."""
    from lambda_bulkhead.handler._coroutines import EventLoops  # noqa: PLC0415 - asyncio: async only

    loops = EventLoops()

    def run_to_completion(*args: Any) -> Any:
        result = function(*args)
        # A plain decorator around an async def may also give a plain value.
        return loops.run(result) if isinstance(result, Awaitable) else result

    return CoroutineHandler(wrap(run_to_completion), loops)


def official_handler(function: Callable[[Any, Context], Any]) -> CoreHandler:
    """``def handler(event, context)`` with the official runtime's encodings;
    ``async def handler(event, context)`` too; a generator (or async generator)
    function streams what it yields."""
    if is_streaming_handler(function):
        return _streaming_handler(function)
    if is_coroutine_handler(function):
        return _on_event_loop(function, official_handler)
    loads, _ = _json_codec()  # json imported now, at init, not at the first event

    def call(invocation: Invocation, context: Context) -> Answer:
        event: Any = invocation.payload
        if _media_type(invocation.content_type) == _JSON:
            try:
                event = loads(invocation.payload)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
                raise InvocationError(
                    "Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}"
                ) from exc
        result = function(event, context)
        if isinstance(result, bytes | bytearray | memoryview):
            return Answer(bytes(result), _BYTES)
        return Answer(encode_json(result), _JSON)

    return call


def _streaming_handler(function: Callable[[Any, Context], Any]) -> CoreHandler:
    """A generator function's (or async generator function's) core handler: the
    event decoded as :func:`official_handler` does, the answer :class:`Streamed`.
    An async generator's items are each awaited on the thread's event loop."""
    loads, _ = _json_codec()
    loops: EventLoops | None = None
    if _has_code_flag(function, _CO_ASYNC_GENERATOR):
        from lambda_bulkhead.handler._coroutines import EventLoops  # noqa: PLC0415 - async only

        loops = EventLoops()

    def call(invocation: Invocation, context: Context) -> Answer:
        event: Any = invocation.payload
        if _media_type(invocation.content_type) == _JSON:
            try:
                event = loads(invocation.payload)
            except (ValueError, RecursionError) as exc:
                raise InvocationError(
                    "Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}"
                ) from exc
        items = function(event, context)
        if loops is not None and hasattr(items, "__anext__"):
            running = loops
            return Answer(b"", stream=Streamed(
                _pulled_on(running, items), lambda: _aclose(running, items)
            ))
        return Answer(b"", stream=Streamed(iter(items), getattr(items, "close", _nothing)))

    return call if loops is None else CoroutineHandler(call, loops)


def _pulled_on(loops: EventLoops, items: AsyncIterator[object]) -> Iterator[object]:
    """An async generator's items, each awaited on ``loops``'s event loop."""
    while True:
        try:
            yield loops.run(items.__anext__())
        except StopAsyncIteration:
            return


def _aclose(loops: EventLoops, items: AsyncIterator[object]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        loops.run(aclose())


def _nothing() -> None:
    pass


def raw_handler(
    function: Callable[[bytes, Context], bytes | Awaitable[bytes]],
) -> CoreHandler:
    """``(payload, context) -> bytes``: bytes in, bytes out, no encoding (or a
    coroutine function giving bytes)."""
    if is_coroutine_handler(function):
        return _on_event_loop(function, raw_handler)

    def call(invocation: Invocation, context: Context) -> Answer:
        result = function(invocation.payload, context)
        if not isinstance(result, bytes | bytearray | memoryview):
            raise InvocationError(
                "Runtime.MarshalError",
                f"Unable to marshal response: raw handler returned {type(result).__name__}, "
                "not bytes",
            )
        return Answer(bytes(result), _BYTES)

    return call


def json_handler(
    decoder: Callable[[Any], E],
    function: Callable[[E, Context], Any],
    encoder: Callable[[Any], Any],
) -> CoreHandler:
    """A typed handler: the payload is parsed as JSON and given to ``decoder``;
    a payload that is not JSON or that the decoder rejects is reported as
    ``Runtime.InvalidEvent`` without calling ``function``; its result is given
    to ``encoder`` and posted as JSON.  ``function`` may be a coroutine function
    (``start_json``'s overloads tie its result to ``encoder``'s argument).
    """
    if is_coroutine_handler(function):
        return _on_event_loop(function, lambda run: json_handler(decoder, run, encoder))
    loads, _ = _json_codec()  # at load time, as in official_handler

    def call(invocation: Invocation, context: Context) -> Answer:
        try:
            event = decoder(loads(invocation.payload))
        except InvalidEvent:
            raise
        except Exception as exc:
            raise InvalidEvent(f"{type(exc).__name__}: {exc}") from exc
        return Answer(encode_json(encoder(function(event, context))), _JSON)

    return call


def load_handler(spec: str, task_root: str) -> Callable[[Any, Context], Any]:
    """Import ``module.function`` (``dir/module.function`` for folders) from ``task_root``.

    Failures are :class:`InitError` with the official runtime's types and messages.
    """
    modname, _, fname = spec.rpartition(".")
    if not modname or not fname:
        raise InitError(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{spec}': not enough values to unpack (expected 2, got 1)",
        )
    modname = modname.replace("/", ".")
    if modname.split(".", 1)[0] in sys.builtin_module_names:
        raise InitError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {modname} as a handler module",
        )
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}"
        ) from exc
    except SyntaxError as exc:
        raise InitError(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{modname}': {exc}",
            [f'  File "{exc.filename}" Line {exc.lineno}\n    {(exc.text or "").strip()}\n'],
        ) from exc
    except SystemExit as exc:
        raise InitError(
            "Runtime.ExitError", runtime_exited(f"exit status {exit_code(exc)}")
        ) from exc
    except Exception as exc:
        raise InitError(type(exc).__name__, str(exc), handler_stack(exc)) from exc
    function = getattr(module, fname, None)
    if function is None or not callable(function):
        raise InitError(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        )
    return function  # type: ignore[no-any-return]


def exit_code(exc: SystemExit) -> int:
    """The process exit status ``sys.exit(code)`` means."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


def exit_error(request_id: str, exc: BaseException) -> InvocationError:
    """``Runtime.ExitError`` for a handler that asked the process to end."""
    reason = f"exit status {exit_code(exc)}" if isinstance(exc, SystemExit) else type(exc).__name__
    return InvocationError(
        "Runtime.ExitError", runtime_exited(reason, request_id), handler_stack(exc)
    )
