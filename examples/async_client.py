"""An async handler that keeps one HTTP client (and its connections) between invocations.

The client is made on first use, inside the worker's event loop, and kept in a
module global: the loop persists between invocations, so later invocations
reuse its keep-alive connections (docs/api.md, "Async handlers").

Try it (any URL the function can reach)::

    echo '{"url": "https://example.com/"}' \
        | lambda-bulkhead invoke examples.async_client.handler --event -

or run it with ``start_json`` (``python -m examples.async_client``), typed.
"""

from __future__ import annotations

from typing import Any

import httpx

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    """The process's client, made on first use (not at import: no loop exists yet then)."""
    global _client  # kept for the life of the worker, on purpose
    if _client is None:
        _client = httpx.AsyncClient(timeout=5.0)
    return _client


async def fetch(url: str) -> dict[str, Any]:
    """GET ``url``: its status and size."""
    response = await client().get(url)
    return {"url": url, "status": response.status_code, "bytes": len(response.content)}


async def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The official handler shape, as an ``async def``."""
    return await fetch(event["url"])


def decode(data: Any) -> str:
    """``start_json``'s decoder: the event's ``url``."""
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise ValueError("field url: expected a string")
    return str(data["url"])


async def typed_handler(url: str, context: Any) -> dict[str, Any]:
    """``start_json``'s handler: the decoded URL in, the awaited result to the encoder."""
    return await fetch(url)


if __name__ == "__main__":
    from lambda_bulkhead import start_json

    start_json(decode, typed_handler, lambda result: {**result, "via": "start_json"})
