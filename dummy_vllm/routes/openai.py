"""The generation routes: thin handlers over the protocol functions and the responder."""

from __future__ import annotations

import asyncio
import time

from sanic import Blueprint, HTTPResponse
from sanic.response import raw

from ..context import WorkerRequest
from ..offload import HEAVY_BODY_BYTES, heavy, many_choices
from ..plan import Responder, ResponsePlan
from ..protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE, MODELS_ROUTE, decode_body
from ..protocol.responses import JSON_CONTENT_TYPE, models_body

openai_routes = Blueprint("openai")


async def generate(request: WorkerRequest, route: str) -> HTTPResponse | None:
    """Any generation route: the responder plans the answer, the pipeline delivers it."""
    arrival = asyncio.get_running_loop().time()
    ctx = request.app.ctx
    content_type = request.headers.get("content-type")
    request_id = request.headers.get("x-request-id")
    if len(request.body) > HEAVY_BODY_BYTES:
        plan = await ctx.offload.run(
            _plan, ctx.responder, route, request.body, content_type, request_id
        )
    else:
        body = decode_body(request.body, content_type)
        if heavy(route, body, ctx.served.max_model_len):
            plan = await ctx.offload.run(ctx.responder.respond, route, body, request_id)
        elif many_choices(body):
            plan = await ctx.offload.in_turn(ctx.responder.respond, route, body, request_id)
        else:
            plan = ctx.responder.respond(route, body, request_id)
    return await ctx.pipeline.serve(request, plan, arrival)


def _plan(
    responder: Responder, route: str, raw: bytes, content_type: str | None, request_id: str | None
) -> ResponsePlan:
    return responder.respond(route, decode_body(raw, content_type), request_id)


@openai_routes.post(CHAT_ROUTE)
async def chat_completions(request: WorkerRequest) -> HTTPResponse | None:
    return await generate(request, CHAT_ROUTE)


@openai_routes.post(COMPLETIONS_ROUTE)
async def completions(request: WorkerRequest) -> HTTPResponse | None:
    return await generate(request, COMPLETIONS_ROUTE)


@openai_routes.get(MODELS_ROUTE)
async def models(request: WorkerRequest) -> HTTPResponse:
    served = request.app.ctx.served
    return raw(
        models_body(
            served.name,
            served.root,
            served.max_model_len,
            int(time.time()),
            served.profile.id_hex_digits,
            served.adapters,
        ),
        content_type=JSON_CONTENT_TYPE,
    )
