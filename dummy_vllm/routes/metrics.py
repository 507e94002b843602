"""``GET /metrics``: Prometheus text 0.0.4 of every worker, and the hooks that feed it."""

from __future__ import annotations

import asyncio

from sanic import Blueprint, HTTPResponse
from sanic.response import BaseHTTPResponse, raw

from ..context import App, WorkerRequest
from ..metrics import CONTENT_TYPE

metrics_routes = Blueprint("metrics")


# As vLLM's mounted app: /metrics and /metrics/ both answer, no redirect.
@metrics_routes.get("/metrics", strict_slashes=False)
async def scrape(request: WorkerRequest) -> HTTPResponse:
    return raw(request.app.ctx.metrics.exposition(), content_type=CONTENT_TYPE)


def install_metrics(app: App) -> None:
    app.blueprint(metrics_routes)

    # Synchronous: Sanic then skips a coroutine per response.
    def count_response(request: WorkerRequest, response: BaseHTTPResponse) -> None:
        request.app.ctx.metrics.http_response(request.uri_template, response.status)

    app.register_middleware(count_response, "response")

    @app.after_server_start
    async def start_flushing(app: App) -> None:
        app.ctx.background.append(asyncio.create_task(app.ctx.metrics.flush_periodically()))

    @app.before_server_stop
    async def close_metrics(app: App) -> None:
        app.ctx.metrics.close()
