"""A response as a timed plan of events: the one shape every mode produces.

Synthetic mode computes the plan from the generator and the latency model, replay reads it from
a recording. One emitter (``emit.deliver``) writes any plan, so timing, metrics, limits and fault
injection live in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class PlanEvent(NamedTuple):
    """One SSE event: due ``offset`` seconds after the plan starts; ``tokens`` it carries."""

    offset: float
    data: bytes
    tokens: int


@dataclass(slots=True)
class ResponsePlan:
    stream: bool
    # Streamed answers: the events, in order, with non-decreasing offsets.
    events: Iterable[PlanEvent] = ()
    # Non-streamed answers: the body, sent ``body_offset`` seconds after the start.
    body: bytes = b""
    body_offset: float = 0.0
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    # What the answer holds, for metrics.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reasons: tuple[str, ...] = ()
