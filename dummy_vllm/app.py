"""The Sanic application factory.

Sanic workers are spawned processes that each call ``create_app(settings)``; anything a worker
needs is built in ``before_server_start`` and lives on ``app.ctx``.
"""

from __future__ import annotations

import gc
import hmac
import logging
from http import HTTPStatus
from types import SimpleNamespace

from sanic import HTTPResponse, Request, Sanic
from sanic.config import Config
from sanic.exceptions import MethodNotAllowed, NotFound, PayloadTooLarge, SanicException
from sanic.response import raw

from .protocol.errors import (
    METHOD_NOT_ALLOWED_BODY,
    NOT_FOUND_BODY,
    UNAUTHORIZED_BODY,
    APIError,
    internal_error,
    payload_too_large,
)
from .protocol.responses import JSON_CONTENT_TYPE
from .routes.metrics import install_metrics
from .routes.openai import openai_routes
from .routes.system import probe_routes, system_routes
from .settings import Settings
from .state import WorkerState

APP_NAME = "dummy_vllm"
# A slow stream (long TTFT, slowed replay, long generations) must not be cut by Sanic.
RESPONSE_TIMEOUT_SECONDS = 24 * 3600
# vLLM's uvicorn keep-alive (VLLM_HTTP_TIMEOUT_KEEP_ALIVE).
KEEP_ALIVE_TIMEOUT_SECONDS = 5

logger = logging.getLogger("dummy_vllm")

App = Sanic[Config, SimpleNamespace]


def create_app(settings: Settings) -> App:
    app: App = Sanic(APP_NAME)
    app.config.REQUEST_MAX_SIZE = settings.limits.max_body_bytes
    app.config.RESPONSE_TIMEOUT = RESPONSE_TIMEOUT_SECONDS
    app.config.KEEP_ALIVE_TIMEOUT = KEEP_ALIVE_TIMEOUT_SECONDS
    app.config.NOISY_EXCEPTIONS = False
    app.config.MOTD = False
    app.config.ACCESS_LOG = settings.log_level.lower() == "debug"
    app.ctx.settings = settings
    app.blueprint(probe_routes)
    if settings.record is not None:
        from .recording.recorder import install_recorder

        install_recorder(app, settings)
    else:
        app.blueprint(openai_routes)
        app.blueprint(system_routes)
    _install_error_handlers(app, settings)
    if settings.metrics:
        install_metrics(app)
    if settings.api_key:
        _install_api_key_check(app, settings.api_key)

    @app.before_server_start
    async def build_worker_state(app: App) -> None:
        app.ctx.state = await WorkerState.create(settings)
        # What exists now (Sanic, the corpus, loaded recordings) lives as long as the worker:
        # kept out of the collector, a full collection no longer stalls every stream.
        gc.freeze()

    return app


def _json(body: bytes, status: int) -> HTTPResponse:
    return raw(body, status=status, content_type=JSON_CONTENT_TYPE)


def _install_error_handlers(app: App, settings: Settings) -> None:
    @app.exception(APIError)
    async def api_error(request: Request, exc: APIError) -> HTTPResponse:
        return _json(exc.body(), exc.status)

    @app.exception(NotFound)
    async def not_found(request: Request, exc: NotFound) -> HTTPResponse:
        return _json(NOT_FOUND_BODY, HTTPStatus.NOT_FOUND)

    @app.exception(MethodNotAllowed)
    async def method_not_allowed(request: Request, exc: MethodNotAllowed) -> HTTPResponse:
        return _json(METHOD_NOT_ALLOWED_BODY, HTTPStatus.METHOD_NOT_ALLOWED)

    @app.exception(PayloadTooLarge)
    async def too_large(request: Request, exc: PayloadTooLarge) -> HTTPResponse:
        error = payload_too_large(settings.limits.max_body_bytes)
        return _json(error.body(), error.status)

    @app.exception(SanicException)
    async def sanic_error(request: Request, exc: SanicException) -> HTTPResponse:
        status = exc.status_code
        error = APIError(status, str(exc), HTTPStatus(status).phrase)
        return _json(error.body(), status)

    @app.exception(Exception)
    async def unexpected(request: Request, exc: Exception) -> HTTPResponse:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return _json(internal_error("Internal Server Error").body(), 500)


def _install_api_key_check(app: App, api_key: str) -> None:
    expected = f"Bearer {api_key}".encode()

    @app.on_request
    async def check_api_key(request: Request) -> HTTPResponse | None:
        # As vLLM: only /v1 paths are guarded; health probes stay open.
        if not request.path.startswith("/v1"):
            return None
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        return _json(UNAUTHORIZED_BODY, HTTPStatus.UNAUTHORIZED)
