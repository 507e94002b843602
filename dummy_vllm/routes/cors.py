"""CORS at the HTTP edge: preflights answered before routing, headers added to every other
answer (``protocol/cors.py`` decides which)."""

from __future__ import annotations

from sanic import HTTPResponse
from sanic.response import BaseHTTPResponse, raw

from ..context import App, WorkerRequest
from ..protocol.cors import (
    PREFLIGHT_CONTENT_TYPE,
    CorsPolicy,
    is_preflight,
    preflight,
    simple_headers,
)

# Set on a request whose answer must not get CORS headers: a preflight (it has its own) and,
# as vLLM's authentication runs outside its CORS middleware, a 401.
NO_CORS = "no_cors"


def install_cors(app: App, policy: CorsPolicy) -> None:
    """Before any other request middleware (the API key check skips preflights)."""

    @app.on_request
    async def answer_preflight(request: WorkerRequest) -> HTTPResponse | None:
        if not is_preflight(request.method, request.headers):
            return None
        status, headers, body = preflight(policy, request.headers)
        setattr(request.ctx, NO_CORS, True)
        return raw(body, status=status, headers=headers, content_type=PREFLIGHT_CONTENT_TYPE)

    # Synchronous: Sanic then skips a coroutine per response.
    def add_headers(request: WorkerRequest, response: BaseHTTPResponse) -> None:
        if getattr(request.ctx, NO_CORS, False):
            return
        for name, value in simple_headers(policy, request.headers).items():
            response.headers[name] = value

    app.register_middleware(add_headers, "response")
