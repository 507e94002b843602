"""Replay mode: answer requests from recorded sessions, with their recorded timing.

Each worker loads its sessions into memory at start (no database I/O on the hot path) and
classifies every recorded SSE event once. A request is matched by its exact key, then by its
relaxed key; several recordings of one key are served in a seeded round-robin. Recorded bytes go
out as they were; only what the replaying request changes (the usage event, a shorter
``max_tokens`` on a relaxed match, stream versus non-stream) is rebuilt.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ..metrics import Metrics
from ..plan import PlanEvent, ResponsePlan
from ..protocol.deltas import AgentMessage
from ..protocol.errors import APIError
from ..protocol.requests import (
    CHAT_ROUTE,
    COMPLETIONS_ROUTE,
    decode_body,
    requested_max_tokens,
    usage_requested,
)
from ..protocol.responses import (
    ChatStream,
    ChoiceOutput,
    CompletionStream,
    RenderedChoice,
    ResponseMeta,
    Wire,
    chat_body,
    chat_events,
    completion_body,
    completion_events,
    dumps,
    stream_head,
    usage_event,
)
from ..protocol.sse import DONE_PAYLOAD, event_data, event_name, frame
from ..settings import MissPolicy, ReplaySettings
from ..synthetic import SyntheticModel, incremental_texts
from .matching import DEFAULT_IGNORED, canonical_key, diff_fields, relaxed_key
from .store import Outcome, SessionSummary, Store, StoredExchange, StoreError
from .transfer import load_export

logger = logging.getLogger("dummy_vllm.replay")
# Response header that says how an answer was served.
SERVED_BY_HEADER = "x-dummy-vllm-replay"
_REPLAYABLE = frozenset({Outcome.COMPLETE, Outcome.UPSTREAM_ERROR})
_NS = 1e-9
# Log-length distance within which recordings count as equally near (about 5% in one length).
_NEAR = 0.05
# Routes whose recordings can be cut, assembled, re-streamed and given a usage event; the
# others (embeddings, the Responses and Anthropic APIs) are served only as recorded.
_CONVERTIBLE = frozenset({CHAT_ROUTE, COMPLETIONS_ROUTE})
# Named events that carry a token: text, argument and reasoning deltas.
_NAMED_TOKEN_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_text.delta",
        "content_block_delta",
    }
)


class ReplayError(Exception):
    """The sessions cannot be replayed (unknown, empty, unreadable)."""


class EventKind(StrEnum):
    ROLE = "role"
    TOKEN = "token"
    USAGE = "usage"
    ERROR = "error"
    DONE = "done"
    # Any other named event (Responses and Anthropic streams): replayed as it is.
    NAMED = "named"


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    offset: float
    raw: bytes
    kind: EventKind
    # Choice index for role and token events, -1 otherwise.
    index: int = -1


@dataclass(slots=True)
class Recording:
    """One replayable exchange, prepared for serving."""

    label: str
    route: str
    body: dict[str, Any]
    status: int
    streamed: bool
    events: list[RecordedEvent]
    response_body: bytes
    complete_offset: float
    prompt_tokens: int
    completion_tokens: int
    # Per choice, in index order (for metrics).
    finish_reasons: tuple[str, ...]
    # A stream's id, created, model and object, from its first role or token event (None when
    # it has none): what rebuilt events and bodies carry, even when a cut keeps no token.
    stream_meta: tuple[ResponseMeta, str] | None = None

    # Derived from ``events`` once, at load: the miss-profile and cut paths read it per request.
    token_events: list[RecordedEvent] = field(init=False)

    def __post_init__(self) -> None:
        self.token_events = [event for event in self.events if event.kind is EventKind.TOKEN]


def classify(raw: bytes) -> tuple[EventKind, int]:
    """What a recorded SSE event is, read once at load time. An event in no shape vLLM sends
    (an error, or anything else) is replayed as it is and carries no token."""
    name = event_name(raw)
    if name is not None:
        if name == "error":
            return EventKind.ERROR, -1
        return (EventKind.TOKEN if name in _NAMED_TOKEN_EVENTS else EventKind.NAMED), 0
    payload = event_data(raw).strip()
    if payload == DONE_PAYLOAD:
        return EventKind.DONE, -1
    try:
        event = json.loads(payload)
    except ValueError:
        return EventKind.ERROR, -1
    if not isinstance(event, dict) or "error" in event:
        return EventKind.ERROR, -1
    choices = event.get("choices")
    if not choices:
        return EventKind.USAGE, -1
    if not isinstance(choices, list) or not _is_choice(choices[0]):
        return EventKind.ERROR, -1
    choice = choices[0]
    delta = choice.get("delta")
    is_role_only = (
        isinstance(delta, dict)
        and "role" in delta
        and not delta.get("content")
        and not delta.get("tool_calls")
        and choice.get("finish_reason") is None
    )
    if is_role_only:
        return EventKind.ROLE, int(choice.get("index", 0))
    return EventKind.TOKEN, int(choice.get("index", 0))


def _is_choice(choice: Any) -> bool:
    """A choice replay can rebuild from: its index, and its text where vLLM puts it."""
    if not isinstance(choice, dict):
        return False
    index = choice.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return False
    if "delta" in choice:
        delta = choice["delta"]
        return isinstance(delta, dict) and isinstance(delta.get("content") or "", str)
    if "message" in choice:
        message = choice["message"]
        return isinstance(message, dict) and isinstance(message.get("content") or "", str)
    return isinstance(choice.get("text") or "", str)


class MalformedRecording(Exception):
    """A recording replay cannot rebuild answers from (stored as complete by a faulty upstream)."""


def _check_answer_shape(record: Any, events: Sequence[RecordedEvent]) -> None:
    """What the answers built from a recording read: the meta of its first token event, or its
    body's meta and choices."""
    if record.status is not None and record.status >= 400:
        return
    if record.streamed:
        first = next((e for e in events if e.kind in (EventKind.ROLE, EventKind.TOKEN)), None)
        if first is None:
            if not any(map(_error_of, events)):
                raise MalformedRecording("its stream has no token, role or error event")
            return
        meta: Any = _event_json(first.raw)
    else:
        try:
            meta = json.loads(record.response_body or b"{}")
        except ValueError:
            meta = None
        choices = meta.get("choices") if isinstance(meta, dict) else None
        if not isinstance(choices, list) or not all(map(_is_choice, choices)):
            raise MalformedRecording("its body has no choices replay can read")
    if not (
        isinstance(meta, dict)
        and isinstance(meta.get("id"), str)
        and isinstance(meta.get("created"), int)
        and isinstance(meta.get("model"), str)
    ):
        raise MalformedRecording("its answer has no id, created and model replay can read")


