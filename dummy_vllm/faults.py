"""Fault injection: errors and broken streams, to test how clients cope.

A request gets a fault from its ``X-Dummy-Fault`` header (``cut``, ``stall;ms=2000;after=3``,
``none``) or, without one, from a seeded draw at ``--fault-rate``. A fault is either an error
answered before the plan runs (429, 500, 503, 400 context length) or a pure transformation of
the plan; the emitter and the rest of the server know nothing about faults.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .plan import ABORTED, PlanEvent, ResponsePlan
from .protocol.context_length import prompt_too_long
from .protocol.errors import (
    APIError,
    bad_request,
    internal_error,
    service_unavailable,
    too_many_requests,
)
from .protocol.failures import error_answer, stream_ending
from .protocol.profiles import Profile
from .settings import FaultSettings, FaultType

FAULT_HEADER = "X-Dummy-Fault"
NO_FAULT = "none"


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultType
    # Tokens sent before a cut, an error event or a stall.
    after: int
    # A stall's length or the first-byte delay, seconds.
    seconds: float

    @classmethod
    def configured(
        cls,
        kind: FaultType,
        settings: FaultSettings,
        after: int | None = None,
        seconds: float | None = None,
    ) -> Fault:
        """A fault of ``kind`` with the server's parameters, unless given."""
        if seconds is None:
            seconds = settings.stall if kind is FaultType.STALL else settings.delay
        return cls(kind, settings.after_tokens if after is None else after, seconds)

    def error(self, profile: Profile, max_model_len: int) -> APIError | None:
        """The error answered instead of the plan, for the error kinds."""
        kind = self.kind
        if kind is FaultType.RATE_LIMITED:
            return too_many_requests("Too many requests (injected fault). Please retry later.")
        if kind is FaultType.INTERNAL_ERROR:
            return internal_error("Internal server error (injected fault).")
        if kind is FaultType.UNAVAILABLE:
            return service_unavailable("The engine is not available (injected fault).")
        if kind is FaultType.CONTEXT_LENGTH:
            # The shortest prompt vLLM refuses; the client's own prompt is not what failed.
            return prompt_too_long(profile, max_model_len)
        return None

    def apply(self, plan: ResponsePlan, profile: Profile, route: str) -> ResponsePlan:
        """``plan`` broken as this fault breaks it (a new plan; the original is untouched).
        Errors take the shape of ``route``'s answers in ``profile``'s era."""
        kind = self.kind
        if kind is FaultType.SLOW_FIRST_BYTE:
            return dataclasses.replace(plan, headers_offset=self.seconds)
        if kind is FaultType.STALL:
            if plan.stream:
                return dataclasses.replace(
                    plan, events=_stalled(plan.events, self.after, self.seconds)
                )
            return dataclasses.replace(
                plan,
                body_offset=plan.body_offset + self.seconds,
                token_offsets=_shifted(plan.token_offsets, self.after, self.seconds),
            )
        if kind is FaultType.CUT:
            events = _truncated(plan.events, self.after, _nothing) if plan.stream else ()
            return _interrupted(plan, events, drop_connection=True)
        if kind is FaultType.ERROR_EVENT:
            error = internal_error("The engine failed while generating (injected fault).")
            if plan.stream:

                def ending(sent: int) -> Sequence[bytes]:
                    return stream_ending(route, error, profile, sent)

                return _interrupted(plan, _truncated(plan.events, self.after, ending))
            # A non-streamed answer carries the error instead, when it was due.
            body = error_answer(route, error, profile)
            return _interrupted(plan, (), status=error.status, body=body)
        return plan


class FaultInjector:
    """Chooses each request's fault. The draws come from one seeded RNG per worker, so a
    worker that sees the same requests in the same order injects the same faults."""

    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self.settings = settings
        self._rng = random.Random(seed)

    def choose(self, header: str | None) -> Fault | None:
        if header is not None:
            return parse_fault(header, self.settings)
        settings = self.settings
        if not settings.rate or self._rng.random() >= settings.rate:
            return None
        return Fault.configured(self._rng.choice(settings.types), settings)


def _fault_type(name: str) -> FaultType | None:
    try:
        return FaultType(name)
    except ValueError:
        return None


def parse_fault(header: str, settings: FaultSettings) -> Fault | None:
    """``kind[;after=N][;ms=M]`` -> a fault (``none``: no fault); 400 when malformed."""
    kind_text, *params = (part.strip() for part in header.split(";"))
    if kind_text == NO_FAULT:
        return None
    kind = _fault_type(kind_text)
    if kind is None:
        raise bad_request(
            f"Unknown {FAULT_HEADER} fault {kind_text!r}; known: {', '.join(FaultType)}, none.",
            FAULT_HEADER,
        )
    values: dict[str, int] = {}
    for param in params:
        name, _, value = (part.strip() for part in param.partition("="))
        if name not in ("after", "ms") or not (value.isascii() and value.isdigit()):
            raise bad_request(
                f"Bad {FAULT_HEADER} parameter {param!r}: expected after=N or ms=N (N >= 0).",
                FAULT_HEADER,
            )
        values[name] = int(value)
    milliseconds = values.get("ms")
    seconds = None if milliseconds is None else milliseconds / 1000
    return Fault.configured(kind, settings, values.get("after"), seconds)


def _interrupted(
    plan: ResponsePlan, events: Iterable[PlanEvent], body: bytes = b"", **changes: Any
) -> ResponsePlan:
    """``plan`` as an answer that never finished: no tokens, every choice aborted. (A stream's
    metrics count the tokens actually written.)"""
    return dataclasses.replace(
        plan,
        events=events,
        body=body,
        completion_tokens=0,
        finish_reasons=(ABORTED,) * len(plan.finish_reasons),
        **changes,
    )


def _with_last(events: Iterable[PlanEvent]) -> Iterator[tuple[PlanEvent, bool]]:
    """Each event, and whether it is the stream's last."""
    iterator = iter(events)
    previous = next(iterator, None)
    if previous is None:
        return
    for event in iterator:
        yield previous, False
        previous = event
    yield previous, True


def _strikes(event: PlanEvent, last: bool, sent: int, after: int) -> bool:
    """Whether a fault set ``after`` tokens strikes before ``event``; a stream shorter than
    that is struck before its last event ([DONE], the terminal event), so the fault always
    shows."""
    return (event.tokens > 0 and sent + event.tokens > after) or last


def _nothing(sent: int) -> Sequence[bytes]:
    return ()


def _truncated(
    events: Iterable[PlanEvent], after: int, ending: Callable[[int], Sequence[bytes]]
) -> Iterator[PlanEvent]:
    """The events until the fault strikes, then ``ending(events sent)`` when the next event
    was due."""
    sent = 0
    for count, (event, last) in enumerate(_with_last(events)):
        if _strikes(event, last, sent, after):
            for data in ending(count):
                yield PlanEvent(event.offset, data, 0)
            return
        sent += event.tokens
        yield event


def _stalled(events: Iterable[PlanEvent], after: int, seconds: float) -> Iterator[PlanEvent]:
    sent = 0
    shift = 0.0
    for event, last in _with_last(events):
        if not shift and _strikes(event, last, sent, after):
            shift = seconds
        sent += event.tokens
        yield PlanEvent(event.offset + shift, event.data, event.tokens) if shift else event


def _shifted(offsets: Sequence[float], after: int, seconds: float) -> list[float]:
    return [offset + seconds if step >= after else offset for step, offset in enumerate(offsets)]
