"""A response as a timed plan of events: the one shape every mode produces.

Synthetic mode computes the plan from the generator and the latency model, replay reads it from
a recording. One emitter (``emit.deliver``) writes any plan, so timing, metrics, limits and fault
injection live in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

# The finish reason of an answer that never finished (client gone, injected fault), as vLLM's.
ABORTED = "abort"


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
    # When each token step is due: a non-streamed answer's TTFT and ITL as a stream would show.
    token_offsets: Sequence[float] = ()
    # The request's ``n`` and ``max_tokens`` (0: unknown), for vLLM's request_params metrics.
    n: int = 1
    max_tokens: int = 0
    # Pooling answers (embeddings): each input's prompt tokens. vLLM runs every input as its
    # own engine request, so its metrics count each input as a request.
    pooled_prompts: Sequence[int] = ()
    # Injected faults: headers held back this long; the connection dropped after the last event.
    headers_offset: float = 0.0
    drop_connection: bool = False


class Responder(Protocol):
    """Turns a decoded generation request into a plan: synthetic or replayed."""

    def respond(
        self, route: str, body: Mapping[str, Any], request_id: str | None
    ) -> ResponsePlan: ...