def _error_of(event: RecordedEvent) -> APIError | None:
    """The error an in-stream error event reports, as vLLM would answer it without a stream."""
    if event.kind is not EventKind.ERROR:
        return None
    try:
        error = json.loads(event_data(event.raw)).get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]  # <= 0.10.0 wraps its flat envelope
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return APIError(status, error["message"], str(error.get("type") or "InternalServerError"))


def prepare(exchange: StoredExchange) -> Recording:
    """A stored exchange ready for serving; MalformedRecording if it cannot be."""
    record = exchange.record
    events = [
        RecordedEvent(offset_ns * _NS, raw, *classify(raw)) for offset_ns, raw in record.events
    ]
    convertible = record.path in _CONVERTIBLE
    if convertible:
        _check_answer_shape(record, events)
    tokens = sum(event.kind is EventKind.TOKEN for event in events)
    try:
        body = decode_body(record.request_body, "application/json") if record.request_body else {}
    except APIError:
        body = {}
    return Recording(
        stream_meta=_meta_of(record.path, events) if record.streamed and convertible else None,
        label=f"{exchange.session}#{exchange.seq}",
        route=record.path,
        body=body,
        status=record.status or HTTPStatus.OK,
        streamed=record.streamed,
        events=events,
        response_body=record.response_body or b"",
        complete_offset=(record.complete_ns or 0) * _NS,
        prompt_tokens=record.prompt_tokens or 0,
        completion_tokens=record.completion_tokens or tokens,
        finish_reasons=_finish_reasons(events, record.response_body),
    )


