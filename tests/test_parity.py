"""Side by side with the official runtime (awslambdaric 4.2.2, a test dependency):
the context object a handler gets, the error bodies posted for it and the JSON
log records of ``logging``, built from the same inputs by both and compared
name by name, type by type."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from awslambdaric import bootstrap
from awslambdaric.lambda_context import LambdaContext
from conftest import StartRuntime

from lambda_bulkhead._context import FunctionMeta, Invocation, build_context
from lambda_bulkhead._errors import InvocationError
from lambda_bulkhead.emulator import Emulator
from lambda_bulkhead.handler._handler import execute, official_handler
from lambda_bulkhead.logs._format import LogFormat
from lambda_bulkhead.logs._stdlib import LambdaLogFormatter
from lambda_bulkhead.runtime_api._protocol import error_request, init_error_request

ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "orders",
    "AWS_LAMBDA_FUNCTION_VERSION": "7",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/21/[7]abc",
}
CLIENT_CONTEXT = {
    "client": {"installation_id": "inst-1", "app_title": "Shop", "app_version_name": "1.2",
               "app_version_code": "12", "app_package_name": "com.example.shop"},
    "custom": {"cart": [1, 2]},
    "env": {"platform": "Android"},
    "w3c": {"traceparent": "00-abc-def-01", "tracestate": 7, "other": "x"},
}
COGNITO = {"cognitoIdentityId": "us-east-1:id", "cognitoIdentityPoolId": "us-east-1:pool"}
ARN = "arn:aws:lambda:us-east-1:1:function:orders"

#: The headers of an invocation: all of them, none of the optional ones, and the
#: shapes in between the official runtime handles.
CASES: dict[str, dict[str, Any]] = {
    "all headers": {"client_context": CLIENT_CONTEXT, "cognito": COGNITO, "tenant": "t-1",
                    "arn": ARN},
    "no optional header": {"client_context": None, "cognito": None, "tenant": None, "arn": None},
    "client context without client": {"client_context": {"custom": {"a": 1}}, "cognito": None,
                                       "tenant": None, "arn": ARN},
    "cognito without pool": {"client_context": None, "cognito": {"cognitoIdentityId": "i"},
                             "tenant": None, "arn": ARN},
}


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The function's environment, set for awslambdaric (which reads os.environ)."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return ENV


def _both(case: dict[str, Any], env: dict[str, str]) -> tuple[Any, Any]:
    deadline_ms = int(time.time() * 1000) + 60_000
    client_context = case["client_context"]
    cognito = case["cognito"]
    official = bootstrap.create_lambda_context(
        json.dumps(client_context) if client_context is not None else None,
        json.dumps(cognito) if cognito is not None else None,
        deadline_ms, "req-1", case["arn"], case["tenant"],
    )
    ours = build_context(
        Invocation(
            "req-1", b"{}", deadline_ms=deadline_ms, invoked_function_arn=case["arn"] or "",
            client_context=json.dumps(client_context) if client_context is not None else None,
            cognito_identity=json.dumps(cognito) if cognito is not None else None,
            tenant_id=case["tenant"], trace_id="Root=1-a-b", invocation_id="nonce-1",
        ),
        FunctionMeta.from_environ(env),
    )
    return official, ours


def _shape(value: Any) -> Any:
    """A value as a comparable tree: slotted objects by class name and fields."""
    slots = getattr(type(value), "__slots__", None)
    if slots is not None and not isinstance(value, (str, bytes, tuple)):
        fields = {name: _shape(getattr(value, name)) for name in sorted(slots)}
        return type(value).__name__, fields
    return value


@pytest.mark.parametrize("case", sorted(CASES))
def test_context_matches_the_official_lambda_context(
    lambda_env: dict[str, str], case: str
) -> None:
    """Every attribute of awslambdaric's LambdaContext, built from the same headers and
    environment, is on ours with the same type and value (nested objects field by
    field); its instance attributes come first in vars(), in its order."""
    official, ours = _both(CASES[case], lambda_env)
    assert isinstance(official, LambdaContext)
    names = [name for name in dir(official) if not name.startswith("__")]
    for name in names:
        theirs = getattr(official, name)
        if name.startswith("_") and name not in vars(official):
            continue  # a private helper method, not part of what handlers see
        assert hasattr(ours, name), name
        mine = getattr(ours, name)
        if callable(theirs):
            assert callable(mine), name
            continue
        assert type(mine).__name__ == type(theirs).__name__, name
        assert _shape(mine) == _shape(theirs), name
    assert list(vars(ours))[: len(vars(official))] == list(vars(official))
    assert ours.w3c() == official.w3c()
    assert abs(ours.get_remaining_time_in_millis() - official.get_remaining_time_in_millis()) < 50
    assert repr(ours).replace("Context([", "", 1) == repr(official).replace(
        "LambdaContext([", "", 1
    )


def test_our_extras_are_the_documented_ones(lambda_env: dict[str, str]) -> None:
    """Beyond the official attributes: trace_id, invocation_id, deadline_ms and the
    seed API's aliases only (docs/api.md lists them)."""
    official, ours = _both(CASES["all headers"], lambda_env)
    extras = {name for name in dir(ours) if not name.startswith("_")} - set(dir(official))
    assert extras == {"trace_id", "invocation_id", "deadline_ms", "request_id",
                      "cognito_identity"}
    assert (ours.request_id, ours.cognito_identity) == (ours.aws_request_id, ours.identity)
    assert (ours.trace_id, ours.invocation_id) == ("Root=1-a-b", "nonce-1")
    assert ours.deadline_ms == official._epoch_deadline_time_in_ms


