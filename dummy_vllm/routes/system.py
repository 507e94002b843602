"""Routes outside /v1: health probes, version and the tokenizer endpoints."""

from __future__ import annotations

from collections.abc import Iterator

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import raw

from ..context import WorkerRequest
from ..offload import HEAVY_BODY_BYTES
from ..protocol.errors import bad_request
from ..protocol.requests import (
    DETOKENIZE_ROUTE,
    TOKENIZE_ROUTE,
    VERSION_ROUTE,
    ServedModel,
    decode_body,
    parse_detokenize_request,
    parse_tokenize_request,
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
    ctx = request.app.ctx
    content_type = request.headers.get("content-type")
    if len(request.body) > HEAVY_BODY_BYTES:
        answer = await ctx.offload.run(_tokenize, ctx.served, request.body, content_type)
    else:
        answer = _tokenize(ctx.served, request.body, content_type)
    return raw(answer, content_type=JSON_CONTENT_TYPE)


def _tokenize(served: ServedModel, raw_body: bytes, content_type: str | None) -> bytes:
    asked = parse_tokenize_request(decode_body(raw_body, content_type), served)
    tokens = served.tokenizer.encode(asked.text)
    return tokenize_body(served.tokenizer, tokens, served.max_model_len, asked.with_strings)


@system_routes.post(DETOKENIZE_ROUTE)
async def detokenize(request: WorkerRequest) -> HTTPResponse:
    served = request.app.ctx.served
    body = decode_body(request.body, request.headers.get("content-type"))
    tokens = parse_detokenize_request(body, served)
    try:
        text = served.tokenizer.decode(tokens)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return raw(dumps({"prompt": text}), content_type=JSON_CONTENT_TYPE)