def _finish_reasons(events: Sequence[RecordedEvent], body: bytes | None) -> tuple[str, ...]:
    if any(event.kind is EventKind.NAMED for event in events):
        return (_named_finish(events),)
    last: dict[int, RecordedEvent] = {}
    for event in events:
        if event.kind is EventKind.TOKEN:
            last[event.index] = event
    try:
        if last:
            choices = [_event_json(last[index].raw)["choices"][0] for index in sorted(last)]
            return tuple(str(choice.get("finish_reason") or "stop") for choice in choices)
        return _body_finish(json.loads(body or b"{}"))
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return ()


def _named_finish(events: Sequence[RecordedEvent]) -> str:
    """A Responses or Anthropic stream's finish, from its terminal events."""
    for event in reversed(events):
        name = event_name(event.raw)
        if name == "response.incomplete" or (
            name == "message_delta" and b'"max_tokens"' in event.raw
        ):
            return "length"
    return "stop"


def _body_finish(body: Any) -> tuple[str, ...]:
    if "choices" in body:
        return tuple(str(choice.get("finish_reason") or "stop") for choice in body["choices"])
    if body.get("object") == "list":
        # Embeddings: every input is a request that finished.
        return ("stop",) * len(body.get("data") or ())
    if body.get("status") == "incomplete" or body.get("stop_reason") == "max_tokens":
        return ("length",)
    return ("stop",)


@dataclass(slots=True)
class _Choices:
    """Recordings of one key, served in a seeded round-robin."""

    recordings: list[Recording]
    turn: Iterator[int] = field(default_factory=itertools.count)
    start: int = 0

    def next(self) -> Recording:
        # next() on a count is atomic within the event loop: concurrent requests never share a turn.
        return self.recordings[(self.start + next(self.turn)) % len(self.recordings)]


class ReplayIndex:
    """Exact and relaxed lookups over prepared recordings."""

    def __init__(self, exchanges: Sequence[StoredExchange], replay: ReplaySettings, seed: int):
        self.replay = replay
        self.aliases = dict(replay.model_aliases)
        include = frozenset(replay.include_fields)
        self.ignore = (DEFAULT_IGNORED | frozenset(replay.ignore_fields)) - include
        # Stored keys were made with the defaults; other key settings re-key the stored bodies.
        rekey = bool(replay.include_fields or replay.ignore_fields)
        exact: dict[str, list[Recording]] = {}
        relaxed: dict[str, list[Recording]] = {}
        self.recordings: list[Recording] = []
        for exchange in exchanges:
            if exchange.record.outcome not in _REPLAYABLE:
                continue
            try:
                recording = prepare(exchange)
            except MalformedRecording as exc:
                logger.warning("not replaying %s#%d: %s", exchange.session, exchange.seq, exc)
                continue
            self.recordings.append(recording)
            key = (
                self._exact_key(recording.route, recording.body)
                if rekey
                else exchange.record.match_key
            )
            exact.setdefault(key, []).append(recording)
            relaxed.setdefault(exchange.record.relaxed_key, []).append(recording)
        # Recordings whose timing can stand in for a miss (profile policy), chosen once.
        self._timing_candidates = [
            r for r in self.recordings if r.streamed and len(r.token_events) >= 2 and r.status < 400
        ]
        self._timing_turn = itertools.count()
        rng = random.Random(seed)
        self._exact = {k: _Choices(v, start=rng.randrange(len(v))) for k, v in exact.items()}
        self._relaxed = {k: _Choices(v, start=rng.randrange(len(v))) for k, v in relaxed.items()}

    def _exact_key(self, route: str, body: Mapping[str, Any]) -> str:
        return canonical_key(route, body, ignore=self.ignore, model_aliases=self.aliases)

    def lookup(self, route: str, body: Mapping[str, Any]) -> tuple[str, Recording] | None:
        choices = self._exact.get(self._exact_key(route, body))
        if choices is not None:
            return "exact", choices.next()
        choices = self._relaxed.get(relaxed_key(route, body, model_aliases=self.aliases))
        if choices is not None:
            return "relaxed", choices.next()
        return None

    def explain_miss(self, route: str, body: Mapping[str, Any]) -> str:
        candidates = [r for r in self.recordings if r.route == route]
        if not candidates:
            return f"No recording of {route} in the replayed sessions."
        scored = [
            (diff_fields(body, r.body, ignore=self.ignore, model_aliases=self.aliases), r)
            for r in candidates
        ]
        differences, nearest = min(scored, key=lambda item: len(item[0]))
        return (
            f"No recording matches this request. Nearest: {nearest.label}, which differs in "
            f"{', '.join(differences) or 'redacted fields'}."
        )

    def nearest_timing(self, prompt_tokens: int, output_tokens: int) -> Recording | None:
        """A streamed recording most alike in prompt and output length (log scale).

        Recordings about as near as the nearest (within ``_NEAR``) take turns, so that a
        stream of alike misses sees the spread of their recorded timings, not one recording's:
        a benchmark of fixed lengths replayed against ``import-bench`` sessions gets back the
        distribution it measured.
        """
        candidates = self._timing_candidates
        if not candidates:
            return None
        distances = [
            abs(math.log1p(r.prompt_tokens) - math.log1p(prompt_tokens))
            + abs(math.log1p(r.completion_tokens) - math.log1p(output_tokens))
            for r in candidates
        ]
        nearest = min(distances)
        near = [r for r, d in zip(candidates, distances, strict=True) if d <= nearest + _NEAR]
        return near[next(self._timing_turn) % len(near)]


