"""The interface of the runtime's own log (a ``typing.Protocol``).

It lives apart so that the modules on the cold start name it for the type
checker only and never import ``typing`` (see :mod:`lambda_bulkhead._record`).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["RuntimeLog"]


class RuntimeLog(Protocol):
    """Where the runtime's own records go (structlog's bound logger has this shape)."""

    def debug(self, event: str, **fields: Any) -> Any: ...

    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...
