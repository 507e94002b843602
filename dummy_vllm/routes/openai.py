"""The generation routes: thin handlers over the protocol functions and the synthetic model."""

from __future__ import annotations

import asyncio
import time

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import raw

from ..emit import sleep_until, stream_events
from ..protocol.requests import decode_body, parse_chat_request, parse_completion_request
from ..protocol.responses import (
    JSON_CONTENT_TYPE,
    ChatStream,
    CompletionStream,
    chat_body,
    chat_events,
    completion_body,
    completion_events,
    models_body,
    new_response_meta,
)
from ..state import WorkerState

openai_routes = Blueprint("openai", url_prefix="/v1")


def _state(request: Request) -> WorkerState:
    state: WorkerState = request.app.ctx.state
    return state


@openai_routes.post("/chat/completions")
async def chat_completions(request: Request) -> HTTPResponse | None:
    arrival = asyncio.get_running_loop().time()
    state = _state(request)
    body = decode_body(request.body, request.headers.get("content-type"))
    chat = parse_chat_request(body, state.served)
    params = chat.params
    generation = state.synthetic.generate([chat.prompt], params)
    meta = new_response_meta("chatcmpl", chat.model, request.headers.get("x-request-id"))
    tokenizer = state.served.tokenizer
    if params.stream:
        stream = ChatStream(
            tokenizer, meta, generation.prompt_tokens, params.continuous_usage_stats
        )
        events = chat_events(stream, generation.choices, generation.offsets, params.include_usage)
        await stream_events(request, events, arrival)
        return None
    payload = chat_body(tokenizer, meta, generation.choices, generation.prompt_tokens)
    await sleep_until(arrival + generation.offsets[-1])
    return raw(payload, content_type=JSON_CONTENT_TYPE)


@openai_routes.post("/completions")
async def completions(request: Request) -> HTTPResponse | None:
    arrival = asyncio.get_running_loop().time()
    state = _state(request)
    body = decode_body(request.body, request.headers.get("content-type"))
    completion = parse_completion_request(body, state.served)
    params = completion.params
    generation = state.synthetic.generate(completion.prompts, params)
    meta = new_response_meta("cmpl", completion.model, request.headers.get("x-request-id"))
    tokenizer = state.served.tokenizer
    echo_texts = (
        {
            prompt_index * params.n + sample: tokenizer.decode(prompt)
            for prompt_index, prompt in enumerate(completion.prompts)
            for sample in range(params.n)
        }
        if completion.echo
        else {}
    )
    if params.stream:
        stream = CompletionStream(
            tokenizer, meta, generation.prompt_tokens, params.continuous_usage_stats
        )
        events = completion_events(
            stream, generation.choices, generation.offsets, params.include_usage, echo_texts
        )
        await stream_events(request, events, arrival)
        return None
    payload = completion_body(
        tokenizer, meta, generation.choices, generation.prompt_tokens, echo_texts
    )
    if generation.offsets:
        await sleep_until(arrival + generation.offsets[-1])
    return raw(payload, content_type=JSON_CONTENT_TYPE)


@openai_routes.get("/models")
async def models(request: Request) -> HTTPResponse:
    served = _state(request).served
    return raw(
        models_body(served.name, served.root, served.max_model_len, int(time.time())),
        content_type=JSON_CONTENT_TYPE,
    )
