"""``/v1/messages`` and ``/v1/messages/count_tokens`` (eras 0.12+ and 0.15+).

Request validation fails as FastAPI does in vLLM (OpenAI's envelope); everything the handler
raises after that is translated to Anthropic's envelope with its status.
"""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse
from sanic.response import raw

from ..context import WorkerRequest
from ..protocol.anthropic import AnthropicError, count_tokens
from ..protocol.errors import APIError, ValidationFailure
from ..protocol.requests import COUNT_TOKENS_ROUTE, MESSAGES_ROUTE, decode_body
from ..protocol.responses import JSON_CONTENT_TYPE
from .openai import generate

messages_routes = Blueprint("anthropic")
count_tokens_routes = Blueprint("anthropic_count_tokens")


@messages_routes.post(MESSAGES_ROUTE)
async def messages(request: WorkerRequest) -> HTTPResponse | None:
    try:
        return await generate(request, MESSAGES_ROUTE)
    except ValidationFailure:
        raise
    except APIError as error:
        raise AnthropicError(error) from None


@count_tokens_routes.post(COUNT_TOKENS_ROUTE)
async def tokens(request: WorkerRequest) -> HTTPResponse:
    body = decode_body(request.body, request.headers.get("content-type"))
    return raw(count_tokens(body, request.app.ctx.served), content_type=JSON_CONTENT_TYPE)
