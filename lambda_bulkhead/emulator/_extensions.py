"""The Extensions API: ``register`` and ``event/next``, and the SHUTDOWN event.

What is emulated: registration during init (``Lambda-Extension-Name``, body
``{"events": [...]}`` with ``INVOKE``/``SHUTDOWN``), the identifier it answers,
``event/next`` parking until shutdown, SHUTDOWN sent only to extensions that
subscribed to it, 403 for a missing or unknown identifier.  INVOKE events are
not sent: an extension subscribed to INVOKE stays parked until shutdown.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from lambda_bulkhead.emulator._records import ExtensionInfo
from lambda_bulkhead.emulator._state import Platform
from lambda_bulkhead.emulator._wire import (
    BodySink,
    BufferedBody,
    Connection,
    Request,
    RequestHead,
    json_error,
)

__all__ = ["ExtensionRoutes"]

REGISTER_PATH = "/2020-01-01/extension/register"
EVENT_NEXT_PATH = "/2020-01-01/extension/event/next"
_EVENTS = ("INVOKE", "SHUTDOWN")
_JSON = (("Content-Type", "application/json"),)


@dataclass(slots=True)
class _Extension:
    info: ExtensionInfo
    parked: Connection | None = None
    waited: bool = False  # it has called event/next at least once


class ExtensionRoutes:
    """The registered extensions, and the event/next polls they park."""

    def __init__(self, platform: Platform) -> None:
        self._p = platform
        self._extensions: dict[str, _Extension] = {}
        self._shut_down = False
        platform.extensions_ready = self.all_waiting

    def route(self, connection: Connection, head: RequestHead) -> BodySink | None:
        handler: Callable[[Connection, Request], None]
        if head.path == REGISTER_PATH:
            handler, allowed = self._on_register, "POST"
        elif head.path == EVENT_NEXT_PATH:
            handler, allowed = self._on_event_next, "GET"
        else:
            return None
        if head.method != allowed:
            message = f"method {head.method[:20]} not allowed here; use {allowed}"
            return BufferedBody(connection, head, lambda _request: connection.answer(
                405, (*_JSON, ("Allow", allowed)), json_error("MethodNotAllowed", message)))
        return BufferedBody(connection, head, lambda request: handler(connection, request))

    @property
    def registered(self) -> list[ExtensionInfo]:
        return [extension.info for extension in self._extensions.values()]

    def all_waiting(self) -> bool:
        """Whether every registered extension has called event/next (init can complete)."""
        return all(extension.waited for extension in self._extensions.values())

    def _on_register(self, connection: Connection, request: Request) -> None:
        p = self._p
        name = request.headers.get("lambda-extension-name", "")
        events = _parse_events(request.body)
        if not name or events is None:
            p.record_call("extension/register", name or None, 400)
            message = ("register needs a Lambda-Extension-Name header and a body "
                       '{"events": [...]} of INVOKE and SHUTDOWN')
            connection.answer(400, _JSON, json_error("InvalidRequest", message))
            return
        if p.init_complete:
            p.record_call("extension/register", name, 403)
            message = "extensions register during init, before the runtime's first /next"
            connection.answer(403, _JSON, json_error("Extension.RegistrationNotAllowed", message))
            return
        identifier = str(uuid.uuid4())
        self._extensions[identifier] = _Extension(
            ExtensionInfo(name=name, identifier=identifier, events=tuple(events)))
        p.record_call("extension/register", name, 200)
        config = p.config
        body = json.dumps({"functionName": config.name, "functionVersion": config.version,
                           "handler": config.handler}).encode()
        connection.answer(200, (*_JSON, ("Lambda-Extension-Identifier", identifier)), body)

    def _on_event_next(self, connection: Connection, request: Request) -> None:
        p = self._p
        identifier = request.headers.get("lambda-extension-identifier", "")
        extension = self._extensions.get(identifier)
        if extension is None:
            p.record_call("extension/event/next", None, 403)
            error_type = ("Extension.MissingExtensionIdentifier" if not identifier
                          else "Extension.InvalidExtensionIdentifier")
            message = f"unknown Lambda-Extension-Identifier {identifier[:64]!r}"
            connection.answer(403, _JSON, json_error(error_type, message))
            return
        p.record_call("extension/event/next", extension.info.name)
        extension.parked = connection
        extension.waited = True
        if self._shut_down:
            self._send_shutdown(extension, 0)
            return
        p.wake_init_waiters()
        p.dispatch()

    def shutdown(self, deadline_ms: int) -> bool:
        """Send SHUTDOWN to the parked extensions that subscribed; whether any registered."""
        self._shut_down = True
        self._p.record_call("shutdown")
        for extension in self._extensions.values():
            self._send_shutdown(extension, deadline_ms)
        return bool(self._extensions)

    def _send_shutdown(self, extension: _Extension, deadline_ms: int) -> None:
        connection = extension.parked
        if connection is None or "SHUTDOWN" not in extension.info.events:
            return  # an extension with events [] simply stays parked
        extension.parked = None
        body = json.dumps({"eventType": "SHUTDOWN", "shutdownReason": "spindown",
                           "deadlineMs": deadline_ms or int(time.time() * 1000)}).encode()
        headers = (*_JSON, ("Lambda-Extension-Event-Identifier", str(uuid.uuid4())))
        connection.answer(200, headers, body)

    def connection_lost(self, connection: Connection) -> None:
        for extension in self._extensions.values():
            if extension.parked is connection:
                extension.parked = None


def _parse_events(body: bytes) -> list[str] | None:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    events = parsed.get("events")
    if not isinstance(events, list) or not all(event in _EVENTS for event in events):
        return None
    return [str(event) for event in events]
