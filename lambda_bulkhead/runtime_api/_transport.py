"""The Runtime API transports' interfaces (``typing.Protocol``\\s).

They live apart so that the modules on the cold start name them for the type
checker only and never import ``typing`` (see :mod:`lambda_bulkhead._record`);
``lambda_bulkhead.Transport`` imports this module when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from lambda_bulkhead.runtime_api._protocol import Request, Response

__all__ = ["PipelinedTransport", "Transport"]


class Transport(Protocol):
    """Sends one :class:`Request` and returns its :class:`Response`."""

    def request(self, request: Request, *, timeout: float | None = None) -> Response: ...

    def close(self) -> None: ...


class PipelinedTransport(Transport, Protocol):
    """A transport that can send two requests back to back on its connection."""

    def send_pair(
        self,
        first: Request,
        second: Request,
        *,
        timeout: float | None,
        after_send: Callable[[], object] | None = None,
    ) -> Response: ...

    def receive_pending(self) -> Response: ...

    def clone(self) -> PipelinedTransport: ...
