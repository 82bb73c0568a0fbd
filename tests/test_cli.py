"""The command line, run as the user runs it (``python -m lambda_bulkhead``):
bad input, ``invoke``, ``local`` (with Ctrl-C), and a handler written for the
official runtime running unchanged under ``invoke``, ``local`` and ``run``."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import REPO_ROOT, StartRuntime, runtime_env, write_module_files

from lambda_bulkhead.emulator import Emulator

WAIT_S = 30.0


def cli(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    cwd: Path = REPO_ROOT,
    stdin: bytes = b"",
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lambda_bulkhead ARGS`` to completion."""
    environ = runtime_env(None, cwd, env)
    environ.pop("LAMBDA_TASK_ROOT")  # the CLI's default: the working directory
    completed = subprocess.run(
        [sys.executable, "-m", "lambda_bulkhead", *args], env=environ, cwd=cwd,
        input=stdin, capture_output=True, timeout=WAIT_S, check=False,
    )
    return subprocess.CompletedProcess(
        completed.args, completed.returncode,
        completed.stdout.decode("utf-8", "replace"), completed.stderr.decode("utf-8", "replace"),
    )


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {}, "the following arguments are required: command"),
        (("frobnicate",), {}, "invalid choice: 'frobnicate'"),
        (("run", "app.handler", "--workers", "many"), {}, "--workers: 'many' is not a whole"),
        (("run", "app.handler", "--workers", "0"), {}, "--workers: 0 is below the minimum of 1"),
        (("run", "app.handler", "--memory-limit-mb", "-5"), {},
         "--memory-limit-mb: -5 is below the minimum of 0"),
        (("run", "app.handler", "--isolation", "maybe"), {}, "--isolation: invalid choice"),
        (("run", "app.handler"), {"BULKHEAD_ISOLATION": "maybe"},
         "BULKHEAD_ISOLATION='maybe': expected 'process' or 'none'"),
        (("run", "app.handler"), {"BULKHEAD_WORKERS": "two"},
         "BULKHEAD_WORKERS='two': expected a whole number"),
        (("run", "app.handler"), {"BULKHEAD_TRANSPORT": "pigeon"}, "BULKHEAD_TRANSPORT='pigeon'"),
        (("run", "app.handler"), {"BULKHEAD_PIPELINE": "maybe"},
         "BULKHEAD_PIPELINE='maybe': expected 1/true/on/yes or 0/false/off/no"),
        (("run", "app.handler"), {"BULKHEAD_COLOCATE": "2"},
         "BULKHEAD_COLOCATE='2': expected 1/true/on/yes or 0/false/off/no"),
        (("run", "app.handler"), {}, "AWS_LAMBDA_RUNTIME_API is not set"),
        (("run", "app.handler"), {"AWS_LAMBDA_RUNTIME_API": "http://127.0.0.1:9001"},
         "is not host:port"),
        (("run",), {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}, "no handler"),
        (("invoke", "examples.hello.handler", "--event", "/no/such/event.json"), {},
         "--event /no/such/event.json: No such file or directory"),
        (("invoke", "examples.hello.handler", "--timeout", "-1"), {}, "--timeout must be > 0"),
        (("invoke", "examples.hello.handler"), {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"},
         "bad function setting"),
        (("local", "examples.hello.handler", "--port", "70000"), {}, "--port 70000"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    """Bad arguments or environment: exit 2, one line on stderr naming the problem, no traceback."""
    result = cli(*args, env=env)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lambda-bulkhead: error: ")
    assert says in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help_lists_the_commands() -> None:
    """--help exits 0 and names run, local and invoke."""
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "local", "invoke"):
        assert command in result.stdout


# -- invoke -------------------------------------------------------------------------------


def test_invoke_hello_prints_the_result() -> None:
    """`invoke examples.hello.handler` prints the handler's JSON result and exits 0."""
    result = cli("invoke", "examples.hello.handler")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["message"] == "hello, world"
    assert body["function"] == "test_function"
    assert result.stdout.count("\n") == 1


def test_invoke_reads_the_event_from_a_file_or_stdin(tmp_path: Path) -> None:
    """--event FILE and --event - both deliver the event."""
    event = tmp_path / "event.json"
    event.write_text('{"name": "Ada"}')
    from_file = cli("invoke", "examples.hello.handler", "--event", str(event))
    from_stdin = cli("invoke", "examples.hello.handler", "--event", "-", stdin=b'{"name": "Bo"}')
    assert json.loads(from_file.stdout)["message"] == "hello, Ada"
    assert json.loads(from_stdin.stdout)["message"] == "hello, Bo"


def test_invoke_of_a_failing_handler_prints_the_error_and_exits_1(task_root: Path) -> None:
    """A handler error: the error JSON on stdout, exit 1."""
    write_module_files(task_root, {"app.py": "def handler(e, c):\n    raise KeyError('id')\n"})
    result = cli("invoke", "app.handler", cwd=task_root)
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert (body["errorType"], body["errorMessage"]) == ("KeyError", "'id'")


def test_invoke_of_a_handler_that_cannot_load_exits_1(task_root: Path) -> None:
    """An init error: the init error JSON on stdout, exit 1."""
    result = cli("invoke", "missing_module.handler", cwd=task_root)
    assert result.returncode == 1
    assert json.loads(result.stdout)["errorType"] == "Runtime.ImportModuleError"


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_invoke_of_a_handler_that_kills_its_process_exits_1(
    task_root: Path, isolation: str
) -> None:
    """A handler that ends its process: Runtime.ExitError on stdout, exit 1."""
    write_module_files(task_root, {"app.py": "import os\ndef handler(e, c):\n    os._exit(9)\n"})
    result = cli("invoke", "app.handler", "--isolation", isolation, cwd=task_root)
    assert result.returncode == 1, result
    body = json.loads(result.stdout)
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 9" in body["errorMessage"]


# -- a handler written for the official runtime ------------------------------------------------

OFFICIAL = {"official.py": """\
    # Written for the official AWS runtime; nothing here knows lambda-bulkhead.
    def handler(event, context):
        cc = context.client_context
        return {
            "event": event,
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
            "app_title": cc.client.app_title if cc and cc.client else None,
            "custom": cc.custom if cc else None,
            "env": cc.env if cc else None,
            "identity": context.identity.cognito_identity_id if context.identity else None,
        }
"""}

MOBILE_CONTEXT = {
    "client": {"installation_id": "i-1", "app_title": "Shop", "app_version_name": "2.0",
               "app_version_code": "20", "app_package_name": "com.example.shop"},
    "custom": {"basket": 3},
    "env": {"platform": "iOS"},
}


def check_official(body: dict[str, Any], *, memory: str, timeout_ms: int, request_id: str | None
                   ) -> None:
    assert re.fullmatch(r"[0-9a-f-]{36}", body["aws_request_id"])
    if request_id is not None:
        assert body["aws_request_id"] == request_id
    assert body["function_name"] == "test_function"
    assert body["function_version"] == "$LATEST"
    assert body["memory_limit_in_mb"] == memory
    assert body["invoked_function_arn"] == (
        "arn:aws:lambda:us-east-1:012345678912:function:test_function"
    )
    assert body["log_group_name"] == "/aws/lambda/test_function"
    assert body["log_stream_name"]
    assert 0 < body["remaining"] <= timeout_ms


def test_official_handler_under_invoke(task_root: Path) -> None:
    """An official-runtime handler runs unchanged under `invoke`, context and all."""
    write_module_files(task_root, OFFICIAL)
    event = task_root / "event.json"
    event.write_text('{"order": 7}')
    result = cli("invoke", "official.handler", "--event", str(event), "--memory", "256",
                 "--timeout", "7", cwd=task_root)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    check_official(body, memory="256", timeout_ms=7000, request_id=None)
    assert body["event"] == {"order": 7}
    assert (body["app_title"], body["custom"], body["identity"]) == (None, None, None)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_official_handler_under_run(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """Under `run`, client_context and identity reach the official-style handler."""
    proc = runtime("official.handler", modules=OFFICIAL, isolation=isolation)
    result = proc.invoke(
        b'{"a": 1}', client_context=MOBILE_CONTEXT,
        cognito_identity={"cognitoIdentityId": "us-east-1:abc", "cognitoIdentityPoolId": "p"},
    )
    assert result.kind == "response", proc.describe()
    body = json.loads(result.body)
    check_official(body, memory="3008", timeout_ms=3000, request_id=result.request_id)
    assert body["app_title"] == "Shop"
    assert body["custom"] == {"basket": 3}
    assert body["env"] == {"platform": "iOS"}
    assert body["identity"] == "us-east-1:abc"


def test_run_with_the_httpx_transport(runtime: StartRuntime) -> None:
    """`run --transport httpx` serves invocations as the default transport does."""
    proc = runtime("official.handler", modules=OFFICIAL, args=["--transport", "httpx"])
    result = proc.invoke(b'{"via": "httpx"}')
    assert result.kind == "response", proc.describe()
    assert json.loads(result.body)["event"] == {"via": "httpx"}


# -- local ---------------------------------------------------------------------------------------


@pytest.fixture
def local(task_root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`lambda-bulkhead local official.handler --port 0` in its own process group."""
    write_module_files(task_root, OFFICIAL)
    environ = runtime_env(None, task_root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambda_bulkhead", "local", "official.handler", "--port", "0",
         "--memory", "512", "--timeout", "5"],
        env=environ, cwd=task_root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.stderr is not None
    proc.stderr.close()


def read_invoke_url(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + WAIT_S
    seen = b""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        match = re.search(rb"(http://127\.0\.0\.1:\d+/\S+)", line)
        if match:
            return match.group(1).decode()
    pytest.fail(f"no invoke URL printed:\n{seen.decode(errors='replace')}")


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    with urllib.request.urlopen(request, timeout=WAIT_S) as answer:  # loopback only
        return answer.status, answer.read()


@pytest.mark.parametrize(
    ("to_group", "signum"),
    [(True, signal.SIGINT), (False, signal.SIGINT), (False, signal.SIGTERM)],
    ids=["ctrl-c", "kill-int", "kill-term"],
)
def test_official_handler_under_local_then_ctrl_c(
    local: subprocess.Popen[bytes], to_group: bool, signum: int
) -> None:
    """`local` prints its URL, serves the official-style handler, and Ctrl-C (SIGINT to
    the group or the CLI) or SIGTERM ends everything cleanly."""
    url = read_invoke_url(local)
    assert not url.startswith("http://127.0.0.1:0/")
    encoded = base64.b64encode(json.dumps(MOBILE_CONTEXT).encode()).decode()
    status, raw = post(url, b'{"from": "curl"}', {"X-Amz-Client-Context": encoded})
    assert status == 200
    body = json.loads(raw)
    check_official(body, memory="512", timeout_ms=5000, request_id=None)
    assert body["event"] == {"from": "curl"}
    assert (body["app_title"], body["custom"], body["env"]) == (
        "Shop", {"basket": 3}, {"platform": "iOS"}
    )
    status, raw = post(url, b"{}")  # a second invoke: the runtime keeps serving
    assert status == 200
    descendants = psutil.Process(local.pid).children(recursive=True)
    assert descendants  # the runtime (and, supervised, its template and worker)

    if to_group:
        os.killpg(local.pid, signum)  # what Ctrl-C in a terminal does
    else:
        local.send_signal(signum)  # `kill` of the CLI process alone
    assert local.wait(WAIT_S) == 0
    assert local.stderr is not None
    rest = local.stderr.read().decode(errors="replace")
    assert "Traceback" not in rest
    assert still_running(descendants, grace=10.0) == []


def still_running(procs: list[psutil.Process], grace: float) -> list[psutil.Process]:
    """Those of ``procs`` still running (zombies count as gone) after up to ``grace`` s."""

    def running(proc: psutil.Process) -> bool:
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + grace
    while (alive := [p for p in procs if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive
