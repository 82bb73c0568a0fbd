"""An HTTP API (payload format 2.0) handler built on the events and responses modules.

Routes, as configured on the API:

- ``GET /hello``: greets ``?name=`` (or the world) and counts visits in a cookie.
- ``POST /echo``: answers the JSON body back, or 400 when it is not JSON.

Try it::

    lambda-bulkhead invoke examples.http_api.handler --event examples/events/http_api.json
"""

from __future__ import annotations

from typing import Any

from lambda_bulkhead import events, responses
from lambda_bulkhead._errors import InvalidEvent


def handler(event: object, context: object) -> dict[str, Any]:
    """Answer one HTTP API request."""
    request = events.ApiGatewayV2Request.decode(event)
    if request.route_key == "GET /hello":
        return hello(request).to_dict()
    if request.route_key == "POST /echo":
        return echo(request).to_dict()
    return responses.json_response(404, {"error": f"no route {request.route_key}"}).to_dict()


def hello(request: events.ApiGatewayV2Request) -> responses.ProxyResponse:
    """Greet ``?name=`` and count the caller's visits in a cookie."""
    name = request.query_params.get("name", "world")
    visits = visit_count(request) + 1
    return responses.json_response(
        200,
        {"message": f"hello, {name}", "visits": visits, "requestId": request.request_id},
        cookies=f"visits={visits}; Path=/; Max-Age=86400; HttpOnly; Secure",
    )


def visit_count(request: events.ApiGatewayV2Request) -> int:
    """The ``visits`` cookie; a missing or forged one counts as none."""
    try:
        return int(request.cookies.get("visits", "0"))
    except ValueError:
        return 0


def echo(request: events.ApiGatewayV2Request) -> responses.ProxyResponse:
    """Send the JSON body back; a body that is not JSON is the client's mistake."""
    try:
        payload = request.json()
    except InvalidEvent as exc:
        return responses.json_response(400, {"error": str(exc)})
    return responses.json_response(200, {"echo": payload})
