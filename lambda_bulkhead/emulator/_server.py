"""The event-loop side of the emulator: the listening socket, routing, and the owner's calls.

Each connection is a :class:`~._wire.Connection` (h11); its requests are routed
to the Runtime API (:mod:`._runtime_api`), the Extensions API
(:mod:`._extensions`) or the invoke endpoint (:mod:`._invoke`), which share
one :class:`~._state.Platform`.  Everything here runs on the emulator's loop
thread; :mod:`._emulator` reaches it only through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time

from lambda_bulkhead.emulator._extensions import ExtensionRoutes
from lambda_bulkhead.emulator._faults import NextFault, PostFault
from lambda_bulkhead.emulator._invoke import INVOKE_PREFIX, InvokeRoutes
from lambda_bulkhead.emulator._records import ExtensionInfo, History
from lambda_bulkhead.emulator._runtime_api import MAX_RESPONSE_BYTES, RuntimeRoutes
from lambda_bulkhead.emulator._state import FunctionConfig, Invocation, PendingFault, Platform
from lambda_bulkhead.emulator._wire import (
    BodySink,
    BufferedBody,
    Connection,
    RequestHead,
    json_error,
)

__all__ = ["INVOKE_PREFIX", "MAX_RESPONSE_BYTES", "Core", "FunctionConfig", "Invocation"]

_SHUTDOWN_GRACE_S = 2.0
_JSON = (("Content-Type", "application/json"),)


class Core:
    """The server: accepts connections, routes their requests, takes the owner's calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: FunctionConfig,
                 history: History, max_finished: int | None) -> None:
        self._loop = loop
        self._platform = Platform(loop, config, history, max_finished)
        self._runtime = RuntimeRoutes(self._platform)
        self._extensions = ExtensionRoutes(self._platform)
        self._invoke = InvokeRoutes(self._platform, self.submit)
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._all_closed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------

    async def listen(self, host: str, port: int) -> int:
        """Bind and start accepting; returns the bound port."""
        self._server = await self._loop.create_server(self._new_connection, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    def _new_connection(self) -> Connection:
        connection = Connection(self._route, self._connection_lost)
        if self._platform.closing:
            self._loop.call_soon(connection.abort)
        self._connections.add(connection)
        return connection

    async def close(self) -> None:
        """Stop accepting, cancel every pending invocation, drop every connection."""
        p = self._platform
        p.closing = True
        if self._server is not None:
            self._server.close()
        self._runtime.cancel_timer()
        for invocation in [*p.in_flight.values(), *p.queue]:
            invocation.on_cancel()
        p.in_flight.clear()
        p.queue.clear()
        for _, waiter in p.poll_waiters:
            waiter.cancel()
        for init_waiter in p.init_waiters:
            init_waiter.cancel()
        p.poll_waiters.clear()
        p.init_waiters.clear()
        for connection in list(self._connections):
            connection.abort()
        if self._connections:
            # connection_lost (which closes each socket) runs on a later loop turn.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), _SHUTDOWN_GRACE_S)
        if self._server is not None:
            await self._server.wait_closed()

    def _connection_lost(self, connection: Connection) -> None:
        p = self._platform
        self._connections.discard(connection)
        if connection in p.polls:
            p.polls.remove(connection)
        self._extensions.connection_lost(connection)
        if p.closing and not self._connections:
            self._all_closed.set()

    def _route(self, connection: Connection, head: RequestHead) -> BodySink:
        for routes in (self._runtime, self._invoke, self._extensions):
            sink = routes.route(connection, head)
            if sink is not None:
                return sink
        message = f"no such endpoint {head.path[:200]!r}"
        return BufferedBody(connection, head, lambda _request: connection.answer(
            404, _JSON, json_error("NotFound", message)))

    # -- the owner's calls (from the Emulator, via call_soon_threadsafe) -----

    def submit(self, invocation: Invocation) -> None:
        """Queue an invoke, or answer it at once if the runtime cannot take it."""
        p = self._platform
        if p.closing:
            invocation.on_cancel()
        elif p.fatal is not None:
            p.finish(invocation, "init_failed", self._runtime.fatal_result(invocation))  # 10
        elif p.exit_reason is not None:
            p.finish(invocation, "exited", self._runtime.exit_result(invocation))  # 11
        else:
            p.queue.append(invocation)
            if p.polls:
                self._runtime.dispatch()

    def inject(self, fault: NextFault | PostFault, times: int) -> None:
        p = self._platform
        if isinstance(fault, NextFault):
            p.next_faults.append(PendingFault(fault, times))
            if p.polls:
                self._runtime.dispatch()
        else:
            p.post_faults.append(PendingFault(fault, times))

    def clear_faults(self) -> None:
        self._platform.next_faults.clear()
        self._platform.post_faults.clear()

    def runtime_exited(self, reason: str) -> None:
        """The runtime process died: fail what it held and what waits (rules 3, 7, 11)."""
        p = self._platform
        self._runtime.runtime_exited(reason)
        while p.queue:
            invocation = p.queue.popleft()
            if not invocation.is_abandoned():
                self.submit(invocation)

    def add_poll_waiter(self, polls: int, waiter: concurrent.futures.Future[None]) -> None:
        """Resolve ``waiter`` once at least ``polls`` /next requests are waiting."""
        self._platform.poll_waiters.append((polls, waiter))
        self._runtime.wake_poll_waiters()

    def add_init_waiter(self, waiter: concurrent.futures.Future[None]) -> None:
        """Resolve ``waiter`` once init is complete."""
        self._platform.init_waiters.append(waiter)
        self._platform.wake_init_waiters()

    def set_stream_reading(self, setting: tuple[int, float] | None) -> None:
        self._platform.stream_reading = setting

    def init_complete(self) -> bool:
        return self._platform.init_complete

    def extensions(self) -> list[ExtensionInfo]:
        return self._extensions.registered

    def begin_shutdown(self, grace_s: float) -> bool:
        """Send SHUTDOWN to subscribed extensions; whether any extension registered."""
        deadline_ms = int((time.time() + grace_s) * 1000)
        return self._extensions.shutdown(deadline_ms)
