"""``/v1/embeddings`` and ``/pooling``: served in every era and mode.

vLLM serves one kind of model: a generative one answers embeddings with an error (0.11) or 404
(0.24+). This server stands for a model that does both, so one server covers chat and
embedding clients.
"""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse

from ..context import WorkerRequest
from ..protocol.requests import EMBEDDINGS_ROUTE, POOLING_ROUTE
from .openai import generate

pooling_routes = Blueprint("pooling")


@pooling_routes.post(EMBEDDINGS_ROUTE)
async def embeddings(request: WorkerRequest) -> HTTPResponse | None:
    return await generate(request, EMBEDDINGS_ROUTE)


@pooling_routes.post(POOLING_ROUTE)
async def pooling(request: WorkerRequest) -> HTTPResponse | None:
    return await generate(request, POOLING_ROUTE)
