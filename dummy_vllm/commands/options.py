"""Options shared by several commands, so their flags and variables agree."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer

from ..settings import DEFAULT_BACKLOG, DEFAULT_DB_PATH

SERVER = "Server"


class LogLevel(StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


def host_option() -> Any:
    return typer.Option(
        "127.0.0.1", envvar="DUMMY_VLLM_HOST", help="Address to bind.", rich_help_panel=SERVER
    )


def port_option() -> Any:
    return typer.Option(
        8000, envvar="DUMMY_VLLM_PORT", help="Port to bind.", rich_help_panel=SERVER
    )


def workers_option() -> Any:
    return typer.Option(
        1, envvar="DUMMY_VLLM_WORKERS", help="Sanic worker processes.", rich_help_panel=SERVER
    )


def backlog_option() -> Any:
    return typer.Option(
        DEFAULT_BACKLOG,
        envvar="DUMMY_VLLM_BACKLOG",
        help="Connections queued for the workers to accept (listen backlog), as uvicorn's; the "
        "kernel caps it at net.core.somaxconn.",
        rich_help_panel=SERVER,
    )


def log_level_option() -> Any:
    return typer.Option(
        LogLevel.INFO, envvar="DUMMY_VLLM_LOG_LEVEL", help="Log level.", rich_help_panel=SERVER
    )


def db_option(rich_help_panel: str | None = SERVER) -> Any:
    return typer.Option(
        DEFAULT_DB_PATH,
        "--db",
        envvar="DUMMY_VLLM_DB",
        help="SQLite database of recorded sessions.",
        rich_help_panel=rich_help_panel,
    )
