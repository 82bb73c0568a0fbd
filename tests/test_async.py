"""Coroutine handlers (``async def handler(event, context)``): run on one event loop
per worker (per thread in-process) that persists between invocations, stopped at
the deadline with the coroutine's stack, failures reported as for plain handlers;
in this process, through ``lambda-bulkhead run`` (both isolations), through
``start``/``start_json``, and beside the official runtime, which cannot run them."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib
import inspect
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _keepalive import KeepAliveServer, serving
from _limits_helpers import error_body, invoke, report, start_supervised
from conftest import (
    REPO_ROOT,
    MakeEmulator,
    RuntimeProcess,
    StartRuntime,
    runtime_env,
    write_module_files,
)

from lambda_bulkhead import Context, HandlerCrash, Invocation, InvocationError
from lambda_bulkhead._context import FunctionMeta
from lambda_bulkhead.emulator import Emulator, InvokeResult
from lambda_bulkhead.handler._coroutines import HANDLER_TASK, MAX_DEPTH, MAX_TASKS, task_stacks
from lambda_bulkhead.handler._handler import (
    _CO_COROUTINE,
    Answer,
    CoreHandler,
    CoroutineHandler,
    execute,
    is_coroutine_handler,
    json_handler,
    official_handler,
    raw_handler,
)

META = FunctionMeta(function_name="f")
ISOLATIONS = ["process", "none"]


# -- which handlers are coroutine handlers ------------------------------------------------


async def _async_function(event: Any, context: Context) -> Any:
    return event


def _sync_function(event: Any, context: Context) -> Any:
    return event


@functools.wraps(_async_function)
def _decorated(event: Any, context: Context) -> Any:
    """A plain decorator around an async def, as handler decorators are written."""
    return _async_function(event, context)


def _returns_a_coroutine(event: Any, context: Context) -> Any:
    """Not marked (no functools.wraps): nothing says it is a coroutine handler."""
    return _async_function(event, context)


class _AsyncCallable:
    async def __call__(self, event: Any, context: Context) -> Any:
        return event

    async def method(self, event: Any, context: Context) -> Any:
        return event


def test_coroutine_flag_is_inspects() -> None:
    """The code flag tested is inspect's CO_COROUTINE (inspect is not imported to test it)."""
    assert inspect.CO_COROUTINE == _CO_COROUTINE


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (_async_function, True),
        (functools.partial(_async_function, {}), True),
        (_AsyncCallable().method, True),
        (_AsyncCallable(), True),
        (_decorated, True),
        (_sync_function, False),
        (functools.partial(_sync_function, {}), False),
        (print, False),
        (_returns_a_coroutine, False),
    ],
    ids=["async-def", "partial", "method", "callable-object", "wraps", "sync", "sync-partial",
         "builtin", "unmarked-returning-a-coroutine"],
)
def test_is_coroutine_handler(function: Callable[..., Any], expected: bool) -> None:
    """Coroutine functions are found through methods, partials, __call__ and __wrapped__."""
    assert is_coroutine_handler(function) is expected


def test_plain_handlers_are_wrapped_as_before() -> None:
    """A plain function gets the plain wrapper: no event loop, nothing added per call."""
    assert not isinstance(official_handler(_sync_function), CoroutineHandler)
    assert not isinstance(raw_handler(lambda payload, context: payload), CoroutineHandler)
    assert not isinstance(json_handler(dict, _sync_function, dict), CoroutineHandler)


