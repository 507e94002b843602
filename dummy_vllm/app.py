"""The Sanic application factory.

Sanic workers are spawned processes that each call ``create_app(settings)``. The mode is chosen
here, once: its routes are registered and its listeners build what a worker serves with into
the typed ``app.ctx`` (``context.WorkerContext``) before the worker accepts connections.
"""

from __future__ import annotations

import gc
import hmac
import logging
import os
import zlib
from http import HTTPStatus
from typing import cast

from sanic import HTTPResponse, Request, Sanic
from sanic.exceptions import MethodNotAllowed, NotFound, PayloadTooLarge, SanicException
from sanic.response import raw

from .context import App, WorkerContext, WorkerRequest
from .engine import Tokenizer
from .faults import FaultInjector
from .metrics import Metrics
from .offload import Offloader
from .pipeline import Pipeline
from .protocol.cors import CorsPolicy
from .protocol.errors import (
    METHOD_NOT_ALLOWED_BODY,
    NOT_FOUND_BODY,
    UNAUTHORIZED_BODY,
    APIError,
    internal_error,
    payload_too_large,
)
from .protocol.requests import ServedModel
from .protocol.responses import JSON_CONTENT_TYPE
from .response_store import ResponseStore
from .routes.anthropic import count_tokens_routes, messages_routes
from .routes.cors import NO_CORS, install_cors
from .routes.metrics import install_metrics
from .routes.openai import openai_routes
from .routes.operator import operator_routes
from .routes.pooling import pooling_routes
from .routes.record import install_recording
from .routes.responses_api import responses_routes
from .routes.system import probe_routes, system_routes
from .scheduler import Scheduler
from .settings import RecordSettings, SchedulerSettings, Settings
from .synthetic import SyntheticModel

APP_NAME = "dummy_vllm"
# A slow stream (long TTFT, slowed replay, long generations) must not be cut by Sanic.
RESPONSE_TIMEOUT_SECONDS = 24 * 3600
# Collections of the middle generation between two of the oldest (Python's default: 10).
FULL_COLLECTION_AFTER = 1000
# vLLM's uvicorn keep-alive (VLLM_HTTP_TIMEOUT_KEEP_ALIVE).
KEEP_ALIVE_TIMEOUT_SECONDS = 5
# Largest request header: h11's default max_incomplete_event_size under uvicorn (16 KiB).
MAX_HEADER_BYTES = 16 * 1024

logger = logging.getLogger("dummy_vllm")


def create_app(settings: Settings) -> App:
    # Sanic types request_class as its default Request; ours only narrows what ctx holds.
    request_class = cast("type[Request]", WorkerRequest)
    app: App = Sanic(APP_NAME, ctx=WorkerContext(), request_class=request_class)
    app.config.REQUEST_MAX_SIZE = settings.limits.max_body_bytes
    app.config.RESPONSE_TIMEOUT = RESPONSE_TIMEOUT_SECONDS
    app.config.KEEP_ALIVE_TIMEOUT = KEEP_ALIVE_TIMEOUT_SECONDS
    # Idle gaps while a request arrives, and (connection.py) the time its header may take.
    app.config.REQUEST_TIMEOUT = settings.request_timeout  # type: ignore[assignment]  # any number
    app.config.REQUEST_MAX_HEADER_SIZE = MAX_HEADER_BYTES
    app.config.NOISY_EXCEPTIONS = False
    app.config.MOTD = False
    app.config.ACCESS_LOG = settings.log_level.lower() == "debug"
    app.blueprint(probe_routes)
    if settings.record is not None:
        _record_upstream(app, settings.record, settings)
    else:
        _serve_model(app, settings)
    _install_error_handlers(app, settings)
    if settings.metrics:
        install_metrics(app)
    if settings.api_key:
        _install_api_key_check(app, settings.api_key)

    @app.before_server_start
    async def freeze(app: App) -> None:
        # Registered last, so it runs after the mode built its state: what exists now (Sanic,
        # the corpus, loaded recordings) lives as long as the worker. Kept out of the
        # collector, a full collection no longer stalls every stream.
        gc.freeze()
        # Thousands of streams keep tens of thousands of objects alive for seconds, which
        # reach the oldest generation; collecting it stalled every stream for 50-80 ms every
        # few seconds. Unreachable cycles are rare here (reference counting frees the rest),
        # so the oldest generation is collected after FULL_COLLECTION_AFTER younger ones.
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)

    @app.before_server_stop
    async def stop_background(app: App) -> None:
        app.ctx.acceptor.close()
        for task in app.ctx.background:
            task.cancel()

    return app


def _metrics(settings: Settings, scheduler: Scheduler) -> Metrics:
    return Metrics(
        scheduler,
        enabled=settings.metrics,
        model=settings.model,
        max_model_len=settings.max_model_len,
        # Each worker's share of all workers' capacity, so that their sum is the total.
        kv_capacity=settings.scheduler.batch_size * settings.max_model_len * settings.workers,
        replay=settings.replay is not None,
        record=settings.record is not None,
        directory=settings.metrics_dir,
        profile=settings.profile,
    )


