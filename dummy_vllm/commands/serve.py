"""``cli.py serve``: synthetic and replay modes. Every option also reads a DUMMY_VLLM_*
variable."""

from __future__ import annotations

from pathlib import Path

import typer

from ..protocol.profiles import DEFAULT_PROFILE, PROFILES, UnknownVersion, profile_for
from ..recording.store import SessionSummary, Store
from ..settings import (
    DEFAULT_MODEL,
    AgentSettings,
    CorsSettings,
    FaultSettings,
    JitterDistribution,
    LatencySettings,
    Limits,
    MissPolicy,
    OutputLength,
    ReplaySettings,
    SchedulerSettings,
    Settings,
    SyntheticSettings,
)
from . import parsers
from .edge import fail, given_options, run_on_store, settings_or_exit
from .options import (
    SERVER,
    LogLevel,
    backlog_option,
    db_option,
    host_option,
    log_level_option,
    port_option,
    workers_option,
)

MODEL = "Model"
LATENCY = "Latency (milliseconds)"
LIMITS = "Limits"
REPLAY = "Replay"
SCHEDULER = "Scheduler (per worker)"
FAULTS = "Fault injection"
METRICS = "Metrics"
AGENTS = "Tools, structured outputs and reasoning"
SURFACE = "Embeddings, Responses API and CORS"
ERAS = ", ".join(profile.name for profile in PROFILES)


def prepare_store(settings: Settings, given: set[str]) -> Settings:
    """Before workers start: migrate the database in synthetic mode; in replay mode, refuse
    sessions and session files that cannot be replayed with a one-line error, reading the
    database read-only and never creating it. Replay serves the first session's recorded
    model name and answers as its recorded vLLM version unless ``given`` names those options."""
    from ..recording.replay import ReplayError, check_sessions  # it imports Sanic
    from ..recording.transfer import TransferError, check_export

    replay = settings.replay
    if replay is None:

        async def nothing(store: Store) -> None:
            return None

        run_on_store(settings.db_path, nothing, create=True)
        return settings

    async def recorded(store: Store) -> SessionSummary:
        return await check_sessions(store, replay.sessions)

    try:
        firsts = []
        if replay.sessions:
            summary = run_on_store(
                settings.db_path,
                recorded,
                create=False,
                read_only=True,
                immutable=replay.immutable,
            )
            firsts.append((summary.models, summary.version))
        for path in replay.files:
            header = check_export(path)
            if not header.exchanges:
                raise ReplayError(f"{path}: the session file has no exchanges")
            firsts.append((header.session.models, header.session.version))
    except (ReplayError, TransferError) as exc:
        fail(str(exc))
    models, version = firsts[0]
    changes: dict[str, object] = {}
    if models and "model" not in given:
        changes["model"] = models[0]
    if version and "vllm_version" not in given:
        try:
            profile_for(version)
        except UnknownVersion:
            typer.echo(
                f"Note: the session's vLLM version {version!r} names no emulated era; "
                f"answering as {settings.vllm_version}.",
                err=True,
            )
        else:
            changes["vllm_version"] = version
    return settings.replace(**changes)


