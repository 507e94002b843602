"""Per-worker state, built once when a worker starts and kept on ``app.ctx.state``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .engine import Tokenizer
from .pipeline import Pipeline
from .plan import ResponsePlan
from .protocol.requests import ServedModel
from .settings import Settings
from .synthetic import SyntheticModel


class Responder(Protocol):
    """Turns a decoded generation request into a plan: synthetic or replayed."""

    def respond(
        self, route: str, body: Mapping[str, Any], request_id: str | None
    ) -> ResponsePlan: ...


@dataclass(frozen=True, slots=True)
class WorkerState:
    settings: Settings
    served: ServedModel
    synthetic: SyntheticModel
    responder: Responder
    # Faults, scheduling, delivery and metrics, whatever the responder.
    pipeline: Pipeline

    @classmethod
    async def create(cls, settings: Settings) -> WorkerState:
        served = ServedModel(
            name=settings.model,
            root=settings.root,
            max_model_len=settings.max_model_len,
            tokenizer=Tokenizer(),
            limits=settings.limits,
        )
        synthetic = SyntheticModel(settings, served)
        pipeline = Pipeline(settings)
        responder: Responder = synthetic
        if settings.replay is not None:
            from .recording.replay import ReplayResponder

            responder = await ReplayResponder.load(settings, synthetic, pipeline.metrics)
        return cls(
            settings=settings,
            served=served,
            synthetic=synthetic,
            responder=responder,
            pipeline=pipeline,
        )
