"""``cli.py serve``: synthetic mode. Every option also reads a DUMMY_VLLM_* variable."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import typer

from ..settings import (
    DEFAULT_DB_PATH,
    DEFAULT_MODEL,
    JitterDistribution,
    LatencySettings,
    Limits,
    Settings,
    SettingsError,
)

SERVER = "Server"
MODEL = "Model"
LATENCY = "Latency (milliseconds)"
LIMITS = "Limits"


class LogLevel(StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


def settings_or_exit(build: Callable[[], Settings]) -> Settings:
    """Build Settings, or exit with a one-line error instead of a traceback."""
    try:
        return build()
    except SettingsError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=2) from None


def serve(
    host: str = typer.Option(
        "127.0.0.1", envvar="DUMMY_VLLM_HOST", help="Address to bind.", rich_help_panel=SERVER
    ),
    port: int = typer.Option(
        8000, envvar="DUMMY_VLLM_PORT", help="Port to bind.", rich_help_panel=SERVER
    ),
    workers: int = typer.Option(
        1, envvar="DUMMY_VLLM_WORKERS", help="Sanic worker processes.", rich_help_panel=SERVER
    ),
    log_level: LogLevel = typer.Option(
        LogLevel.INFO, envvar="DUMMY_VLLM_LOG_LEVEL", help="Log level.", rich_help_panel=SERVER
    ),
    api_key: str | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_API_KEY",
        help="Require 'Authorization: Bearer KEY' on /v1 routes (401 otherwise), as vLLM does.",
        rich_help_panel=SERVER,
    ),
    db: Path = typer.Option(
        DEFAULT_DB_PATH,
        envvar="DUMMY_VLLM_DB",
        help="SQLite database of recorded sessions.",
        rich_help_panel=SERVER,
    ),
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        "--served-model-name",
        envvar="DUMMY_VLLM_MODEL",
        help="Served model name (the 'model' clients send and /v1/models lists).",
        rich_help_panel=MODEL,
    ),
    model_root: str | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_MODEL_ROOT",
        help="'root' in /v1/models (the path a real vLLM was given); default: the model name.",
        rich_help_panel=MODEL,
    ),
    max_model_len: int = typer.Option(
        4096,
        envvar="DUMMY_VLLM_MAX_MODEL_LEN",
        help="Context length in tokens: prompt plus output.",
        rich_help_panel=MODEL,
    ),
    seed: int = typer.Option(
        0,
        envvar="DUMMY_VLLM_SEED",
        help="Seed for text and latency when a request gives none.",
        rich_help_panel=MODEL,
    ),
    eos_rate: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_EOS_RATE",
        help="Per-token probability of EOS (geometric output lengths, finish_reason 'stop'); "
        "0 = always max_tokens. ignore_eos requests always get max_tokens.",
        rich_help_panel=MODEL,
    ),
    echo_prompt: bool = typer.Option(
        False,
        envvar="DUMMY_VLLM_ECHO_PROMPT",
        help="Answer with the prompt's tokens instead of generated text.",
        rich_help_panel=MODEL,
    ),
    ttft_delay: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_TTFT_DELAY",
        help="Mean time to first token, ms.",
        rich_help_panel=LATENCY,
    ),
    ttft_jitter: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_TTFT_JITTER",
        help="Standard deviation of the time to first token, ms.",
        rich_help_panel=LATENCY,
    ),
    token_delay: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_TOKEN_DELAY",
        help="Mean inter-token latency, ms.",
        rich_help_panel=LATENCY,
    ),
    token_delay_jitter: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_TOKEN_DELAY_JITTER",
        help="Standard deviation of the inter-token latency, ms.",
        rich_help_panel=LATENCY,
    ),
    jitter_distribution: JitterDistribution = typer.Option(
        JitterDistribution.NORMAL,
        envvar="DUMMY_VLLM_JITTER_DISTRIBUTION",
        help="Distribution of TTFT and ITL samples (clipped at 0).",
        rich_help_panel=LATENCY,
    ),
    prefill_per_token: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_PREFILL_PER_TOKEN",
        help="Extra time to first token per prompt token, ms.",
        rich_help_panel=LATENCY,
    ),
    max_body_bytes: int = typer.Option(
        Limits().max_body_bytes,
        envvar="DUMMY_VLLM_MAX_BODY_BYTES",
        help="Largest request body accepted (413 beyond).",
        rich_help_panel=LIMITS,
    ),
    max_n: int = typer.Option(
        Limits().max_n,
        envvar="DUMMY_VLLM_MAX_N",
        help="Largest 'n' accepted (400 beyond).",
        rich_help_panel=LIMITS,
    ),
) -> None:
    """Serve vLLM's OpenAI-compatible API with synthetic text and configured timing."""
    settings = settings_or_exit(
        lambda: Settings(
            host=host,
            port=port,
            workers=workers,
            log_level=log_level.value,
            api_key=api_key,
            db_path=db,
            model=model,
            model_root=model_root,
            max_model_len=max_model_len,
            seed=seed,
            eos_rate=eos_rate,
            echo_prompt=echo_prompt,
            latency=LatencySettings(
                ttft=ttft_delay / 1000,
                itl=token_delay / 1000,
                ttft_jitter=ttft_jitter / 1000,
                itl_jitter=token_delay_jitter / 1000,
                distribution=jitter_distribution,
                prefill_per_token=prefill_per_token / 1000,
            ),
            limits=Limits(max_body_bytes=max_body_bytes, max_n=max_n),
        )
    )
    from ..server import run_server  # Sanic is imported only when a server really starts.

    run_server(settings)