def _serve_model(app: App, settings: Settings) -> None:
    """Synthetic and replay modes: the model answers the generation and system routes that
    the era has (others are 404, as in vLLM)."""
    profile = settings.profile
    cors = settings.cors
    install_cors(
        app,
        CorsPolicy(
            origins=profile.cors_origins if cors.origins is None else cors.origins,
            methods=cors.methods,
            headers=cors.headers,
            credentials=cors.credentials,
            starlette_1=profile.cors_starlette_1,
        ),
    )
    app.blueprint(openai_routes)
    app.blueprint(system_routes)
    app.blueprint(pooling_routes)
    app.blueprint(operator_routes)
    if profile.responses is not None:
        app.blueprint(responses_routes)
    if profile.anthropic is not None:
        app.blueprint(messages_routes)
        if profile.anthropic.count_tokens:
            app.blueprint(count_tokens_routes)
    replay = settings.replay

    @app.before_server_start
    async def build_model(app: App) -> None:
        ctx = app.ctx
        served = ServedModel(
            name=settings.model,
            root=settings.root,
            max_model_len=settings.max_model_len,
            tokenizer=Tokenizer(),
            limits=settings.limits,
            profile=settings.profile,
            version=settings.reported_version,
            agent=settings.synthetic.agent,
            embedding_dimensions=settings.embedding_dimensions,
        )
        scheduler = Scheduler(settings.scheduler)
        ctx.metrics = metrics = _metrics(settings, scheduler)
        # Each worker draws its own reproducible fault sequence.
        worker = os.environ.get("SANIC_WORKER_NAME", "")
        faults = FaultInjector(settings.faults, zlib.crc32(worker.encode(), settings.seed))
        ctx.pipeline = Pipeline(scheduler, metrics, faults, served)
        ctx.offload = Offloader()
        ctx.served = served
        ctx.responses = ResponseStore(settings.synthetic.responses_store)
        synthetic = SyntheticModel(settings.synthetic, served, settings.seed, ctx.responses)
        synthetic.warm_up()
        if replay is None:
            ctx.responder = synthetic
            return
        from .recording.replay import ReplayResponder

        ctx.responder = await ReplayResponder.load(
            replay, settings.db_path, settings.seed, synthetic, metrics
        )

    @app.after_server_stop
    async def stop_offload(app: App) -> None:
        app.ctx.offload.close()


def _record_upstream(app: App, record: RecordSettings, settings: Settings) -> None:
    """Record mode: the upstream answers; metrics count requests only (nothing is scheduled)."""
    install_recording(app, record, settings.db_path)

    @app.before_server_start
    async def build_metrics(app: App) -> None:
        app.ctx.metrics = _metrics(settings, Scheduler(SchedulerSettings()))


def _json(body: bytes, status: int) -> HTTPResponse:
    return raw(body, status=status, content_type=JSON_CONTENT_TYPE)


def _install_error_handlers(app: App, settings: Settings) -> None:
    profile = settings.profile

    @app.exception(APIError)
    async def api_error(request: Request, exc: APIError) -> HTTPResponse:
        return _json(exc.body(profile), exc.status)

    @app.exception(NotFound)
    async def not_found(request: Request, exc: NotFound) -> HTTPResponse:
        return _json(NOT_FOUND_BODY, HTTPStatus.NOT_FOUND)

    @app.exception(MethodNotAllowed)
    async def method_not_allowed(request: Request, exc: MethodNotAllowed) -> HTTPResponse:
        return _json(METHOD_NOT_ALLOWED_BODY, HTTPStatus.METHOD_NOT_ALLOWED)

    @app.exception(PayloadTooLarge)
    async def too_large(request: Request, exc: PayloadTooLarge) -> HTTPResponse:
        error = payload_too_large(settings.limits.max_body_bytes)
        return _json(error.body(profile), error.status)

    @app.exception(SanicException)
    async def sanic_error(request: Request, exc: SanicException) -> HTTPResponse:
        status = exc.status_code
        error = APIError(status, str(exc), HTTPStatus(status).phrase)
        return _json(error.body(profile), status)

    @app.exception(Exception)
    async def unexpected(request: Request, exc: Exception) -> HTTPResponse:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return _json(internal_error("Internal Server Error").body(profile), 500)


def _install_api_key_check(app: App, api_key: str) -> None:
    expected = f"Bearer {api_key}".encode()

    @app.on_request
    async def check_api_key(request: Request) -> HTTPResponse | None:
        # As vLLM: only /v1 paths are guarded (health probes stay open), never OPTIONS.
        if not request.path.startswith("/v1") or request.method == "OPTIONS":
            return None
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        # vLLM checks the key outside its CORS middleware: a 401 has no CORS headers.
        setattr(request.ctx, NO_CORS, True)
        return _json(UNAUTHORIZED_BODY, HTTPStatus.UNAUTHORIZED)