def test_loading_a_plain_handler_imports_no_asyncio(task_root: Path) -> None:
    """Only a coroutine handler brings in asyncio (and the loop machinery) at load."""
    write_module_files(task_root, {
        "plain.py": "def handler(event, context):\n    return event\n",
        "coro.py": "async def handler(event, context):\n    return event\n",
    })
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(REPO_ROOT)!r}, {str(task_root)!r}]\n"
        "from lambda_bulkhead.handler._handler import load_handler, official_handler\n"
        "official_handler(load_handler(sys.argv[1], sys.argv[2]))\n"
        "watched = ('asyncio', 'lambda_bulkhead.handler._coroutines')\n"
        "print(sorted(m for m in watched if m in sys.modules))\n"
    )
    imported = {
        spec: subprocess.run(
            [sys.executable, "-S", "-c", code, spec, str(task_root)],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
        for spec in ("plain.handler", "coro.handler")
    }
    assert imported == {
        "plain.handler": "[]",
        "coro.handler": "['asyncio', 'lambda_bulkhead.handler._coroutines']",
    }


# -- in this process ------------------------------------------------------------------------


@pytest.fixture
def wrap() -> Iterator[Callable[[CoreHandler], CoroutineHandler]]:
    """Checks a handler is a CoroutineHandler; closes the loops it made at teardown."""
    made: list[CoroutineHandler] = []

    def check(handler: CoreHandler) -> CoroutineHandler:
        assert isinstance(handler, CoroutineHandler)
        made.append(handler)
        return handler

    yield check
    asyncio.set_event_loop(None)
    for handler in made:
        loop = handler.loops.loop
        if loop is not None:
            loop.close()


def run(handler: CoreHandler, payload: bytes = b"{}", content_type: str = "application/json"
        ) -> Answer:
    return execute(handler, Invocation("req-1", payload, content_type=content_type), META)


def test_wrapping_makes_no_loop(wrap: Callable[[CoreHandler], CoroutineHandler]) -> None:
    """The template only wraps the handler: no loop exists until the first invocation, so
    each worker makes its own after the fork (none shares the template's selector)."""

    async def handler(event: Any, context: Context) -> Any:
        return event

    core = wrap(official_handler(handler))
    assert core.loops.loop is None
    run(core)
    assert core.loops.loop is not None


def test_one_loop_persists_between_invocations(
    wrap: Callable[[CoreHandler], CoroutineHandler],
) -> None:
    """Every invocation runs on the same loop; a task left running goes on in the next one."""
    ticks: list[int] = []
    background: list[asyncio.Task[None]] = []

    async def tick() -> None:
        while True:
            ticks.append(len(ticks))
            await asyncio.sleep(0)

    async def handler(event: Any, context: Context) -> Any:
        if event.get("stop"):
            background[0].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background[0]
        elif not background:
            background.append(asyncio.create_task(tick()))
        await asyncio.sleep(0.01)
        return {"loop": id(asyncio.get_running_loop()), "ticks": len(ticks)}

    core = wrap(official_handler(handler))
    first, second = (json.loads(run(core).body) for _ in range(2))
    assert first["loop"] == second["loop"]
    assert 0 < first["ticks"] < second["ticks"]
    run(core, b'{"stop": true}')


def test_each_thread_has_its_own_loop(wrap: Callable[[CoreHandler], CoroutineHandler]) -> None:
    """In-process runtimes serving from several threads run each thread's own loop."""

    async def handler(event: Any, context: Context) -> int:
        await asyncio.sleep(0)
        return id(asyncio.get_running_loop())

    core = wrap(official_handler(handler))
    here = [json.loads(run(core).body) for _ in range(2)]
    there: list[int] = []

    def serve() -> None:
        there.extend(json.loads(run(core).body) for _ in range(2))
        loop = core.loops.loop  # this thread's
        assert loop is not None
        loop.close()

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    assert here[0] == here[1]
    assert there[0] == there[1]
    assert here[0] != there[0]


def test_official_encodings_apply_to_a_coroutine_result(
    wrap: Callable[[CoreHandler], CoroutineHandler],
) -> None:
    """bytes are posted raw, anything else as JSON, as for a plain handler."""

    async def handler(event: Any, context: Context) -> Any:
        await asyncio.sleep(0)
        return event if isinstance(event, bytes) else {"got": event}

    core = wrap(official_handler(handler))
    assert run(core, b'{"a": 1}') == Answer(b'{"got":{"a":1}}', "application/json")
    assert run(core, b"\x00", "application/octet-stream") == Answer(b"\x00", "application/unknown")


def test_a_decorated_coroutine_handler_runs_on_the_loop(
    wrap: Callable[[CoreHandler], CoroutineHandler],
) -> None:
    """A plain decorator (functools.wraps) around an async def: its coroutine is awaited."""

    async def handler(event: Any, context: Context) -> Any:
        await asyncio.sleep(0)
        return {"n": event["n"] + 1}

    @functools.wraps(handler)
    def decorated(event: Any, context: Context) -> Any:
        return handler(event, context)

    assert run(wrap(official_handler(decorated)), b'{"n": 1}').body == b'{"n":2}'


def test_a_decorator_may_return_the_value_itself(
    wrap: Callable[[CoreHandler], CoroutineHandler],
) -> None:
    """A functools.wraps decorator around an async def that returns a plain value: posted."""

    async def handler(event: Any, context: Context) -> Any:
        return event

    @functools.wraps(handler)
    def already_ran(event: Any, context: Context) -> Any:
        return {"from": "decorator"}

    assert run(wrap(official_handler(already_ran))).body == b'{"from":"decorator"}'


def test_the_loop_is_current_and_context_variables_do_not_leak(
    wrap: Callable[[CoreHandler], CoroutineHandler],
) -> None:
    """asyncio.get_event_loop() is the running loop; a contextvar set in one invocation
    is unset in the next (each task runs in a copy of the thread's context)."""
    seen = contextvars.ContextVar[str]("seen")

    async def handler(event: Any, context: Context) -> Any:
        before = seen.get("unset")
        seen.set("set")
        current = asyncio.get_event_loop_policy().get_event_loop()
        return {"before": before, "current": current is asyncio.get_running_loop()}

    core = wrap(official_handler(handler))
    answers = [json.loads(run(core).body) for _ in range(2)]
    assert answers == [{"before": "unset", "current": True}] * 2


def test_the_loop_comes_from_the_event_loop_policy(
    wrap: Callable[[CoreHandler], CoroutineHandler],
) -> None:
    """A policy installed at import (as `uvloop.install()` does) makes the loop."""

    class CustomLoop(asyncio.SelectorEventLoop):
        pass

    class CustomPolicy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return CustomLoop()

    async def handler(event: Any, context: Context) -> str:
        return type(asyncio.get_running_loop()).__name__

    asyncio.set_event_loop_policy(CustomPolicy())
    try:
        assert run(wrap(official_handler(handler))).body == b'"CustomLoop"'
    finally:
        asyncio.set_event_loop_policy(None)


def test_an_unmarked_function_returning_an_awaitable_is_a_marshal_error() -> None:
    """As in the official runtime: only a function that is (or wraps) an async def is awaited."""

    class Later:
        def __await__(self) -> Iterator[None]:
            yield None

    def returns_an_awaitable(event: Any, context: Context) -> Any:
        return Later()

    with pytest.raises(InvocationError) as caught:
        run(official_handler(returns_an_awaitable))
    assert caught.value.error_type == "Runtime.MarshalError"
    assert "Object of type Later is not JSON serializable" in caught.value.error_message


def test_raw_and_json_handlers_take_coroutines(
    wrap: Callable[[CoreHandler], CoroutineHandler],
) -> None:
    """start's and start_json's wrappers run a coroutine handler as a plain one."""

    async def reverse(payload: bytes, context: Context) -> bytes:
        await asyncio.sleep(0)
        return payload[::-1]

    async def greet(name: str, context: Context) -> str:
        await asyncio.sleep(0)
        return "hello " + name

    raw = wrap(raw_handler(reverse))
    assert run(raw, b"abc", "application/octet-stream") == Answer(b"cba", "application/unknown")
    typed = wrap(json_handler(lambda data: data["name"], greet, lambda text: {"greeting": text}))
    assert run(typed, b'{"name": "Ada"}').body == b'{"greeting":"hello Ada"}'


def test_a_coroutine_exception_is_reported_as_a_plain_handlers(
    wrap: Callable[[CoreHandler], CoroutineHandler], task_root: Path
) -> None:
    """Same type, message and stack (from the handler's frame, no runtime or asyncio frames)."""
    write_module_files(task_root, {"failing.py": """\
        import asyncio

        def helper(n):
            return 1 / n

        async def ahelper(n):
            await asyncio.sleep(0)
            return 1 / n

        def handler(event, context):
            return helper(event["n"])

        async def async_handler(event, context):
            return await ahelper(event["n"])
    """})
    sys.path.insert(0, str(task_root))
    try:
        failing = importlib.import_module("failing")
    finally:
        sys.path.remove(str(task_root))
        sys.modules.pop("failing", None)
    errors = []
    for core in (official_handler(failing.handler), wrap(official_handler(failing.async_handler))):
        with pytest.raises(HandlerCrash) as caught:
            run(core, b'{"n": 0}')
        errors.append(caught.value)
    plain, coroutine = errors
    assert (coroutine.error_type, coroutine.error_message) == ("ZeroDivisionError",
                                                                "division by zero")
    path = task_root / "failing.py"
    # Only the frame lines: Python 3.11+ may add a line of carets under each.
    expected = {
        plain: [
            f'  File "{path}", line 11, in handler\n    return helper(event["n"])\n',
            f'  File "{path}", line 4, in helper\n    return 1 / n\n',
        ],
        coroutine: [
            f'  File "{path}", line 14, in async_handler\n    return await ahelper(event["n"])\n',
            f'  File "{path}", line 8, in ahelper\n    return 1 / n\n',
        ],
    }
    for error, lines in expected.items():
        assert len(error.stack_trace) == len(lines)
        for line, start in zip(error.stack_trace, lines, strict=True):
            assert line.startswith(start), (line, start)


def test_task_stacks_put_the_invocation_first_and_stop_at_a_limit() -> None:
    """The invocation's task comes first, innermost frame first; past MAX_TASKS the rest
    are counted; past MAX_DEPTH a chain is cut (innermost frames kept)."""

    async def deep(n: int) -> None:
        if n:
            await deep(n - 1)
        else:
            await asyncio.sleep(60)

    async def invocation() -> None:
        await deep(MAX_DEPTH + 10)

    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(asyncio.sleep(60)) for _ in range(MAX_TASKS + 5)]
    tasks.append(loop.create_task(invocation(), name=HANDLER_TASK))
    try:
        loop.run_until_complete(asyncio.sleep(0.01))
        lines = task_stacks(loop).splitlines()
    finally:
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()
    headers = [line for line in lines if line.startswith("Task ")]
    assert headers[0] == "Task 'handler' (most recent call first):"
    assert len(headers) == MAX_TASKS
    assert lines[-1] == "... and 6 more tasks"
    first = lines[1:lines.index(headers[1])]
    assert len(first) == MAX_DEPTH + 1
    assert first[0].endswith(" in sleep")
    assert first[1].endswith(" in deep")  # awaiting asyncio.sleep
    assert first[2].endswith(" in deep")  # awaiting deep(n - 1)
    assert first[2:MAX_DEPTH] == [first[2]] * (MAX_DEPTH - 2)
    assert first[-1] == "  ..."


