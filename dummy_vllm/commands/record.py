"""``cli.py record``: proxy to a real upstream and record every exchange into a session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..recording.store import Store
from ..settings import RecordSettings, Settings
from . import parsers
from .edge import fail, run_on_store, settings_or_exit
from .options import (
    LogLevel,
    backlog_option,
    db_option,
    host_option,
    log_level_option,
    port_option,
    workers_option,
)

RECORD = "Recording"
BATCH = "Recording without a client"
# RecordSettings' defaults, read from an instance: slotted dataclasses keep none on the class.
_DEFAULTS = RecordSettings(upstream="http://upstream", session="defaults")


def record(
    upstream: str = typer.Option(
        ...,
        envvar="DUMMY_VLLM_UPSTREAM",
        help="Root URL of the OpenAI-compatible server to record, e.g. http://gpu-box:8000.",
        rich_help_panel=RECORD,
    ),
    session: str = typer.Option(
        ...,
        envvar="DUMMY_VLLM_SESSION",
        help="Session to record into; an existing session is appended to.",
        rich_help_panel=RECORD,
    ),
    upstream_api_key: str | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_UPSTREAM_API_KEY",
        help="Sent upstream as 'Authorization: Bearer KEY' instead of the client's header.",
        rich_help_panel=RECORD,
    ),
    header: list[parsers.Pair] | None = typer.Option(
        None,
        "--header",
        "-H",
        parser=parsers.header,
        metavar="'NAME: VALUE'",
        help="Extra header for the upstream (repeatable).",
        rich_help_panel=RECORD,
    ),
    note: str | None = typer.Option(
        None, help="Free text kept with a new session.", rich_help_panel=RECORD
    ),
    connect_timeout: float = typer.Option(
        _DEFAULTS.connect_timeout,
        envvar="DUMMY_VLLM_CONNECT_TIMEOUT",
        help="Seconds to connect to the upstream (502 beyond).",
        rich_help_panel=RECORD,
    ),
    read_timeout: float = typer.Option(
        _DEFAULTS.read_timeout,
        envvar="DUMMY_VLLM_READ_TIMEOUT",
        help="Longest silence from the upstream, seconds, before the exchange counts as dropped.",
        rich_help_panel=RECORD,
    ),
    max_event_bytes: int = typer.Option(
        _DEFAULTS.max_event_bytes,
        envvar="DUMMY_VLLM_MAX_EVENT_BYTES",
        help="Largest SSE event relayed from the upstream: a stream with a larger one is cut "
        "off there (recorded upstream_dropped).",
        rich_help_panel=RECORD,
    ),
    max_response_bytes: int = typer.Option(
        _DEFAULTS.max_response_bytes,
        envvar="DUMMY_VLLM_MAX_RESPONSE_BYTES",
        help="Largest non-streamed upstream answer relayed (502 beyond, recorded "
        "upstream_dropped).",
        rich_help_panel=RECORD,
    ),
    requests: Path | None = typer.Option(
        None,
        "--requests",
        help="JSON Lines of request bodies to send and record without starting a server.",
        rich_help_panel=BATCH,
    ),
    concurrency: int = typer.Option(
        4, min=1, help="Requests in flight with --requests.", rich_help_panel=BATCH
    ),
    host: str = host_option(),
    port: int = port_option(),
    workers: int = workers_option(),
    backlog: int = backlog_option(),
    log_level: LogLevel = log_level_option(),
    db: Path = db_option(),
) -> None:
    """Proxy vLLM's OpenAI-compatible API to an upstream, recording each exchange with its
    timing; or, with --requests, send a file of requests and record them."""
    settings = settings_or_exit(
        lambda: Settings(
            host=host,
            port=port,
            workers=workers,
            backlog=backlog,
            log_level=log_level.value,
            db_path=db,
            record=RecordSettings(
                upstream=upstream,
                session=session,
                upstream_api_key=upstream_api_key,
                extra_headers=tuple(header or ()),
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                note=note,
                max_event_bytes=max_event_bytes,
                max_response_bytes=max_response_bytes,
            ),
        )
    )
    from ..recording import batch  # aiohttp and Sanic only when recording really starts

    calls = None
    if requests is not None:
        try:
            calls = batch.read_requests(requests)
        except batch.RequestsFileError as exc:
            fail(str(exc))
    assert settings.record is not None
    # Secrets are left out: header values only by name, the API key not at all.
    options: dict[str, Any] = {
        "mode": "proxy" if calls is None else "requests",
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "extra_headers": [name for name, _ in settings.record.extra_headers],
        "upstream_api_key": upstream_api_key is not None,
    }
    options |= {"workers": workers} if calls is None else {"concurrency": concurrency}
    _prepare_store(settings, options)
    if calls is None:
        from ..server import run_server

        run_server(settings)
        return
    summary = batch.run(settings.record, settings.db_path, calls, concurrency, Console())
    if not summary.complete:
        # A run that went wrong, not a refused configuration: exit 1, not 2.
        fail("no request was recorded complete", code=1)


def _prepare_store(settings: Settings, options: dict[str, Any]) -> None:
    """Migrate the database and ensure the session, before any worker starts."""
    record = settings.record
    assert record is not None

    async def ensure_session(store: Store) -> None:
        await store.ensure_session(
            record.session, upstream=record.upstream, options=options, note=record.note
        )

    run_on_store(settings.db_path, ensure_session, create=True)
