"""The generation routes: thin handlers over the protocol functions and the responder."""

from __future__ import annotations

import asyncio
import time

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import raw

from ..protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE, decode_body
from ..protocol.responses import JSON_CONTENT_TYPE, models_body
from ..state import WorkerState

openai_routes = Blueprint("openai", url_prefix="/v1")


def _state(request: Request) -> WorkerState:
    state: WorkerState = request.app.ctx.state
    return state


async def _generate(request: Request, route: str) -> HTTPResponse | None:
    arrival = asyncio.get_running_loop().time()
    body = decode_body(request.body, request.headers.get("content-type"))
    state = _state(request)
    plan = state.responder.respond(route, body, request.headers.get("x-request-id"))
    return await state.pipeline.serve(request, plan, arrival)


@openai_routes.post("/chat/completions")
async def chat_completions(request: Request) -> HTTPResponse | None:
    return await _generate(request, CHAT_ROUTE)


@openai_routes.post("/completions")
async def completions(request: Request) -> HTTPResponse | None:
    return await _generate(request, COMPLETIONS_ROUTE)


@openai_routes.get("/models")
async def models(request: Request) -> HTTPResponse:
    served = _state(request).served
    return raw(
        models_body(served.name, served.root, served.max_model_len, int(time.time())),
        content_type=JSON_CONTENT_TYPE,
    )