# -- through a real runtime --------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[KeepAliveServer]:
    """A loopback keep-alive server answering ``hello``, counting connections."""
    with serving() as started:
        yield started


SESSION_APP = """
import asyncio
import os

import httpx

client = None  # made on first use, inside the loop, as aiohttp/aioboto3 sessions are


async def handler(event, context):
    global client
    if client is None:
        client = httpx.AsyncClient()
    await asyncio.sleep(event.get("pause", 0))
    response = await client.get(event["url"])
    return {"pid": os.getpid(), "body": response.text, "loop": id(asyncio.get_running_loop())}
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_session_keeps_its_connection_between_invocations(
    runtime: StartRuntime, server: KeepAliveServer, isolation: str
) -> None:
    """An httpx.AsyncClient made on the first invocation reuses one connection for all."""
    rt = runtime(modules={"app.py": SESSION_APP}, isolation=isolation)
    answers = []
    for _ in range(3):
        result = invoke(rt, {"url": server.url})
        assert result.kind == "response", (result.body, rt.describe())
        answers.append(json.loads(result.body))
    assert [a["body"] for a in answers] == ["hello"] * 3
    assert len({(a["pid"], a["loop"]) for a in answers}) == 1
    assert server.connections == 1


def test_concurrent_workers_each_keep_their_own_loop_and_connection(
    runtime: StartRuntime, make_emulator: MakeEmulator, server: KeepAliveServer
) -> None:
    """BULKHEAD_WORKERS=2: invocations overlapping in pairs run on two workers, each with
    its own persistent loop and its own one connection."""
    emu = make_emulator(timeout_s=20.0)
    rt = start_supervised(runtime, emu, SESSION_APP, env={"BULKHEAD_WORKERS": "2"})
    assert emu.wait_for_next_poll(timeout=20, polls=2), rt.describe()
    answers = []
    for _ in range(3):
        futures = [emu.submit(json.dumps({"url": server.url, "pause": 0.3}).encode())
                   for _ in range(2)]
        answers += [body_of(future.result(timeout=30)) for future in futures]
    loops_by_pid: dict[int, set[int]] = {}
    for answer in answers:
        loops_by_pid.setdefault(answer["pid"], set()).add(answer["loop"])
    assert len(loops_by_pid) == 2, answers
    assert all(len(loops) == 1 for loops in loops_by_pid.values()), answers
    assert server.connections == 2


DEADLINE_APP = """
import asyncio
import ctypes