def serve(
    ctx: typer.Context,
    host: str = host_option(),
    port: int = port_option(),
    workers: int = workers_option(),
    backlog: int = backlog_option(),
    log_level: LogLevel = log_level_option(),
    api_key: str | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_API_KEY",
        help="Require 'Authorization: Bearer KEY' on /v1 routes (401 otherwise), as vLLM does.",
        rich_help_panel=SERVER,
    ),
    db: Path = db_option(),
    request_timeout: float = typer.Option(
        Settings().request_timeout,
        envvar="DUMMY_VLLM_REQUEST_TIMEOUT",
        help="Seconds a client may take to send a request's header, and may pause while "
        "sending its body (408 and the connection closed beyond).",
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
    vllm_version: str = typer.Option(
        DEFAULT_PROFILE.name,
        envvar="DUMMY_VLLM_VLLM_VERSION",
        help=f"The vLLM release to answer as: an era ({ERAS}) or a full version such as "
        "0.33.1, answered in its era's shapes and reported by /version. Replay defaults to the "
        "version the session recorded.",
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
    default_output_tokens: float = typer.Option(
        OutputLength().mean,
        envvar="DUMMY_VLLM_DEFAULT_OUTPUT_TOKENS",
        help="Mean length of a chat answer when the request sets no max_tokens (it then ends "
        "with EOS, finish_reason 'stop', as a real model does); 0 = fill the context.",
        rich_help_panel=MODEL,
    ),
    default_output_spread: float = typer.Option(
        OutputLength().spread,
        envvar="DUMMY_VLLM_DEFAULT_OUTPUT_SPREAD",
        help="Standard deviation of that length (lognormal law).",
        rich_help_panel=MODEL,
    ),
    enable_auto_tool_choice: bool = typer.Option(
        False,
        "--enable-auto-tool-choice",
        envvar="DUMMY_VLLM_ENABLE_AUTO_TOOL_CHOICE",
        help="As vLLM's flag: allow tool_choice 'auto' (needs --tool-call-parser); from 0.17 "
        "named and 'required' tool choices need it too.",
        rich_help_panel=AGENTS,
    ),
    tool_call_parser: str | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_TOOL_CALL_PARSER",
        help="A vLLM tool parser name of the era (hermes, llama3_json, mistral...); the answers "
        "are in OpenAI's shape whatever the parser.",
        rich_help_panel=AGENTS,
    ),
    tool_call_rate: float = typer.Option(
        AgentSettings().tool_call_rate,
        envvar="DUMMY_VLLM_TOOL_CALL_RATE",
        help="Share of tool_choice 'auto' requests answered with tool calls (the others in prose).",
        rich_help_panel=AGENTS,
    ),
    reasoning_parser: str | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_REASONING_PARSER",
        help="A vLLM reasoning parser name of the era (deepseek_r1, qwen3...): answers start "
        "with reasoning, sent in the era's reasoning field.",
        rich_help_panel=AGENTS,
    ),
    reasoning_ratio: float = typer.Option(
        AgentSettings().reasoning_ratio,
        envvar="DUMMY_VLLM_REASONING_RATIO",
        help="Share of the output length spent reasoning, with --reasoning-parser.",
        rich_help_panel=AGENTS,
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
    max_logprobs: int = typer.Option(
        Limits().max_logprobs,
        envvar="DUMMY_VLLM_MAX_LOGPROBS",
        help="Largest logprobs / top_logprobs accepted, as vLLM's --max-logprobs (400 beyond).",
        rich_help_panel=LIMITS,
    ),
    max_stop_strings: int = typer.Option(
        Limits().max_stop_strings,
        envvar="DUMMY_VLLM_MAX_STOP_STRINGS",
        help="Most stop strings one request may send (400 beyond).",
        rich_help_panel=LIMITS,
    ),
    max_request_tokens: int = typer.Option(
        Limits().max_request_tokens,
        envvar="DUMMY_VLLM_MAX_REQUEST_TOKENS",
        help="Most output tokens one request may ask for over all its choices: "
        "n x prompts x max_tokens (400 beyond).",
        rich_help_panel=LIMITS,
    ),
    max_logprob_entries: int = typer.Option(
        Limits().max_logprob_entries,
        envvar="DUMMY_VLLM_MAX_LOGPROB_ENTRIES",
        help="Most log-probabilities one request may ask for: its output tokens x "
        "(top_logprobs + 1) (400 beyond).",
        rich_help_panel=LIMITS,
    ),
    replay: list[str] | None = typer.Option(
        None,
        "--replay",
        envvar="DUMMY_VLLM_REPLAY",
        help="Answer from this recorded session instead of synthetic text (repeatable).",
        rich_help_panel=REPLAY,
    ),
    replay_file: list[Path] | None = typer.Option(
        None,
        "--replay-file",
        envvar="DUMMY_VLLM_REPLAY_FILE",
        help="Answer from this exported session file (sessions export), without any database "
        "(repeatable; combines with --replay).",
        rich_help_panel=REPLAY,
    ),
    db_immutable: bool = typer.Option(
        False,
        "--db-immutable",
        envvar="DUMMY_VLLM_DB_IMMUTABLE",
        help="Open the replayed database as immutable (SQLite immutable=1): needed on a "
        "read-only volume without the database's -shm file; nothing may write it meanwhile.",
        rich_help_panel=REPLAY,
    ),
    on_miss: MissPolicy = typer.Option(
        MissPolicy.ERROR,
        envvar="DUMMY_VLLM_ON_MISS",
        help="When no recording matches: error (404 naming the nearest recording), synthetic, "
        "or profile (synthetic text on the timing of the most alike recording).",
        rich_help_panel=REPLAY,
    ),
    speed: float = typer.Option(
        1.0,
        envvar="DUMMY_VLLM_REPLAY_SPEED",
        help="Replay faster (>1) or slower (<1) than recorded.",
        rich_help_panel=REPLAY,
    ),
    instant: bool = typer.Option(
        False,
        envvar="DUMMY_VLLM_REPLAY_INSTANT",
        help="Send recorded answers at once, without their timing.",
        rich_help_panel=REPLAY,
    ),
    match_include: list[str] | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_MATCH_INCLUDE",
        help="Count this request field in the match key although it is ignored by default.",
        rich_help_panel=REPLAY,
    ),
    match_ignore: list[str] | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_MATCH_IGNORE",
        help="Ignore this request field when matching (besides stream, stream_options, user).",
        rich_help_panel=REPLAY,
    ),
    model_alias: list[parsers.Pair] | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_MODEL_ALIAS",
        parser=parsers.model_alias,
        metavar="REQUESTED=RECORDED",
        help="Match requests for REQUESTED against recordings of RECORDED (repeatable).",
        rich_help_panel=REPLAY,
    ),
    max_num_seqs: int | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_MAX_NUM_SEQS",
        help="Requests running at once; later ones wait in FIFO order and their wait shows in "
        "TTFT. Default: no limit (vLLM's is 256). Per worker: W workers run W x this.",
        rich_help_panel=SCHEDULER,
    ),
    max_waiting: int | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_MAX_WAITING",
        help="Requests allowed to wait; beyond, 429 (RateLimitError). Default: no limit. "
        "Per worker.",
        rich_help_panel=SCHEDULER,
    ),
    load_factor: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_LOAD_FACTOR",
        help="Stretch TTFT and ITL by 1 + F x running / max-num-seqs (256 when unset), as "
        "batching does on a GPU. 0 = off.",
        rich_help_panel=SCHEDULER,
    ),
    fault_rate: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_FAULT_RATE",
        help="Share of generation requests that get a fault (0..1), from a seeded RNG per "
        "worker. A request can also choose one: 'X-Dummy-Fault: TYPE[;after=N][;ms=M]' or "
        "'none'.",
        rich_help_panel=FAULTS,
    ),
    fault_types: parsers.FaultTypes = typer.Option(
        ",".join(FaultSettings().types),
        envvar="DUMMY_VLLM_FAULT_TYPES",
        parser=parsers.fault_types,
        metavar="TYPE,...",
        help="Faults to draw from, comma-separated: 429, 500, 503, 400 (context length), cut "
        "(connection dropped after N tokens, no [DONE]), error-event (in-stream error, then "
        "[DONE]), stall (a pause after N tokens), slow-first-byte (headers held back).",
        rich_help_panel=FAULTS,
    ),
    fault_after_tokens: int = typer.Option(
        FaultSettings().after_tokens,
        envvar="DUMMY_VLLM_FAULT_AFTER_TOKENS",
        help="Tokens sent before a cut, an error event or a stall.",
        rich_help_panel=FAULTS,
    ),
    fault_stall: float = typer.Option(
        FaultSettings().stall * 1000,
        envvar="DUMMY_VLLM_FAULT_STALL",
        help="Length of a stall, ms.",
        rich_help_panel=FAULTS,
    ),
    fault_delay: float = typer.Option(
        FaultSettings().delay * 1000,
        envvar="DUMMY_VLLM_FAULT_DELAY",
        help="How long slow-first-byte holds the response headers back, ms.",
        rich_help_panel=FAULTS,
    ),
    disable_metrics: bool = typer.Option(
        False,
        "--disable-metrics",
        envvar="DUMMY_VLLM_DISABLE_METRICS",
        help="Record no metrics and do not serve /metrics (404).",
        rich_help_panel=METRICS,
    ),
    embedding_dimensions: int = typer.Option(
        Settings().embedding_dimensions,
        envvar="DUMMY_VLLM_EMBEDDING_DIMENSIONS",
        help="Size of the vectors /v1/embeddings answers; requests may ask for fewer "
        "('dimensions').",
        rich_help_panel=SURFACE,
    ),
    embedding_delay: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_EMBEDDING_DELAY",
        help="Time an embeddings or /pooling request takes, ms, before the per-token cost.",
        rich_help_panel=SURFACE,
    ),
    embedding_delay_per_token: float = typer.Option(
        0.0,
        envvar="DUMMY_VLLM_EMBEDDING_DELAY_PER_TOKEN",
        help="Extra embeddings or /pooling time per prompt token of all inputs, ms.",
        rich_help_panel=SURFACE,
    ),
    enable_responses_store: bool = typer.Option(
        False,
        "--enable-responses-store",
        envvar="DUMMY_VLLM_ENABLE_RESPONSES_STORE",
        help="Keep Responses API answers for GET /v1/responses/{id} and previous_response_id "
        "(vLLM's VLLM_ENABLE_RESPONSES_API_STORE=1); the newest 1000 per worker.",
        rich_help_panel=SURFACE,
    ),
    allowed_origins: parsers.Strings | None = typer.Option(
        None,
        envvar="DUMMY_VLLM_ALLOWED_ORIGINS",
        parser=parsers.json_strings,
        metavar="JSON",
        help="CORS origins, a JSON list ('[\"http://a.example\"]'). Default: the era's, "
        '["*"] up to 0.23, none from 0.24.',
        rich_help_panel=SURFACE,
    ),
    allowed_methods: parsers.Strings = typer.Option(
        '["*"]',
        envvar="DUMMY_VLLM_ALLOWED_METHODS",
        parser=parsers.json_strings,
        metavar="JSON",
        help="CORS methods, a JSON list.",
        rich_help_panel=SURFACE,
    ),
    allowed_headers: parsers.Strings = typer.Option(
        '["*"]',
        envvar="DUMMY_VLLM_ALLOWED_HEADERS",
        parser=parsers.json_strings,
        metavar="JSON",
        help="CORS request headers, a JSON list.",
        rich_help_panel=SURFACE,
    ),
    allow_credentials: bool = typer.Option(
        False,
        "--allow-credentials",
        envvar="DUMMY_VLLM_ALLOW_CREDENTIALS",
        help="CORS: allow credentials.",
        rich_help_panel=SURFACE,
    ),
) -> None:
    """Serve vLLM's OpenAI-compatible API: synthetic text on configured timing, or recorded
    sessions with their real timing (--replay)."""
    settings = settings_or_exit(
        lambda: Settings(
            host=host,
            port=port,
            workers=workers,
            backlog=backlog,
            log_level=log_level.value,
            request_timeout=request_timeout,
            api_key=api_key,
            db_path=db,
            model=model,
            model_root=model_root,
            max_model_len=max_model_len,
            vllm_version=vllm_version,
            seed=seed,
            synthetic=SyntheticSettings(
                latency=LatencySettings(
                    ttft=ttft_delay / 1000,
                    itl=token_delay / 1000,
                    ttft_jitter=ttft_jitter / 1000,
                    itl_jitter=token_delay_jitter / 1000,
                    distribution=jitter_distribution,
                    prefill_per_token=prefill_per_token / 1000,
                    pooling=embedding_delay / 1000,
                    pooling_per_token=embedding_delay_per_token / 1000,
                ),
                eos_rate=eos_rate,
                echo_prompt=echo_prompt,
                agent=AgentSettings(
                    enable_auto_tool_choice=enable_auto_tool_choice,
                    tool_call_parser=tool_call_parser,
                    tool_call_rate=tool_call_rate,
                    reasoning_parser=reasoning_parser,
                    reasoning_ratio=reasoning_ratio,
                ),
                default_length=OutputLength(default_output_tokens, default_output_spread),
                responses_store=enable_responses_store,
            ),
            embedding_dimensions=embedding_dimensions,
            cors=CorsSettings(
                origins=allowed_origins,
                methods=allowed_methods,
                headers=allowed_headers,
                credentials=allow_credentials,
            ),
            limits=Limits(
                max_body_bytes=max_body_bytes,
                max_n=max_n,
                max_logprobs=max_logprobs,
                max_stop_strings=max_stop_strings,
                max_request_tokens=max_request_tokens,
                max_logprob_entries=max_logprob_entries,
            ),
            replay=ReplaySettings(
                sessions=tuple(replay or ()),
                files=tuple(replay_file or ()),
                immutable=db_immutable,
                on_miss=on_miss,
                speed=speed,
                instant=instant,
                include_fields=tuple(match_include or ()),
                ignore_fields=tuple(match_ignore or ()),
                model_aliases=tuple(model_alias or ()),
            )
            if replay or replay_file
            else None,
            metrics=not disable_metrics,
            scheduler=SchedulerSettings(
                max_num_seqs=max_num_seqs, max_waiting=max_waiting, load_factor=load_factor
            ),
            faults=FaultSettings(
                rate=fault_rate,
                types=fault_types,
                after_tokens=fault_after_tokens,
                stall=fault_stall / 1000,
                delay=fault_delay / 1000,
            ),
        )
    )
    # Given means set, even to the default. ParameterSource is click's, which typer vendors
    # privately: members are told by name.
    settings = prepare_store(settings, given_options(ctx, "model", "vllm_version"))
    from ..server import run_server  # Sanic is imported only when a server really starts.

    run_server(settings)