# --- building plans from recordings -------------------------------------------------------------


def _event_json(raw: bytes) -> dict[str, Any]:
    return dict(json.loads(event_data(raw)))


def _cut_events(events: list[RecordedEvent], limit: int) -> list[RecordedEvent]:
    """Keep ``limit`` token events per choice; the last kept one finishes with "length"."""
    seen: dict[int, int] = {}
    kept: list[RecordedEvent] = []
    for event in events:
        if event.kind is not EventKind.TOKEN:
            kept.append(event)
            continue
        count = seen.get(event.index, 0)
        if count >= limit:
            continue
        seen[event.index] = count + 1
        if count + 1 == limit:
            payload = _event_json(event.raw)
            choice = payload["choices"][0]
            if choice.get("finish_reason") != "length":
                choice["finish_reason"] = "length"
                choice["stop_reason"] = None
                event = RecordedEvent(event.offset, frame(dumps(payload)), event.kind, event.index)
        kept.append(event)
    return kept


def _meta_of(route: str, events: Sequence[RecordedEvent]) -> tuple[ResponseMeta, str] | None:
    """Read once, at load time (the fields were checked by ``_check_answer_shape``)."""
    first = next((e for e in events if e.kind in (EventKind.ROLE, EventKind.TOKEN)), None)
    if first is None:
        return None
    payload = _event_json(first.raw)
    meta = ResponseMeta(id=payload["id"], created=payload["created"], model=payload["model"])
    default = "chat.completion.chunk" if route == CHAT_ROUTE else "text_completion"
    return meta, str(payload.get("object", default))


