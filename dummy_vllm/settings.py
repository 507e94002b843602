"""Server configuration as frozen, picklable value objects.

Sanic workers are spawned processes: the app factory receives a ``Settings`` by pickling, so
everything here is plain data. Validation happens once, in ``__post_init__``, so a bad value is
refused when the server starts, never on a request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

DEFAULT_MODEL = "dummy-vllm/synthetic-1b"
DEFAULT_DB_PATH = Path("recordings") / "dummy_vllm.db"
VLLM_VERSION = "0.11.0"


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

    def __post_init__(self) -> None:
        for name in ("ttft", "itl", "ttft_jitter", "itl_jitter", "prefill_per_token"):
            value = getattr(self, name)
            if not value >= 0.0 or value == float("inf"):
                raise SettingsError(f"{name} must be a finite number >= 0, got {value!r}")

    @property
    def is_instant(self) -> bool:
        return self.ttft == 0.0 and self.itl == 0.0 and self.prefill_per_token == 0.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits that keep one request from exhausting the server."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_n: int = 128
    max_logprobs: int = 20

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise SettingsError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.max_n < 1:
            raise SettingsError(f"max_n must be >= 1, got {self.max_n}")


def parse_pairs(values: Iterable[str], separator: str) -> tuple[tuple[str, str], ...]:
    """``["a=b", ...]`` -> ``(("a", "b"), ...)``, refusing items without the separator."""
    pairs = []
    for value in values:
        name, found, rest = value.partition(separator)
        if not found or not name.strip():
            raise SettingsError(f"expected NAME{separator}VALUE, got {value!r}")
        pairs.append((name.strip(), rest.strip()))
    return tuple(pairs)


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

    def __post_init__(self) -> None:
        if not self.upstream.startswith(("http://", "https://")):
            raise SettingsError(f"upstream must be an http(s) URL, got {self.upstream!r}")
        if not self.session:
            raise SettingsError("session name must not be empty")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise SettingsError("timeouts must be > 0")


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """Replay mode: answer from recorded ``sessions`` with their timing."""

    sessions: tuple[str, ...]
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
        if not self.sessions:
            raise SettingsError("replay needs at least one session")
        if not self.speed > 0 or self.speed == float("inf"):
            raise SettingsError(f"speed must be a finite number > 0, got {self.speed!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    workers: int = 1
    model: str = DEFAULT_MODEL
    # The path or hub id a real vLLM was started with; shows as ``root`` in /v1/models.
    model_root: str | None = None
    max_model_len: int = 4096
    seed: int = 0
    api_key: str | None = None
    # Probability that each generated token is EOS (geometric output lengths); 0 = full length.
    eos_rate: float = 0.0
    # Answer with the prompt text instead of generated text.
    echo_prompt: bool = False
    latency: LatencySettings = field(default_factory=LatencySettings)
    limits: Limits = field(default_factory=Limits)
    db_path: Path = DEFAULT_DB_PATH
    record: RecordSettings | None = None
    replay: ReplaySettings | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be in 1..65535, got {self.port}")
        if self.workers < 1:
            raise SettingsError(f"workers must be >= 1, got {self.workers}")
        if self.max_model_len < 2:
            raise SettingsError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if not self.model:
            raise SettingsError("model must not be empty")
        if not 0.0 <= self.eos_rate < 1.0:
            raise SettingsError(f"eos_rate must be in [0, 1), got {self.eos_rate}")
        if self.log_level.lower() not in {"critical", "error", "warning", "info", "debug"}:
            raise SettingsError(
                "log_level must be one of critical/error/warning/info/debug, "
                f"got {self.log_level!r}"
            )
        if self.record is not None and self.replay is not None:
            raise SettingsError("record and replay modes are exclusive")
        if self.seed < 0:
            raise SettingsError(f"seed must be >= 0, got {self.seed}")

    @property
    def root(self) -> str:
        return self.model_root or self.model

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
