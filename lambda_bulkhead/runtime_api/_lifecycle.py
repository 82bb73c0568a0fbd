"""The Extensions API and SnapStart calls, as pure functions: no sockets here.

Graceful shutdown: Lambda sends SIGTERM to a runtime at shutdown only when an
extension is registered, so the runtime registers one of its own (an
*internal* extension, subscribed to no event) before its first ``/next``:
``POST /2020-01-01/extension/register`` (header ``Lambda-Extension-Name``,
body ``{"events": []}``) answers the identifier in ``Lambda-Extension-Identifier``;
``GET /2020-01-01/extension/event/next`` with that header is then left
waiting on a connection of its own, since Lambda ends init only once every
extension waits there.  With no event subscribed it is never answered.

SnapStart (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``): after the
before-snapshot hooks, ``GET /2018-06-01/runtime/restore/next`` returns once
the environment was restored from the snapshot; a failing before-snapshot
hook is posted to ``/runtime/init/error``, a failing after-restore hook to
``/runtime/restore/error``, each with the header value the official runtime
(awslambdaric 4.2) sends and its error body (``errorType`` the exception's
class).  The transports send these :class:`Request` values like any other.
"""

from __future__ import annotations

from lambda_bulkhead._errors import InvocationError, UnexpectedStatus
from lambda_bulkhead.runtime_api._protocol import (
    API_PREFIX,
    ERROR_CONTENT_TYPE,
    ERROR_TYPE_HEADER,
    INIT_ERROR_PATH,
    Request,
    Response,
    error_body,
)

__all__ = [
    "AFTER_RESTORE_ERROR",
    "BEFORE_SNAPSHOT_ERROR",
    "EXTENSION_NAME",
    "after_restore_error_request",
    "before_snapshot_error_request",
    "check_restored",
    "event_next_request",
    "parse_register",
    "register_request",
    "restore_next_request",
]

EXTENSION_PREFIX = "/2020-01-01/extension"
#: The internal extension's name (any name will do for an internal one).
EXTENSION_NAME = "lambda-bulkhead"
NAME_HEADER = "Lambda-Extension-Name"
IDENTIFIER_HEADER = "Lambda-Extension-Identifier"
#: The error types the official runtime sends in the header for a failing hook.
BEFORE_SNAPSHOT_ERROR = "Runtime.BeforeSnapshotError"
AFTER_RESTORE_ERROR = "Runtime.AfterRestoreError"


def register_request(name: str = EXTENSION_NAME) -> Request:
    """Register an extension that subscribes to no event (shutdown signals only)."""
    return Request(
        "extension/register",
        "POST",
        f"{EXTENSION_PREFIX}/register",
        ((NAME_HEADER, name), ("Content-Type", "application/json")),
        b'{"events": []}',
    )


def parse_register(response: Response) -> str:
    """The identifier the register answer gives; :class:`UnexpectedStatus` otherwise."""
    identifier = response.headers.get(IDENTIFIER_HEADER.lower(), "")
    if response.status != 200 or not identifier:
        raise UnexpectedStatus("extension/register", response.status, response.body)
    return identifier


def event_next_request(identifier: str) -> Request:
    """The extension's wait for its next event (never answered: none subscribed)."""
    return Request(
        "extension/event/next", "GET", f"{EXTENSION_PREFIX}/event/next",
        ((IDENTIFIER_HEADER, identifier),),
    )


def restore_next_request() -> Request:
    """Returns once the environment was restored from the snapshot."""
    return Request("restore/next", "GET", f"{API_PREFIX}/restore/next")


def check_restored(response: Response) -> None:
    """:class:`UnexpectedStatus` unless ``restore/next`` answered 200."""
    if response.status != 200:
        raise UnexpectedStatus("restore/next", response.status, response.body)


def _hook_error_request(call: str, path: str, header: str, error: InvocationError) -> Request:
    headers = (("Content-Type", ERROR_CONTENT_TYPE), (ERROR_TYPE_HEADER, header))
    # requestId "": as the official runtime's init error body.
    return Request(call, "POST", path, headers, error_body(error, ""))


def before_snapshot_error_request(error: InvocationError) -> Request:
    """A before-snapshot hook (or ``restore/next`` itself) failed: ``/init/error``."""
    return _hook_error_request("init/error", INIT_ERROR_PATH, BEFORE_SNAPSHOT_ERROR, error)


def after_restore_error_request(error: InvocationError) -> Request:
    """An after-restore hook failed: ``/restore/error``."""
    return _hook_error_request(
        "restore/error", f"{API_PREFIX}/restore/error", AFTER_RESTORE_ERROR, error
    )
