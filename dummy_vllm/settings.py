"""Server configuration as frozen, picklable value objects.

Sanic workers are spawned processes: the app factory receives a ``Settings`` by pickling, so
everything here is plain data. Validation happens once, in ``__post_init__``, so a bad value is
refused when the server starts, never on a request.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .protocol.profiles import DEFAULT_PROFILE, Profile, UnknownVersion, profile_for

DEFAULT_MODEL = "dummy-vllm/synthetic-1b"
DEFAULT_DB_PATH = Path("recordings") / "dummy_vllm.db"
# uvicorn's default listen backlog, which vLLM's API server keeps. The kernel caps it at
# net.core.somaxconn. Sanic's own default (100) overflows on a burst of connections, and a
# client whose SYN is dropped retries only after a second.
DEFAULT_BACKLOG = 2048


class SettingsError(ValueError):
    """A configuration value that the server refuses to start with."""


class JitterDistribution(StrEnum):
    CONSTANT = "constant"
    NORMAL = "normal"
    LOGNORMAL = "lognormal"


@dataclass(frozen=True, slots=True)
class LatencySettings:
    """The synthetic latency model. All durations are in seconds.

    ``ttft`` and ``itl`` are means; ``*_jitter`` are standard deviations of the chosen
    distribution (ignored by ``constant``). Samples are clipped at zero, never capped above.
    """

    ttft: float = 0.0
    itl: float = 0.0
    ttft_jitter: float = 0.0
    itl_jitter: float = 0.0
    distribution: JitterDistribution = JitterDistribution.NORMAL
    prefill_per_token: float = 0.0
    # Embeddings and /pooling answer after ``pooling + pooling_per_token x prompt tokens``
    # (all inputs of the request together).
    pooling: float = 0.0
    pooling_per_token: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "ttft",
            "itl",
            "ttft_jitter",
            "itl_jitter",
            "prefill_per_token",
            "pooling",
            "pooling_per_token",
        ):
            value = getattr(self, name)
            if not value >= 0.0 or value == float("inf"):
                raise SettingsError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Tool calling and reasoning, as vLLM's server flags enable them, and how often the
    pretend model uses them."""

    # vLLM's --enable-auto-tool-choice and --tool-call-parser: "auto" needs both (and named or
    # "required" too from 0.17).
    enable_auto_tool_choice: bool = False
    tool_call_parser: str | None = None
    # Share of requests with tools and tool_choice "auto" answered with tool calls.
    tool_call_rate: float = 1.0
    # vLLM's --reasoning-parser: the answer starts with reasoning, split into its own field.
    reasoning_parser: str | None = None
    # Share of the generated tokens that are reasoning (before the answer).
    reasoning_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise SettingsError("--enable-auto-tool-choice requires --tool-call-parser")
        for name in ("tool_call_rate", "reasoning_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SettingsError(f"{name} must be in [0, 1], got {value!r}")

    def check_parsers(self, profile: Profile) -> None:
        """Refuse parser names the era has not registered, with vLLM's start-up messages."""
        if self.enable_auto_tool_choice and self.tool_call_parser not in profile.tool_parsers:
            raise SettingsError(
                f"invalid tool call parser: {self.tool_call_parser} "
                f"(chose from {{ {','.join(profile.tool_parsers)} }})"
            )
        if self.reasoning_parser and self.reasoning_parser not in profile.reasoning_parsers:
            raise SettingsError(
                f"invalid reasoning parser: {self.reasoning_parser} "
                f"(chose from {{ {','.join(profile.reasoning_parsers)} }})"
            )


@dataclass(frozen=True, slots=True)
class OutputLength:
    """How long an answer runs when the request sets no ``max_tokens`` (chat only: completions
    default to 16 as in vLLM). A real model stops at EOS after a few hundred tokens; the length
    is drawn from a lognormal law of this mean and standard deviation, capped by the room left
    in the context. ``mean == 0`` fills the context, as a model that never emits EOS would."""

    mean: float = 256.0
    spread: float = 128.0

    def __post_init__(self) -> None:
        for name in ("mean", "spread"):
            value = getattr(self, name)
            if not 0.0 <= value < float("inf"):
                raise SettingsError(f"default output {name} must be a finite number >= 0")


@dataclass(frozen=True, slots=True)
class SyntheticSettings:
    """What synthetic mode generates and when (replay's misses are answered the same way)."""

    latency: LatencySettings = field(default_factory=LatencySettings)
    # Probability that each generated token is EOS (geometric output lengths); 0 = full length.
    eos_rate: float = 0.0
    # Answer with the prompt text instead of generated text.
    echo_prompt: bool = False
    agent: AgentSettings = field(default_factory=AgentSettings)
    default_length: OutputLength = field(default_factory=OutputLength)
    # Keep Responses API answers for GET and previous_response_id (vLLM's
    # VLLM_ENABLE_RESPONSES_API_STORE=1).
    responses_store: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.eos_rate < 1.0:
            raise SettingsError(f"eos_rate must be in [0, 1), got {self.eos_rate}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits that keep one request from exhausting the server."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_n: int = 128
    max_logprobs: int = 20
    # Stop strings of one request (each is searched for in every choice's text).
    max_stop_strings: int = 64
    # Output tokens of one request, over all its choices (n x prompts x max_tokens).
    max_request_tokens: int = 262_144
    # Log-probabilities of one request: its output tokens x (top_logprobs + 1).
    max_logprob_entries: int = 262_144

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise SettingsError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        for name in ("max_n", "max_stop_strings", "max_request_tokens", "max_logprob_entries"):
            value = getattr(self, name)
            if value < 1:
                raise SettingsError(f"{name} must be >= 1, got {value}")
        if self.max_logprobs < 0:
            raise SettingsError(f"max_logprobs must be >= 0, got {self.max_logprobs}")


class MissPolicy(StrEnum):
    ERROR = "error"
    SYNTHETIC = "synthetic"
    PROFILE = "profile"


@dataclass(frozen=True, slots=True)
class RecordSettings:
    """Record mode: proxy to ``upstream`` and store every exchange in ``session``."""

    upstream: str
    session: str
    upstream_api_key: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    connect_timeout: float = 10.0
    # Longest silence allowed between two upstream reads (slow prefill, reasoning models).
    read_timeout: float = 600.0
    note: str | None = None
    # Largest SSE event and non-streamed body relayed (and kept in memory): beyond, a 502.
    max_event_bytes: int = 8 * 1024 * 1024
    max_response_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.upstream.startswith(("http://", "https://")):
            raise SettingsError(f"upstream must be an http(s) URL, got {self.upstream!r}")
        if not self.session:
            raise SettingsError("session name must not be empty")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise SettingsError("timeouts must be > 0")
        if self.max_event_bytes < 1024 or self.max_response_bytes < 1024:
            raise SettingsError("max_event_bytes and max_response_bytes must be >= 1024")


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """Replay mode: answer from recorded ``sessions`` of the database, and from exported
    session ``files``, with their timing."""

    sessions: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    # Open the database with SQLite's immutable=1: nobody writes it while it is served.
    immutable: bool = False
    on_miss: MissPolicy = MissPolicy.ERROR
    # Recorded offsets are divided by ``speed``; ``instant`` sends everything at once.
    speed: float = 1.0
    instant: bool = False
    # Request fields added to / removed from the match key's defaults.
    include_fields: tuple[str, ...] = ()
    ignore_fields: tuple[str, ...] = ()
    # Requested model name -> recorded model name.
    model_aliases: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.sessions and not self.files:
            raise SettingsError("replay needs at least one session or session file")
        if not self.speed > 0 or self.speed == float("inf"):
            raise SettingsError(f"speed must be a finite number > 0, got {self.speed!r}")


# vLLM's default --max-num-seqs: the batch size the load factor and KV usage refer to when
# no limit is set.
VLLM_MAX_NUM_SEQS = 256


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """vLLM-like admission, per worker. ``None`` means no limit.

    At most ``max_num_seqs`` requests run; later ones wait in FIFO order, and beyond
    ``max_waiting`` waiting requests new ones get 429. TTFT and ITL are stretched by
    ``1 + load_factor * running / max_num_seqs``, as batching does on a GPU.
    """

    max_num_seqs: int | None = None
    max_waiting: int | None = None
    load_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise SettingsError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_waiting is not None and self.max_waiting < 0:
            raise SettingsError(f"max_waiting must be >= 0, got {self.max_waiting}")
        if not 0.0 <= self.load_factor < float("inf"):
            raise SettingsError(f"load_factor must be a finite number >= 0, got {self.load_factor}")

    @property
    def batch_size(self) -> int:
        return self.max_num_seqs or VLLM_MAX_NUM_SEQS


class FaultType(StrEnum):
    RATE_LIMITED = "429"
    INTERNAL_ERROR = "500"
    UNAVAILABLE = "503"
    CONTEXT_LENGTH = "400"
    # The connection drops after some tokens: no [DONE], no end of the chunked body.
    CUT = "cut"
    # An in-stream error event after some tokens, then [DONE].
    ERROR_EVENT = "error-event"
    # A pause after some tokens.
    STALL = "stall"
    # Response headers held back.
    SLOW_FIRST_BYTE = "slow-first-byte"


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Each request draws a fault with probability ``rate`` from ``types`` (seeded per worker).

    ``after_tokens`` is where cut, error-event and stall strike; ``stall`` and ``delay`` (the
    slow first byte) are seconds.
    """

    rate: float = 0.0
    types: tuple[FaultType, ...] = tuple(FaultType)
    after_tokens: int = 3
    stall: float = 2.0
    delay: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise SettingsError(f"fault rate must be in [0, 1], got {self.rate}")
        if self.rate and not self.types:
            raise SettingsError("a fault rate needs at least one fault type")
        if self.after_tokens < 0:
            raise SettingsError(f"fault after_tokens must be >= 0, got {self.after_tokens}")
        for name in ("stall", "delay"):
            value = getattr(self, name)
            if not 0.0 <= value < float("inf"):
                raise SettingsError(f"fault {name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """vLLM's CORS flags; ``origins`` None means the era's default (``*`` up to 0.23, none
    from 0.24)."""

    origins: tuple[str, ...] | None = None
    methods: tuple[str, ...] = ("*",)
    headers: tuple[str, ...] = ("*",)
    credentials: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    workers: int = 1
    # Connections the kernel queues for the workers to accept.
    backlog: int = DEFAULT_BACKLOG
    # Seconds a client may take to send a request's header, and may pause within its body.
    request_timeout: float = 10.0
    model: str = DEFAULT_MODEL
    # The path or hub id a real vLLM was started with; shows as ``root`` in /v1/models.
    model_root: str | None = None
    max_model_len: int = 4096
    # Size of the vectors /v1/embeddings answers (requests may ask for fewer: ``dimensions``).
    embedding_dimensions: int = 1024
    seed: int = 0
    api_key: str | None = None
    # The vLLM release answered as: an era ("0.11") or a full version ("0.33.1").
    vllm_version: str = DEFAULT_PROFILE.name
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)
    limits: Limits = field(default_factory=Limits)
    db_path: Path = DEFAULT_DB_PATH
    record: RecordSettings | None = None
    replay: ReplaySettings | None = None
    # Serve /metrics and record what it reports.
    metrics: bool = True
    # Where several workers leave their metrics for each other: set by ``run_server``.
    metrics_dir: Path | None = None
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be in 1..65535, got {self.port}")
        if self.workers < 1:
            raise SettingsError(f"workers must be >= 1, got {self.workers}")
        if self.backlog < 1:
            raise SettingsError(f"backlog must be >= 1, got {self.backlog}")
        if not 0 < self.request_timeout < float("inf"):
            raise SettingsError(f"request_timeout must be > 0, got {self.request_timeout}")
        if self.max_model_len < 2:
            raise SettingsError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if not 1 <= self.embedding_dimensions <= 65536:
            raise SettingsError(
                f"embedding_dimensions must be in 1..65536, got {self.embedding_dimensions}"
            )
        if not self.model:
            raise SettingsError("model must not be empty")
        if self.log_level.lower() not in {"critical", "error", "warning", "info", "debug"}:
            raise SettingsError(
                "log_level must be one of critical/error/warning/info/debug, "
                f"got {self.log_level!r}"
            )
        if self.record is not None and self.replay is not None:
            raise SettingsError("record and replay modes are exclusive")
        if self.seed < 0:
            raise SettingsError(f"seed must be >= 0, got {self.seed}")
        try:
            profile_for(self.vllm_version)
        except UnknownVersion as exc:
            raise SettingsError(str(exc)) from None
        self.synthetic.agent.check_parsers(self.profile)

    @property
    def profile(self) -> Profile:
        return profile_for(self.vllm_version)[0]

    @property
    def reported_version(self) -> str:
        """What /version says."""
        return profile_for(self.vllm_version)[1]

    @property
    def root(self) -> str:
        return self.model_root or self.model

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