async def wait_forever():
    await asyncio.sleep(60)


async def handler(event, context):
    if event["action"] == "await":
        await wait_forever()
    if event["action"] == "c_sleep":
        ctypes.CDLL(None).sleep(10)  # blocks the loop itself, in libc
    return "done"
"""


@pytest.fixture
def deadline_rt(runtime: StartRuntime, make_emulator: MakeEmulator) -> RuntimeProcess:
    """A supervised runtime serving DEADLINE_APP, stopping it 250 ms before a 2 s deadline."""
    emu = make_emulator(timeout_s=2.0)
    return start_supervised(
        runtime, emu, DEADLINE_APP, env={"BULKHEAD_TIMEOUT_MARGIN_MS": "250"}
    )


def _timed_out_stack(rt: RuntimeProcess, action: str) -> str:
    result = invoke(rt, {"action": action})
    error = error_body(result)
    assert error["errorType"] == "Sandbox.Timedout", (error, rt.describe())
    assert report(rt, result.request_id)["outcome"] == "timeout"
    return "".join(error["stackTrace"])


def test_a_timeout_inside_an_await_reports_the_coroutines_stack(
    deadline_rt: RuntimeProcess,
) -> None:
    """Stopped in `await asyncio.sleep`: the stack shows where the handler awaits."""
    stack = _timed_out_stack(deadline_rt, "await")
    assert "Task 'handler' (most recent call first):\n" in stack, stack
    task_part = stack.split("Task 'handler'", 1)[1]
    assert task_part.index(" in sleep\n") < task_part.index(" in wait_forever\n") \
        < task_part.index(" in handler\n"), stack
    assert "lambda_bulkhead" not in stack, stack
    after = invoke(deadline_rt, {"action": "ok"})
    assert after.kind == "response", after.body
    assert deadline_rt.poll() is None


def test_a_loop_blocked_in_c_still_has_its_stack_dumped(deadline_rt: RuntimeProcess) -> None:
    """faulthandler's own dump still comes first, for a coroutine that blocks the loop in C."""
    stack = _timed_out_stack(deadline_rt, "c_sleep")
    thread_part = stack.split("Task 'handler'", 1)[0]
    assert " in handler\n" in thread_part, stack


