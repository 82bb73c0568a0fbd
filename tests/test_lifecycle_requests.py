"""The Extensions API and SnapStart requests (issue 17), inspected without sockets."""

from __future__ import annotations

import json

import pytest

from lambda_bulkhead._config import Config
from lambda_bulkhead._errors import ConfigError, InvocationError, UnexpectedStatus
from lambda_bulkhead.runtime_api._lifecycle import (
    after_restore_error_request,
    before_snapshot_error_request,
    event_next_request,
    parse_register,
    register_request,
    restore_next_request,
)
from lambda_bulkhead.runtime_api._protocol import Response


def test_register_request_subscribes_to_no_event() -> None:
    """Register: POST, the extension's name in its header, no event subscribed."""
    request = register_request("lambda-bulkhead")
    assert (request.method, request.path) == ("POST", "/2020-01-01/extension/register")
    assert ("Lambda-Extension-Name", "lambda-bulkhead") in request.headers
    assert json.loads(request.body) == {"events": []}


def test_parse_register_takes_the_identifier() -> None:
    """The identifier comes from the answer's header; a refusal is an UnexpectedStatus."""
    ok = Response(200, {"lambda-extension-identifier": "abc"}, b"{}")
    assert parse_register(ok) == "abc"
    with pytest.raises(UnexpectedStatus):
        parse_register(Response(403, {}, b"{}"))
    with pytest.raises(UnexpectedStatus):
        parse_register(Response(200, {}, b"{}"))


def test_event_next_and_restore_requests() -> None:
    """event/next carries the identifier; restore/next is a GET of the runtime API."""
    request = event_next_request("abc")
    assert (request.method, request.path) == ("GET", "/2020-01-01/extension/event/next")
    assert request.headers == (("Lambda-Extension-Identifier", "abc"),)
    restore = restore_next_request()
    assert (restore.method, restore.path) == ("GET", "/2018-06-01/runtime/restore/next")


def test_hook_error_requests_are_the_official_runtimes() -> None:
    """A before-snapshot failure goes to /init/error, an after-restore one to
    /restore/error, each with the official runtime's header and the error body."""
    error = InvocationError("ValueError", "boom", ["  File \"app.py\", line 1\n"])
    before = before_snapshot_error_request(error)
    after = after_restore_error_request(error)
    assert before.path == "/2018-06-01/runtime/init/error"
    assert after.path == "/2018-06-01/runtime/restore/error"
    assert ("Lambda-Runtime-Function-Error-Type", "Runtime.BeforeSnapshotError") in before.headers
    assert ("Lambda-Runtime-Function-Error-Type", "Runtime.AfterRestoreError") in after.headers
    assert json.loads(after.body) == {
        "errorMessage": "boom", "errorType": "ValueError", "requestId": "",
        "stackTrace": ["  File \"app.py\", line 1\n"],
    }


def test_config_reads_the_lifecycle_settings() -> None:
    """The extension is on unless BULKHEAD_SHUTDOWN_EXTENSION turns it off;
    SnapStart is AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, nothing else."""
    assert Config.from_environ({}).shutdown_extension is True
    assert Config.from_environ({"BULKHEAD_SHUTDOWN_EXTENSION": "off"}).shutdown_extension is False
    with pytest.raises(ConfigError):
        Config.from_environ({"BULKHEAD_SHUTDOWN_EXTENSION": "maybe"})
    assert Config.from_environ({"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}).snap_start
    assert not Config.from_environ({"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}).snap_start
