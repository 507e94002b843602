"""What a worker holds, typed: Sanic's ``app.ctx`` and the request class through which handlers
reach it.

The factory creates an empty ``WorkerContext``; the listeners of the chosen mode fill in what
that mode serves before the worker accepts connections. A field a mode does not use is never
set, and reading it fails loudly (``AttributeError``) instead of yielding a ``None``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

from sanic import Request, Sanic
from sanic.config import Config

from .connection import Acceptor
from .metrics import Metrics
from .offload import Offloader
from .pipeline import Pipeline
from .plan import Responder
from .protocol.requests import ServedModel
from .recording.recorder import Recorder
from .response_store import ResponseStore


@dataclass(eq=False)
class WorkerContext:
    # Every mode.
    metrics: Metrics = field(init=False)
    # Synthetic and replay modes: the model served, who answers, and how answers are delivered.
    served: ServedModel = field(init=False)
    responder: Responder = field(init=False)
    pipeline: Pipeline = field(init=False)
    # Stored Responses API answers (synthetic ones; replay stores none).
    responses: ResponseStore = field(init=False)
    # Where answers too long to build on the loop are built.
    offload: Offloader = field(init=False)
    # Record mode.
    recorder: Recorder = field(init=False)
    # Work started with the server and cancelled when it stops.
    background: list[asyncio.Task[None]] = field(default_factory=list)
    # Takes the connections waiting on the worker's listening socket (connection.py).
    acceptor: Acceptor = field(default_factory=Acceptor)


App = Sanic[Config, WorkerContext]


class WorkerRequest(Request[App, SimpleNamespace]):
    """Sanic's request, typed so that ``request.app.ctx`` is a ``WorkerContext``."""
