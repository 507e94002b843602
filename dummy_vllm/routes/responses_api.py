"""``/v1/responses``: create, retrieve and cancel (eras 0.10.1+)."""

from __future__ import annotations

from http import HTTPStatus

from sanic import Blueprint, HTTPResponse
from sanic.response import raw

from ..context import WorkerRequest
from ..protocol.errors import APIError
from ..protocol.profiles import ResponsesShape
from ..protocol.requests import RESPONSE_CANCEL_ROUTE, RESPONSE_ROUTE, RESPONSES_ROUTE
from ..protocol.responses import JSON_CONTENT_TYPE
from ..protocol.responses_api import INVALID_REQUEST, not_found
from ..response_store import StoredResponse
from .openai import generate

responses_routes = Blueprint("responses")


@responses_routes.post(RESPONSES_ROUTE)
async def create(request: WorkerRequest) -> HTTPResponse | None:
    return await generate(request, RESPONSES_ROUTE)


def _stored(request: WorkerRequest, response_id: str) -> tuple[StoredResponse, ResponsesShape]:
    ctx = request.app.ctx
    shape = ctx.served.profile.responses
    assert shape is not None, "the routes are only served by eras that have them"
    stored = ctx.responses.get(response_id)
    if stored is None:
        raise not_found(response_id, shape)
    return stored, shape


@responses_routes.get(RESPONSE_ROUTE)
async def retrieve(request: WorkerRequest, response_id: str) -> HTTPResponse:
    stored, _ = _stored(request, response_id)
    return raw(stored.body, content_type=JSON_CONTENT_TYPE)


@responses_routes.post(RESPONSE_CANCEL_ROUTE)
async def cancel(request: WorkerRequest, response_id: str) -> HTTPResponse:
    # Only background responses can be cancelled, and this server runs none.
    _stored(request, response_id)
    raise APIError(HTTPStatus.BAD_REQUEST, "Cannot cancel a synchronous response.", INVALID_REQUEST)
