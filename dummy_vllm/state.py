"""Per-worker state, built once when a worker starts and kept on ``app.ctx.state``."""

from __future__ import annotations

from dataclasses import dataclass

from .engine import Tokenizer
from .protocol.requests import ServedModel
from .settings import Settings
from .synthetic import SyntheticModel


@dataclass(frozen=True, slots=True)
class WorkerState:
    settings: Settings
    served: ServedModel
    synthetic: SyntheticModel

    @classmethod
    def build(cls, settings: Settings) -> WorkerState:
        tokenizer = Tokenizer()
        served = ServedModel(
            name=settings.model,
            root=settings.root,
            max_model_len=settings.max_model_len,
            tokenizer=tokenizer,
            limits=settings.limits,
        )
        return cls(settings=settings, served=served, synthetic=SyntheticModel(settings, tokenizer))