def _assemble(
    wire: Wire,
    route: str,
    events: Sequence[RecordedEvent],
    meta: ResponseMeta,
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """A streamed recording as the non-streamed body vLLM would have sent: the text, and for
    chat the tool calls and reasoning its deltas carried."""
    texts: dict[int, list[str]] = {}
    finish: dict[int, tuple[str | None, Any]] = {}
    agents: dict[int, _AgentParts] = {}
    for event in events:
        if event.kind is not EventKind.TOKEN:
            continue
        choice = _event_json(event.raw)["choices"][0]
        delta = choice.get("delta")
        piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        texts.setdefault(event.index, []).append(piece or "")
        if isinstance(delta, dict) and (delta.get("tool_calls") or _reasoning_of(delta)):
            agents.setdefault(event.index, _AgentParts()).add(delta)
        if choice.get("finish_reason") is not None:
            finish[event.index] = (choice["finish_reason"], choice.get("stop_reason"))
    rendered = [
        RenderedChoice(
            index,
            "".join(parts),
            *finish.get(index, ("stop", None)),
            message=agents[index].message("".join(parts)) if index in agents else None,
        )
        for index, parts in sorted(texts.items())
    ]
    if route == CHAT_ROUTE:
        return chat_body(wire, meta, rendered, prompt_tokens, completion_tokens)
    return completion_body(wire, meta, rendered, prompt_tokens, completion_tokens)


def _reasoning_of(delta: Mapping[str, Any]) -> str | None:
    value = delta.get("reasoning") or delta.get("reasoning_content")
    return value if isinstance(value, str) else None


@dataclass(slots=True)
class _AgentParts:
    """Tool calls and reasoning accumulated from a chat stream's deltas, as clients do."""

    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)

    def add(self, delta: Mapping[str, Any]) -> None:
        self.reasoning.append(_reasoning_of(delta) or "")
        for tool in delta.get("tool_calls") or ():
            call = self.calls.setdefault(int(tool.get("index", 0)), ["", "", ""])
            function = tool.get("function") or {}
            call[0] += tool.get("id") or ""
            call[1] += function.get("name") or ""
            call[2] += function.get("arguments") or ""

    def message(self, content: str) -> AgentMessage:
        calls = tuple((c[0], c[1], c[2]) for _, c in sorted(self.calls.items()))
        reasoning = "".join(self.reasoning) or None
        return AgentMessage(content or (None if calls or reasoning else ""), reasoning, calls)


