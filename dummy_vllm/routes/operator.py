"""The operator routes: load, server info, sleep mode, the prefix cache, the profiler and LoRA
adapters.

vLLM registers most of them only in dev mode (``VLLM_SERVER_DEV_MODE=1``), the profiler with a
profiler configured, the LoRA routes with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``, and ``/load``
counts only with ``--enable-server-load-tracking``. A mock has nothing to protect: they are
always served and /load always counts. Their state (sleep, adapters) is each worker's own.
"""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse
from sanic.response import raw

from ..context import WorkerRequest
from ..protocol.errors import ValidationFailure, literal_error
from ..protocol.operator import (
    load_body,
    lora_loaded,
    lora_to_load,
    lora_to_unload,
    lora_unloaded,
    reset_prefix_cache_body,
    server_info_body,
    sleep_body,
    sleep_level,
    wake_up_body,
)
from ..protocol.requests import decode_body
from ..protocol.responses import JSON_CONTENT_TYPE, dumps
from .system import bare

operator_routes = Blueprint("operator")
CONFIG_FORMATS = ("text", "json")


def _json_or_empty(body: bytes | None) -> HTTPResponse:
    """The era's JSON answer, or the empty 200 older eras send."""
    return bare() if body is None else raw(body, content_type=JSON_CONTENT_TYPE)


@operator_routes.get("/load")
async def load(request: WorkerRequest) -> HTTPResponse:
    return raw(load_body(request.app.ctx.pipeline.in_flight), content_type=JSON_CONTENT_TYPE)


@operator_routes.get("/server_info")
async def server_info(request: WorkerRequest) -> HTTPResponse:
    config_format = request.args.get("config_format", "text")
    if config_format not in CONFIG_FORMATS:
        loc = ("query", "config_format")
        raise ValidationFailure([literal_error(loc, config_format, CONFIG_FORMATS)])
    served = request.app.ctx.served
    body = server_info_body(served.profile, served, config_format)
    return raw(body, content_type=JSON_CONTENT_TYPE)


@operator_routes.get("/is_sleeping")
async def is_sleeping(request: WorkerRequest) -> HTTPResponse:
    asleep = not request.app.ctx.pipeline.awake.is_set()
    return raw(dumps({"is_sleeping": asleep}), content_type=JSON_CONTENT_TYPE)


@operator_routes.post("/sleep")
async def sleep(request: WorkerRequest) -> HTTPResponse:
    ctx = request.app.ctx
    level = sleep_level(request.args, ctx.served.profile)
    ctx.pipeline.sleep()
    return _json_or_empty(sleep_body(ctx.served.profile, level))


@operator_routes.post("/wake_up")
async def wake_up(request: WorkerRequest) -> HTTPResponse:
    ctx = request.app.ctx
    tags = request.args.getlist("tags") or None
    awake = ctx.pipeline.wake_up(tags)
    return _json_or_empty(wake_up_body(ctx.served.profile, tags, awake))


@operator_routes.post("/reset_prefix_cache")
async def reset_prefix_cache(request: WorkerRequest) -> HTTPResponse:
    return _json_or_empty(reset_prefix_cache_body(request.app.ctx.served.profile))


async def profiler(request: WorkerRequest) -> HTTPResponse:
    return bare()


operator_routes.add_route(profiler, "/start_profile", methods=["POST"], name="start_profile")
operator_routes.add_route(profiler, "/stop_profile", methods=["POST"], name="stop_profile")


@operator_routes.post("/v1/load_lora_adapter")
async def load_lora_adapter(request: WorkerRequest) -> HTTPResponse:
    served = request.app.ctx.served
    body = decode_body(request.body, request.headers.get("content-type"))
    name, path = lora_to_load(body, served.adapters, served.profile)
    served.adapters[name] = path
    return bare(lora_loaded(name))


@operator_routes.post("/v1/unload_lora_adapter")
async def unload_lora_adapter(request: WorkerRequest) -> HTTPResponse:
    served = request.app.ctx.served
    body = decode_body(request.body, request.headers.get("content-type"))
    name = lora_to_unload(body, served.adapters)
    del served.adapters[name]
    return bare(lora_unloaded(name))
