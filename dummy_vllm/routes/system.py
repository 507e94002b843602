"""Routes outside /v1: health probes, version and the tokenizer endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import raw

from ..context import WorkerRequest
from ..engine import render_chat_prompt
from ..protocol.errors import ValidationFailure, bad_request, model_not_found
from ..protocol.requests import (
    DETOKENIZE_ROUTE,
    TOKENIZE_ROUTE,
    VERSION_ROUTE,
    ServedModel,
    decode_body,
)
from ..protocol.responses import JSON_CONTENT_TYPE, dumps, tokenize_body


class BareResponse(HTTPResponse):
    """A body without a content type, as Starlette's plain ``Response`` sends it (Sanic would
    write ``content-type: None``)."""

    @property
    def processed_headers(self) -> Iterator[tuple[bytes, bytes]]:
        return (
            (name, value)
            for name, value in super().processed_headers
            if not (name == b"content-type" and value == b"None")
        )


def bare(body: bytes = b"") -> HTTPResponse:
    """A 200 with ``body`` and no content type, as vLLM's plain ``Response``."""
    return BareResponse(body)


# Answered locally in every mode, never behind the API key.
probe_routes = Blueprint("probes")
# Answered by the model: synthetic and replay answer them; record mode forwards them.
system_routes = Blueprint("system")


def _check_model(body: dict[str, Any], served: ServedModel) -> None:
    model = body.get("model")
    if model and model != served.name:
        raise model_not_found(str(model), (served.name,), served.profile)


@probe_routes.get("/health")
async def health(request: Request) -> HTTPResponse:
    return bare()


async def ping(request: Request) -> HTTPResponse:
    return bare()


probe_routes.add_route(ping, "/ping", methods=["GET", "POST"])


@system_routes.get(VERSION_ROUTE)
async def version(request: WorkerRequest) -> HTTPResponse:
    return raw(dumps({"version": request.app.ctx.served.version}), content_type=JSON_CONTENT_TYPE)


@system_routes.post(TOKENIZE_ROUTE)
async def tokenize(request: WorkerRequest) -> HTTPResponse:
    served = request.app.ctx.served
    body = decode_body(request.body, request.headers.get("content-type"))
    _check_model(body, served)
    if isinstance(body.get("messages"), list):
        text = render_chat_prompt(
            body["messages"], add_generation_prompt=bool(body.get("add_generation_prompt", True))
        )
    elif isinstance(body.get("prompt"), str):
        text = body["prompt"]
    else:
        raise ValidationFailure(
            [{"type": "missing", "loc": ("body", "prompt"), "msg": "Field required", "input": body}]
        )
    tokens = served.tokenizer.encode(text)
    return raw(
        tokenize_body(
            served.tokenizer, tokens, served.max_model_len, bool(body.get("return_token_strs"))
        ),
        content_type=JSON_CONTENT_TYPE,
    )


@system_routes.post(DETOKENIZE_ROUTE)
async def detokenize(request: WorkerRequest) -> HTTPResponse:
    served = request.app.ctx.served
    body = decode_body(request.body, request.headers.get("content-type"))
    _check_model(body, served)
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in tokens
    ):
        raise ValidationFailure(
            [{"type": "missing", "loc": ("body", "tokens"), "msg": "Field required", "input": body}]
        )
    try:
        text = served.tokenizer.decode(tokens)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return raw(dumps({"prompt": text}), content_type=JSON_CONTENT_TYPE)
