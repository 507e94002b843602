"""``GET /metrics``: Prometheus text 0.0.4 of every worker, and the hooks that feed it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from sanic import Blueprint, HTTPResponse, Request, Sanic
from sanic.config import Config
from sanic.response import BaseHTTPResponse, raw

from ..metrics import CONTENT_TYPE, Metrics

metrics_routes = Blueprint("metrics")


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.ctx.state.pipeline.metrics
    return metrics


# As vLLM's mounted app: /metrics and /metrics/ both answer, no redirect.
@metrics_routes.get("/metrics", strict_slashes=False)
async def scrape(request: Request) -> HTTPResponse:
    return raw(_metrics(request).exposition(), content_type=CONTENT_TYPE)


def install_metrics(app: Sanic[Config, SimpleNamespace]) -> None:
    app.blueprint(metrics_routes)

    # Synchronous: Sanic then skips a coroutine per response.
    def count_response(request: Request, response: BaseHTTPResponse) -> None:
        _metrics(request).http_response(request.uri_template, response.status)

    app.register_middleware(count_response, "response")

    @app.after_server_start
    async def start_flushing(app: Sanic[Config, SimpleNamespace]) -> None:
        app.ctx.metrics_flusher = asyncio.create_task(
            app.ctx.state.pipeline.metrics.flush_periodically()
        )

    @app.before_server_stop
    async def stop_flushing(app: Sanic[Config, SimpleNamespace]) -> None:
        app.ctx.metrics_flusher.cancel()
        app.ctx.state.pipeline.metrics.close()