def _official_error_body(handler: Any, payload: bytes) -> dict[str, Any]:
    """What awslambdaric posts to /error for ``handler`` given ``payload``: its own
    handle_event_request, with a stand-in for its Runtime API client."""
    posted: list[str] = []

    class Client:
        marshaller = bootstrap.LambdaRuntimeClient.marshaller

        def post_invocation_error(self, invoke_id: str, body: str, xray: str,
                                  invocation_id: str | None = None) -> None:
            posted.append(body)

        def post_invocation_result(self, *args: Any) -> None:
            raise AssertionError("expected an error")

    bootstrap.handle_event_request(
        Client(), handler, "req-1", payload, "application/json", None, None, ARN, 0,
        None, bootstrap.StandardLogSink(), None,
    )
    body: dict[str, Any] = json.loads(posted[0])
    return body


def _our_error_body(handler: Any, payload: bytes) -> dict[str, Any]:
    invocation = Invocation("req-1", payload, invoked_function_arn=ARN)
    with pytest.raises(InvocationError) as caught:
        execute(official_handler(handler), invocation, FunctionMeta())
    body: dict[str, Any] = json.loads(error_request("req-1", caught.value).body)
    return body


def _raises_value_error(event: Any, context: Any) -> None:
    def inner() -> None:
        raise ValueError(f"bad order {event['id']}")

    inner()


def _raises_chained(event: Any, context: Any) -> None:
    lookup: dict[str, int] = {}
    try:
        lookup["missing"]
    except KeyError as exc:
        raise RuntimeError("lookup failed") from exc


@pytest.mark.parametrize(
    ("handler", "payload"),
    [(_raises_value_error, b'{"id": 42}'), (_raises_chained, b"{}"),
     (_raises_value_error, b'{"id": 1'), (_raises_value_error, b"[1, 2]")],
    ids=["exception", "chained", "malformed event", "handler TypeError"],
)
def test_error_bodies_match_the_official_ones(
    capsys: pytest.CaptureFixture[str], handler: Any, payload: bytes
) -> None:
    """For the same handler and event, our /error body has awslambdaric's keys, in its
    order, with the same errorType, requestId and stackTrace (a list of strings,
    starting in user code); only our ``causes`` comes on top, after them."""
    official = _official_error_body(handler, payload)
    capsys.readouterr()  # awslambdaric logs the error on stdout
    ours = _our_error_body(handler, payload)
    assert list(ours)[:4] == list(official) == ["errorMessage", "errorType", "requestId",
                                                "stackTrace"]
    assert set(ours) - set(official) <= {"causes"}
    for key in ("errorType", "requestId", "stackTrace"):
        assert ours[key] == official[key], key
    assert all(isinstance(line, str) for line in ours["stackTrace"])
    # The message: the same, but for the JSON decoder's wording (simplejson there).
    assert ours["errorMessage"].split(":")[0] == official["errorMessage"].split(":")[0]
    if official["errorType"] != "Runtime.UnmarshalError":
        assert ours["errorMessage"] == official["errorMessage"]


def test_init_error_body_matches_the_official_one() -> None:
    """A handler module that cannot be imported: the same /init/error body, requestId
    "" included."""
    with pytest.raises(bootstrap.FaultException) as caught:
        bootstrap._get_handler("no_such_module_here.handler")
    fault = caught.value
    official = bootstrap.make_error(fault.msg, fault.exception_type, fault.trace)
    ours = json.loads(init_error_request(InvocationError(fault.exception_type, fault.msg)).body)
    assert list(ours.items()) == list(official.items())


CONTEXT_APP = {"app.py": """\
    def handler(event, context):
        setattr(context, "tracer_segment", "seg-1")
        context.log("via context.log\\n")
        return {
            "identity": [context.identity.cognito_identity_id,
                         context.identity.cognito_identity_pool_id],
            "clientContext": context.client_context,
            "attached": vars(context)["tracer_segment"],
            "memory": context.memory_limit_in_mb,
            "remainingPositive": context.get_remaining_time_in_millis() > 0,
        }
"""}


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_handler_written_for_the_official_context_runs_in_both_modes(
    runtime: StartRuntime, emulator: Emulator, isolation: str
) -> None:
    """identity without a Cognito header, setattr, vars() and context.log work through
    a real runtime, as under the official one."""
    proc = runtime(modules=CONTEXT_APP, isolation=isolation)
    result = proc.invoke(b"{}")
    assert result.kind == "response", proc.describe()
    assert json.loads(result.body) == {
        "identity": [None, None], "clientContext": None, "attached": "seg-1",
        "memory": "3008", "remainingPositive": True,
    }
    proc.wait_for_line(lambda line: "via context.log" in line)


@pytest.mark.parametrize(
    ("msg", "args"),
    [('{"event": "json text"}', ()), ({"event": "a dict"}, ()), ("order %s stored", (42,))],
    ids=["json text", "dict", "format args"],
)
def test_logging_records_match_the_official_json_formatter(msg: object, args: tuple[object, ...]
                                                           ) -> None:
    """A logging record through awslambdaric's JsonFormatter and through ours: the same
    keys in the same order and the same values (the timestamp aside, whose clock
    setting awslambdaric changes process-wide); a JSON text message stays a string."""
    from awslambdaric.lambda_runtime_log_utils import JsonFormatter  # noqa: PLC0415

    def record() -> logging.LogRecord:
        made = logging.LogRecord("orders", logging.INFO, __file__, 7, msg, args, None)
        made.aws_request_id = "req-1"
        made.tenant_id = None
        made.orderId = 42  # as extra={"orderId": 42} sets it
        return made

    official = json.loads(JsonFormatter().format(record()))
    ours = json.loads(LambdaLogFormatter(LogFormat.JSON).format(record()))
    official.pop("timestamp")
    ours.pop("timestamp")
    assert list(ours.items()) == list(official.items())