ERROR_APP = """
import asyncio


async def inner(key):
    await asyncio.sleep(0)
    raise KeyError(key)


async def handler(event, context):
    try:
        await inner("k")
    except KeyError as exc:
        raise ValueError("boom") from exc
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_coroutine_exception_through_the_runtime(
    runtime: StartRuntime, task_root: Path, isolation: str
) -> None:
    """The official error body, stack from the handler's frame; the loop serves the next one."""
    rt = runtime(modules={"app.py": ERROR_APP}, isolation=isolation)
    for _ in range(2):
        error = error_body(invoke(rt, {}))
        assert list(error)[:4] == ["errorMessage", "errorType", "requestId", "stackTrace"]
        assert (error["errorType"], error["errorMessage"]) == ("ValueError", "boom")
        app = task_root / "app.py"
        (line,) = error["stackTrace"]
        assert line.startswith(
            f'  File "{app}", line 14, in handler\n    raise ValueError("boom") from exc\n'
        )
        (cause,) = error["causes"]
        assert cause["errorType"] == "KeyError"
        assert [line.split(",")[1:3] for line in cause["stackTrace"]] == [
            [" line 12", " in handler\n    await inner(\"k\")\n"],
            [" line 7", " in inner\n    raise KeyError(key)\n"],
        ], cause
    assert rt.poll() is None


