"""Record mode's HTTP edge: forward the recorded routes to the upstream through the worker's
``Recorder`` and tee each answer to the client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from sanic import Blueprint, HTTPResponse
from sanic.response import raw

from ..context import App, WorkerRequest
from ..emit import drop_connection
from ..protocol.errors import service_unavailable
from ..recording.recorder import FORWARDED_ROUTES, Recorder, UpstreamCall
from ..recording.store import Outcome
from ..settings import RecordSettings


class _SanicClient:
    """The recorder's ``Client``: a streamed answer written to the Sanic response."""

    _response: HTTPResponse

    def __init__(self, request: WorkerRequest) -> None:
        self._request = request
        # Headers went out: from now on the answer can only be ended or broken off.
        self.started = False

    async def start_stream(self, status: int, headers: Mapping[str, str]) -> None:
        self.started = True
        self._response = await self._request.respond(status=status, headers=dict(headers))
        # Headers go out now, before the first event, as vLLM sends them.
        await self._response.send(b"")

    async def send_event(self, data: bytes) -> None:
        await self._response.send(data)


async def forward(request: WorkerRequest, **segments: str) -> HTTPResponse | None:
    """Any forwarded route; path parameters (``segments``) travel in ``request.path``."""
    call = UpstreamCall(
        request.method, request.path, request.body, request.headers, request.query_string
    )
    client = _SanicClient(request)
    forwarded = await request.app.ctx.recorder.forward(call, client)
    record = forwarded.record
    request.app.ctx.metrics.exchange_recorded(forwarded.stored)
    if client.started:
        if record.outcome is not Outcome.COMPLETE or not forwarded.stored:
            # Without the chunked terminator: the client sees the stream broken off, as the
            # upstream left it, or before [DONE] when it could not be recorded.
            await drop_connection(request)
        return None
    if forwarded.error is not None:
        raise forwarded.error
    if not forwarded.stored:
        raise service_unavailable(
            "The exchange could not be recorded (the database refused it; see the recorder's "
            "log), so its answer is withheld."
        )
    assert record.status is not None  # a response without an error has a status
    # The upstream's content type is in the headers; raw() only fills it in when missing.
    return raw(record.response_body, status=record.status, headers=dict(record.response_headers))


def install_recording(app: App, settings: RecordSettings, db_path: Path) -> None:
    """Forward ``FORWARDED_ROUTES`` to the upstream and record them.

    The database must be migrated and the session created before workers start (the ``record``
    command does both), so that a bad database is one error line, not a failing worker.
    """
    routes = Blueprint("recorder")
    for method, path in FORWARDED_ROUTES:
        name = path.strip("/").translate(str.maketrans("/<>", "_  ")).replace(" ", "")
        routes.add_route(forward, path, methods=[method], name=name)
    app.blueprint(routes)
    closing: asyncio.Future[None] | None = None

    @app.before_server_start
    async def open_recorder(app: App) -> None:
        app.ctx.recorder = await Recorder.open(settings, db_path)

    @app.after_server_start
    async def describe_upstream(app: App) -> None:
        # In the background: a slow or absent upstream must not delay serving.
        app.ctx.background.append(asyncio.create_task(app.ctx.recorder.describe_upstream()))

    @app.after_server_stop
    async def close_recorder(app: App) -> None:
        # Sanic runs this listener again when a signal (Ctrl-C reaches every worker) interrupts
        # it: the second run must wait for the first close, not start another, or the store's
        # thread outlives the loop and the worker never exits.
        nonlocal closing
        if closing is None:
            closing = asyncio.ensure_future(app.ctx.recorder.close())
        await closing
