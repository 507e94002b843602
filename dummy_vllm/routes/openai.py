"""The generation routes: thin handlers over the protocol functions and the responder."""

from __future__ import annotations

import asyncio
import time

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import raw

from ..emit import deliver
from ..protocol.requests import decode_body, parse_chat_request, parse_completion_request
from ..protocol.responses import JSON_CONTENT_TYPE, models_body
from ..state import WorkerState

openai_routes = Blueprint("openai", url_prefix="/v1")


def _state(request: Request) -> WorkerState:
    state: WorkerState = request.app.ctx.state
    return state


@openai_routes.post("/chat/completions")
async def chat_completions(request: Request) -> HTTPResponse | None:
    arrival = asyncio.get_running_loop().time()
    state = _state(request)
    chat = parse_chat_request(
        decode_body(request.body, request.headers.get("content-type")), state.served
    )
    plan = state.synthetic.chat_plan(chat, request.headers.get("x-request-id"))
    return await deliver(request, plan, arrival)


@openai_routes.post("/completions")
async def completions(request: Request) -> HTTPResponse | None:
    arrival = asyncio.get_running_loop().time()
    state = _state(request)
    completion = parse_completion_request(
        decode_body(request.body, request.headers.get("content-type")), state.served
    )
    plan = state.synthetic.completion_plan(completion, request.headers.get("x-request-id"))
    return await deliver(request, plan, arrival)


@openai_routes.get("/models")
async def models(request: Request) -> HTTPResponse:
    served = _state(request).served
    return raw(
        models_body(served.name, served.root, served.max_model_len, int(time.time())),
        content_type=JSON_CONTENT_TYPE,
    )