CANCEL_APP = """
import asyncio
import os


async def handler(event, context):
    if event.get("cancel"):
        asyncio.current_task().cancel()
    await asyncio.sleep(0)
    return {"pid": os.getpid(), "loop": id(asyncio.get_running_loop())}
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_cancelled_invocation_is_a_handler_error(
    runtime: StartRuntime, isolation: str
) -> None:
    """CancelledError (a BaseException) out of the handler fails only its invocation:
    the worker, or the in-process runtime, and its loop serve the next one."""
    rt = runtime(modules={"app.py": CANCEL_APP}, isolation=isolation)
    before = json.loads(invoke(rt, {}).body)
    error = error_body(invoke(rt, {"cancel": True}))
    assert (error["errorType"], error["errorMessage"]) == ("CancelledError", "")
    assert " in handler\n" in error["stackTrace"][0]
    after = json.loads(invoke(rt, {}).body)
    assert after == before
    assert rt.poll() is None


def test_sys_exit_in_a_coroutine_is_an_exit_error(runtime: StartRuntime) -> None:
    """sys.exit in an async handler: Runtime.ExitError, as for a plain handler; the worker
    (and so its loop) is replaced."""
    rt = runtime(modules={"app.py": CANCEL_APP.replace(
        '    if event.get("cancel"):',
        '    if event.get("exit"):\n        import sys\n        sys.exit(3)\n'
        '    if event.get("cancel"):',
    )}, isolation="process")
    before = json.loads(invoke(rt, {}).body)
    error = error_body(invoke(rt, {"exit": True}))
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert json.loads(invoke(rt, {}).body)["pid"] != before["pid"]


def test_the_async_client_example_reuses_its_connection(
    runtime: StartRuntime, server: KeepAliveServer, emulator: Emulator, task_root: Path
) -> None:
    """examples/async_client.py, as a handler and through start_json: one connection each."""
    rt = runtime("examples.async_client.handler", modules={})
    as_handler = [body_of(invoke(rt, {"url": server.url})) for _ in range(2)]
    assert as_handler == [{"url": server.url, "status": 200, "bytes": 5}] * 2
    assert server.connections == 1
    rt.stop()
    proc = RuntimeProcess([sys.executable, "-m", "examples.async_client"],
                          runtime_env(emulator, task_root), task_root, emulator)
    try:
        via_start_json = [body_of(invoke(proc, {"url": server.url})) for _ in range(2)]
    finally:
        proc.cleanup()
    assert via_start_json == [{"url": server.url, "status": 200, "bytes": 5,
                               "via": "start_json"}] * 2
    assert server.connections == 2


def body_of(result: InvokeResult) -> Any:
    """A response's JSON body (fails on an error)."""
    assert result.kind == "response", result.body
    return json.loads(result.body)


