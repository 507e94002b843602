"""Start Sanic's worker manager for a given Settings (used by every CLI mode)."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from sanic import Sanic
from sanic.worker.loader import AppLoader

from .app import create_app
from .connection import GuardedHttpProtocol
from .metrics import shared_metrics_dir
from .settings import Settings

SOMAXCONN = Path("/proc/sys/net/core/somaxconn")

logger = logging.getLogger("dummy_vllm")


def run_server(settings: Settings) -> None:
    _warn_if_capped(settings.backlog)
    with shared_metrics_dir(settings.metrics, settings.workers) as metrics_dir:
        # Workers are spawned processes: they rebuild the app from the pickled settings.
        loader = AppLoader(factory=partial(create_app, settings.replace(metrics_dir=metrics_dir)))
        app = loader.load()
        app.prepare(
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            # The manager listens on the socket the workers inherit: connections that come
            # before a worker accepts wait in this queue instead of being dropped.
            backlog=settings.backlog,
            motd=False,
            access_log=settings.log_level.lower() == "debug",
            protocol=GuardedHttpProtocol,
        )
        Sanic.serve(primary=app, app_loader=loader)


def _warn_if_capped(backlog: int) -> None:
    # The kernel silently lowers a larger backlog to somaxconn: say so once, at start.
    try:
        limit = int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return
    if backlog > limit:
        logger.warning("listen backlog %d is capped at net.core.somaxconn = %d", backlog, limit)