class ReplayResponder:
    """The responder of replay mode; falls back to ``synthetic`` by the miss policy."""

    def __init__(
        self,
        replay: ReplaySettings,
        index: ReplayIndex,
        synthetic: SyntheticModel,
        metrics: Metrics,
    ):
        self.replay = replay
        self.index = index
        self.synthetic = synthetic
        self.metrics = metrics
        self.scale = 0.0 if self.replay.instant else 1.0 / self.replay.speed
        # What is rebuilt (usage events, assembled bodies, misses) takes the served era's shapes.
        self.wire = synthetic.wire

    def _wants_usage(self, body: Mapping[str, Any]) -> bool:
        return usage_requested(body.get("stream_options"), self.wire.profile)

    @classmethod
    async def load(
        cls,
        replay: ReplaySettings,
        db_path: Path,
        seed: int,
        synthetic: SyntheticModel,
        metrics: Metrics,
    ) -> ReplayResponder:
        exchanges = await load_sessions(replay.sessions, db_path, immutable=replay.immutable)
        for path in replay.files:
            exchanges += load_export(path)[1]
        index = ReplayIndex(exchanges, replay, seed)
        return cls(replay, index, synthetic, metrics)

    def respond(self, route: str, body: Mapping[str, Any], request_id: str | None) -> ResponsePlan:
        found = self.index.lookup(route, body)
        mismatch = None
        if found is not None and route not in _CONVERTIBLE:
            # Served only as recorded: streamed for a stream, a body for the others.
            kind, recording = found
            if recording.status >= 400 or recording.streamed == bool(body.get("stream")):
                plan = self._verbatim(recording)
                plan.headers = {SERVED_BY_HEADER: kind}
                self.metrics.replay_served(kind)
                return plan
            mismatch = (
                f"{recording.label} matches this request but was recorded "
                f"{'streamed' if recording.streamed else 'not streamed'}, and {route} is "
                "replayed only as it was recorded."
            )
        elif found is not None:
            kind, recording = found
            limit = requested_max_tokens(route, body) if kind == "relaxed" else None
            plan = self._replay(recording, route, body, limit)
            plan.headers = {SERVED_BY_HEADER: kind}
            plan.n = max(len(recording.finish_reasons), 1)
            plan.max_tokens = requested_max_tokens(route, body) or 0
            self.metrics.replay_served(kind)
            return plan
        policy = self.replay.on_miss
        self.metrics.replay_served(f"miss_{policy.value}")
        if policy is MissPolicy.ERROR:
            message = mismatch or self.index.explain_miss(route, body)
            raise APIError(HTTPStatus.NOT_FOUND, message, "NotFoundError")
        timing = self._profile_timing if policy is MissPolicy.PROFILE else None
        plan = self.synthetic.respond(route, body, request_id, timing)
        plan.headers = {SERVED_BY_HEADER: f"miss-{policy.value}"}
        return plan

    def _profile_timing(self, rng: random.Random, prompt_tokens: int, count: int) -> list[float]:
        """Token offsets shaped like the recording most alike in prompt and output length:
        its TTFT, then its inter-token gaps in order (cycled when the answer is longer)."""
        model = self.index.nearest_timing(prompt_tokens, count)
        if model is None:
            return self.synthetic.latency.token_offsets(rng, prompt_tokens, count)
        tokens = model.token_events
        gaps = itertools.cycle([b.offset - a.offset for a, b in itertools.pairwise(tokens)])
        offsets = [tokens[0].offset * self.scale]
        for _ in range(count - 1):
            offsets.append(offsets[-1] + next(gaps) * self.scale)
        return offsets[:count]

    def _verbatim(self, recording: Recording) -> ResponsePlan:
        """The recorded answer byte for byte, on its recorded timing."""
        reasons = recording.finish_reasons if recording.status < 400 else ()
        if not recording.streamed:
            return ResponsePlan(
                stream=False,
                body=recording.response_body,
                body_offset=recording.complete_offset * self.scale,
                status=recording.status,
                prompt_tokens=recording.prompt_tokens,
                completion_tokens=recording.completion_tokens,
                finish_reasons=reasons,
            )
        scale = self.scale
        return ResponsePlan(
            stream=True,
            events=[
                PlanEvent(event.offset * scale, event.raw, int(event.kind is EventKind.TOKEN))
                for event in recording.events
            ],
            prompt_tokens=recording.prompt_tokens,
            completion_tokens=recording.completion_tokens,
            finish_reasons=reasons,
        )

    def _replay(
        self, recording: Recording, route: str, body: Mapping[str, Any], limit: int | None
    ) -> ResponsePlan:
        stream = bool(body.get("stream"))
        if recording.status >= 400 or not (recording.streamed or stream):
            # A streamed recording is never an error: this is a recorded body.
            return self._verbatim(recording)
        if not recording.streamed:
            return self._stream_from_body(recording, route, body, limit)
        if not stream and recording.stream_meta is None:
            # A stream that failed before its first token: as a body, its error (load-time
            # checks guarantee one).
            raise next(filter(None, map(_error_of, recording.events)))
        events = recording.events
        if limit is not None and limit < len(recording.token_events):
            events = _cut_events(events, limit)
        completion_tokens = sum(e.kind is EventKind.TOKEN for e in events)
        # A cut stream's recorded usage no longer matches: rebuild it.
        rebuild_usage = completion_tokens != recording.completion_tokens
        reasons = (
            tuple("length" for _ in recording.finish_reasons)
            if rebuild_usage
            else recording.finish_reasons
        )
        if not stream:
            assert recording.stream_meta is not None  # refused above otherwise
            meta, _ = recording.stream_meta
            return ResponsePlan(
                stream=False,
                body=_assemble(
                    self.wire, route, events, meta, recording.prompt_tokens, completion_tokens
                ),
                body_offset=max(e.offset for e in events) * self.scale,
                prompt_tokens=recording.prompt_tokens,
                completion_tokens=completion_tokens,
                finish_reasons=reasons,
            )
        return ResponsePlan(
            stream=True,
            events=list(
                self._stream_events(
                    events,
                    body,
                    recording.stream_meta,
                    recording.prompt_tokens,
                    completion_tokens,
                    rebuild_usage,
                )
            ),
            prompt_tokens=recording.prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reasons=reasons,
        )

    def _stream_events(
        self,
        events: Sequence[RecordedEvent],
        body: Mapping[str, Any],
        stream_meta: tuple[ResponseMeta, str] | None,
        prompt_tokens: int,
        completion_tokens: int,
        rebuild_usage: bool,
    ) -> Iterator[PlanEvent]:
        """Recorded events verbatim; the usage event follows this request's stream_options."""
        wants_usage = self._wants_usage(body)
        recorded_usage = any(e.kind is EventKind.USAGE for e in events)
        last = 0.0
        for event in events:
            last = event.offset * self.scale
            if event.kind is EventKind.USAGE:
                if wants_usage and not rebuild_usage:
                    yield PlanEvent(last, event.raw, 0)
                continue
            if (
                event.kind is EventKind.DONE
                and wants_usage
                and (rebuild_usage or not recorded_usage)
                and stream_meta is not None
            ):
                head = stream_head(*stream_meta)
                usage = usage_event(self.wire, head, prompt_tokens, completion_tokens)
                yield PlanEvent(last, usage, 0)
            yield PlanEvent(last, event.raw, int(event.kind is EventKind.TOKEN))

    def _stream_from_body(
        self, recording: Recording, route: str, body: Mapping[str, Any], limit: int | None
    ) -> ResponsePlan:
        """A non-streamed recording streamed: its text re-tokenised, tokens spread evenly over
        the recorded total time."""
        tokenizer = self.synthetic.tokenizer
        recorded = json.loads(recording.response_body)
        meta = ResponseMeta(recorded["id"], recorded["created"], recorded["model"])
        choices = []
        # The shape was checked at load (_is_choice): present fields have their types.
        for choice in recorded["choices"]:
            message = choice.get("message")
            text = (message.get("content") if message is not None else choice.get("text")) or ""
            ids = tokenizer.encode(text)[:limit] if limit else tokenizer.encode(text)
            cut = limit is not None and len(ids) == limit and len(tokenizer.encode(text)) > limit
            choices.append(
                ChoiceOutput(
                    index=choice.get("index", 0),
                    token_ids=ids,
                    text_overrides=incremental_texts(ids, tokenizer),
                    finish_reason="length" if cut else str(choice.get("finish_reason") or "stop"),
                    stop_reason=None if cut else choice.get("stop_reason"),
                )
            )
        steps = max((len(c.token_ids) for c in choices), default=0)
        total = recording.complete_offset * self.scale
        offsets = [total * (k + 1) / steps for k in range(steps)]
        completion_tokens = sum(len(c.token_ids) for c in choices)
        include_usage = self._wants_usage(body)
        options = body.get("stream_options")
        continuous = include_usage and bool(
            isinstance(options, dict) and options.get("continuous_usage_stats")
        )
        prompt_tokens = recording.prompt_tokens
        if route == CHAT_ROUTE:
            chat = ChatStream(self.wire, tokenizer, meta, prompt_tokens, include_usage, continuous)
            events: Iterator[PlanEvent] = chat_events(chat, choices, offsets)
        else:
            completion = CompletionStream(
                self.wire, tokenizer, meta, prompt_tokens, include_usage, continuous
            )
            events = completion_events(completion, choices, offsets, {})
        return ResponsePlan(
            stream=True,
            events=events,
            prompt_tokens=recording.prompt_tokens,
            completion_tokens=completion_tokens,
        )


async def check_sessions(store: Store, names: Sequence[str]) -> SessionSummary:
    """Refuse unknown and empty sessions with a ReplayError naming them; return the first
    session's summary (the model and vLLM version its upstream reported, when recorded)."""
    known = {summary.name: summary for summary in await store.list_sessions()}
    for name in names:
        if name not in known:
            raise ReplayError(f"no session named {name!r} in {store.path}")
        if known[name].exchanges == 0:
            raise ReplayError(f"session {name!r} has no recorded exchanges")
    return known[names[0]]


async def load_sessions(
    names: Sequence[str], db_path: Path, *, immutable: bool = False
) -> list[StoredExchange]:
    """The named sessions' exchanges, read from a database opened read-only; a database that
    cannot be read is one ReplayError line."""
    if not names:
        return []
    try:
        async with await Store.open_read_only(db_path, immutable=immutable) as store:
            await check_sessions(store, names)
            return await store.load_exchanges(names)
    except sqlite3.Error as exc:
        raise ReplayError(f"{db_path}: {exc}") from None
    except StoreError as exc:
        raise ReplayError(str(exc)) from None