# -- start / start_json ---------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_start_json_with_a_coroutine_handler(
    script: Callable[[str], RuntimeProcess], isolation: str
) -> None:
    """start_json(decoder, async handler, encoder): decoded, awaited on one loop, encoded."""
    proc = script(f"""
        import asyncio, os
        os.environ["BULKHEAD_ISOLATION"] = {isolation!r}
        from lambda_bulkhead import start_json

        async def handler(name, context):
            await asyncio.sleep(0)
            return {{"greeting": "hello " + name, "loop": id(asyncio.get_running_loop()),
                    "pid": os.getpid()}}

        start_json(lambda data: data["name"], handler, lambda result: result)
    """)
    answers = []
    for name in ("Ada", "Grace"):
        result = proc.invoke(json.dumps({"name": name}))
        assert result.kind == "response", proc.describe()
        answers.append(json.loads(result.body))
    assert [a["greeting"] for a in answers] == ["hello Ada", "hello Grace"]
    assert answers[0]["loop"] == answers[1]["loop"]
    assert answers[0]["pid"] == answers[1]["pid"]
    rejected = proc.invoke(b'{"nom": 1}')
    assert json.loads(rejected.body)["errorType"] == "Runtime.InvalidEvent"


def test_start_with_a_coroutine_handler(script: Callable[[str], RuntimeProcess]) -> None:
    """start(async handler): bytes in, awaited, bytes out."""
    proc = script("""
        import asyncio
        from lambda_bulkhead import start

        async def handler(payload, context):
            await asyncio.sleep(0)
            return payload[::-1]

        start(handler)
    """)
    result = proc.invoke(b"abc", content_type="application/octet-stream")
    assert result.kind == "response", proc.describe()
    assert result.body == b"cba"


# -- beside the official runtime -------------------------------------------------------------


SIDE_BY_SIDE_APP = """
import asyncio
import functools


async def handler(event, context):
    await asyncio.sleep(0)
    return {"ok": True}


@functools.wraps(handler)
def decorated(event, context):
    return handler(event, context)


def unmarked(event, context):
    return handler(event, context)


def runs_its_own_loop(event, context):
    return asyncio.run(handler(event, context))
"""
MARSHAL_ERROR = ("Runtime.MarshalError",
                 "Unable to marshal response: Object of type coroutine is not JSON serializable")


@pytest.mark.parametrize(
    ("function", "official", "ours"),
    [
        ("handler", MARSHAL_ERROR, b'{"ok":true}'),
        ("decorated", MARSHAL_ERROR, b'{"ok":true}'),
        ("unmarked", MARSHAL_ERROR, MARSHAL_ERROR),
        ("runs_its_own_loop", b'{"ok": true}', b'{"ok":true}'),
    ],
)
def test_beside_the_official_runtime(
    make_emulator: MakeEmulator, runtime: StartRuntime, task_root: Path, function: str,
    official: bytes | tuple[str, str], ours: bytes | tuple[str, str],
) -> None:
    """awslambdaric cannot run a coroutine handler (Runtime.MarshalError) that lambda-bulkhead
    runs; both agree on unmarked awaitables and on handlers running asyncio.run."""
    pytest.importorskip("awslambdaric")
    write_module_files(task_root, {"app.py": SIDE_BY_SIDE_APP})
    spec = f"app.{function}"
    emulator = make_emulator(timeout_s=3.0)
    proc = RuntimeProcess(
        [sys.executable, "-m", "awslambdaric", spec],
        runtime_env(emulator, task_root, {"_HANDLER": spec}), task_root, emulator,
    )
    try:
        answers = {"official": _outcome(proc.invoke(b"{}"))}
    finally:
        proc.cleanup()
    answers["ours"] = _outcome(runtime(spec, isolation="process").invoke(b"{}"))
    assert answers == {"official": official, "ours": ours}


def _outcome(result: InvokeResult) -> bytes | tuple[str, str]:
    """A response's body, or an error's (errorType, errorMessage)."""
    if result.kind == "response":
        return result.body
    error = error_body(result)
    return error["errorType"], error["errorMessage"]
