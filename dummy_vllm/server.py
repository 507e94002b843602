"""Start Sanic's worker manager for a given Settings (used by every CLI mode)."""

from __future__ import annotations

from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader

from .app import create_app
from .connection import GuardedHttpProtocol
from .metrics import shared_metrics_dir
from .settings import Settings


def run_server(settings: Settings) -> None:
    with shared_metrics_dir(settings.metrics, settings.workers) as metrics_dir:
        # Workers are spawned processes: they rebuild the app from the pickled settings.
        loader = AppLoader(factory=partial(create_app, settings.replace(metrics_dir=metrics_dir)))
        app = loader.load()
        app.prepare(
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            motd=False,
            access_log=settings.log_level.lower() == "debug",
            protocol=GuardedHttpProtocol,
            # uvicorn's default, as vLLM runs it (Sanic's 100 drops connections in bursts).
            backlog=2048,
        )
        Sanic.serve(primary=app, app_loader=loader)
