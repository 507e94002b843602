"""Response bodies and SSE events in the shapes of the emulated vLLM release.

Field order and explicit nulls are part of the contract (clients and diff-based tests see them),
and both come from the ``Profile``: bodies are ordered dicts built from its key tuples, and a
``Wire`` compiles its stream shapes into byte fragments once per worker. Stream events are the
hot path: each stream renders its constant head once and a token event is a few byte
concatenations.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine import Tokenizer
from ..plan import PlanEvent
from .deltas import AgentMessage, Delta, ToolDelta
from .encoding import dumps as dumps  # re-exported: the JSON writer of every response
from .profiles import Profile
from .sse import DATA_PREFIX, DONE_EVENT, EVENT_SEPARATOR

_ids = random.Random(os.urandom(32))
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token_id: int
    logprob: float
    # The most likely tokens at this step, best first (the sampled one included).
    top: list[tuple[int, float]]


@dataclass(slots=True)
class ChoiceOutput:
    index: int
    # A list, or a compact array for long synthetic outputs.
    token_ids: MutableSequence[int]
    # Positions whose streamed text differs from the token's piece (stop strings, EOS).
    text_overrides: dict[int, str]
    finish_reason: str
    stop_reason: str | int | None
    logprobs: list[TokenLogprob] | None = None
    # Agent-style answers (tool calls, reasoning): the delta each token streams as (None: held
    # back by the parser, no event) and the non-streamed message. Plain text leaves them None
    # and streams on the fast path.
    deltas: list[Delta | None] | None = None
    message: AgentMessage | None = None
    # Tokens a reasoning parser counts as reasoning (usage details, 0.30+).
    reasoning_tokens: int | None = None

    def text_at(self, tokenizer: Tokenizer, position: int) -> str:
        override = self.text_overrides.get(position)
        return tokenizer.piece(self.token_ids[position]) if override is None else override

    def json_text_at(self, tokenizer: Tokenizer, position: int) -> bytes:
        override = self.text_overrides.get(position)
        if override is None:
            return tokenizer.piece_json(self.token_ids[position])
        return dumps(override)

    def text(self, tokenizer: Tokenizer) -> str:
        if not self.text_overrides:
            return tokenizer.pieces(self.token_ids)
        return "".join(self.text_at(tokenizer, i) for i in range(len(self.token_ids)))


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What every event and body of one response shares."""

    id: str
    created: int
    model: str


@dataclass(frozen=True, slots=True)
class RenderedChoice:
    """A finished choice as a non-streamed body shows it (whatever produced it)."""

    index: int
    text: str
    finish_reason: str | None
    stop_reason: str | int | None
    # Already in the route's logprobs shape, or None.
    logprobs: Any = None
    # Chat answers with tool calls or reasoning: the message's parts (``text`` is unused).
    message: AgentMessage | None = None
    # Output token ids (return_token_ids), or None.
    token_ids: Sequence[int] | None = None
    # Completions: the prompt's ids (return_token_ids) and log-probabilities, or None.
    prompt_token_ids: Sequence[int] | None = None
    prompt_logprobs: Any = None


def random_id(hex_digits: int) -> str:
    """vLLM's ``random_uuid()``: 32 hex digits up to 0.11, 16 from 0.12. From a per-process
    generator seeded by the OS: unique in practice, and no system call per request."""
    return f"{_ids.getrandbits(4 * hex_digits):0{hex_digits}x}"


def _nulls(keys: Sequence[str]) -> bytes:
    return b"".join(b',"%b":null' % key.encode() for key in keys)


def _ordered(keys: Sequence[str], values: Mapping[str, Any]) -> dict[str, Any]:
    """``keys`` in order, each with its value or null."""
    return {key: values.get(key) for key in keys}


class Wire:
    """A profile's shapes compiled to the byte fragments streams are built from; one per
    worker. ``fingerprint`` is the ``system_fingerprint`` the era fills in (else null/absent)."""

    __slots__ = (
        "chat_delta_tail",
        "chat_finish_choice_tail",
        "chat_role_tail",
        "chat_token_choice_tail",
        "chat_token_tail",
        "completion_choice_tail",
        "completion_token_tail",
        "fingerprint",
        "fingerprint_tail",
        "profile",
    )

    def __init__(self, profile: Profile, fingerprint: str | None) -> None:
        self.profile = profile
        self.fingerprint = fingerprint if profile.fingerprint else None
        self.fingerprint_tail = (
            b',"system_fingerprint":' + dumps(self.fingerprint) if self.fingerprint else b""
        )
        self.chat_delta_tail = _nulls(profile.chat_delta_nulls)
        self.chat_token_choice_tail = _nulls(profile.chat_token_choice_nulls)
        self.chat_finish_choice_tail = _nulls(profile.chat_finish_choice_nulls)
        self.chat_role_tail = _nulls(profile.chat_role_nulls)
        self.chat_token_tail = _nulls(profile.chat_token_nulls)
        self.completion_choice_tail = _nulls(profile.completion_chunk_choice_nulls)
        self.completion_token_tail = _nulls(profile.completion_token_nulls)

    def meta(self, prefix: str, model: str, request_id: str | None) -> ResponseMeta:
        """``cmpl-``/``chatcmpl-`` plus the era's random id, or the client's X-Request-Id."""
        suffix = request_id or random_id(self.profile.id_hex_digits)
        return ResponseMeta(id=f"{prefix}-{suffix}", created=int(time.time()), model=model)

    def usage(
        self, prompt_tokens: int, completion_tokens: int, reasoning_tokens: int | None = None
    ) -> dict[str, Any]:
        """A body's usage: the counts, then the era's details keys (null unless a reasoning
        parser counted reasoning tokens, 0.30+)."""
        values: dict[str, Any] = usage(prompt_tokens, completion_tokens)
        if reasoning_tokens is not None and self.profile.reasoning_usage_details:
            values["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return _ordered(self.profile.usage_keys, values)

    def delta_json(self, delta: Delta) -> bytes:
        """A delta in DeltaMessage's key order (role, content, reasoning, tool_calls) with the
        keys the era marks set."""
        profile = self.profile
        values: dict[str, Any] = {}
        if delta.content is not None or (delta.tools and profile.tool_delta_content_null):
            values["content"] = delta.content
        if delta.reasoning is not None:
            for key in profile.reasoning_delta_keys:
                values[key] = delta.reasoning
        for key in profile.chat_delta_nulls:
            values.setdefault(key, None)
        if delta.tools:
            values["tool_calls"] = [_tool_delta(tool) for tool in delta.tools]
        return dumps(values)


def _tool_delta(tool: ToolDelta) -> dict[str, Any]:
    # DeltaToolCall's field order: id, type, index, function; only the keys that were set.
    values: dict[str, Any] = {}
    if tool.id is not None:
        values["id"] = tool.id
        values["type"] = "function"
    values["index"] = tool.index
    function: dict[str, Any] = {}
    if tool.name is not None or tool.null_name:
        function["name"] = tool.name
    if tool.arguments is not None:
        function["arguments"] = tool.arguments
    values["function"] = function
    return values


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    # vLLM's field order, all versions.
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def _usage_json(prompt_tokens: int, completion_tokens: int, tail: bytes = b"") -> bytes:
    return b'{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d%b}' % (
        prompt_tokens,
        prompt_tokens + completion_tokens,
        completion_tokens,
        tail,
    )


def stream_head(meta: ResponseMeta, object_name: str) -> bytes:
    """``data: {"id":…,"object":…,"created":…,"model":…`` without the closing brace."""
    return (
        DATA_PREFIX
        + dumps(
            {"id": meta.id, "object": object_name, "created": meta.created, "model": meta.model}
        )[:-1]
    )


def usage_event(
    wire: Wire,
    head: bytes,
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int | None = None,
) -> bytes:
    """The ``choices: []`` usage event (no nulls: vLLM drops them); ``head`` is a stream's."""
    details = (
        b',"completion_tokens_details":{"reasoning_tokens":%d}' % reasoning_tokens
        if reasoning_tokens is not None and wire.profile.reasoning_usage_details
        else b""
    )
    return b'%b,"choices":[],"usage":%b%b}%b' % (
        head,
        _usage_json(prompt_tokens, completion_tokens, details),
        wire.fingerprint_tail,
        EVENT_SEPARATOR,
    )


def _finish_json(value: str | int | None) -> bytes:
    return b"null" if value is None else dumps(value)


# --- log-probabilities --------------------------------------------------------------------------


def chat_logprob_entries(
    tokenizer: Tokenizer, entries: Sequence[TokenLogprob]
) -> list[dict[str, Any]]:
    return [
        {
            "token": tokenizer.piece(entry.token_id),
            "logprob": entry.logprob,
            "bytes": tokenizer.piece_bytes(entry.token_id),
            "top_logprobs": [
                {
                    "token": tokenizer.piece(tid),
                    "logprob": lp,
                    "bytes": tokenizer.piece_bytes(tid),
                }
                for tid, lp in entry.top
            ],
        }
        for entry in entries
    ]


def completion_logprobs(
    tokenizer: Tokenizer,
    entries: Sequence[TokenLogprob],
    text_offset: int,
    prompt: Sequence[TokenLogprob] = (),
) -> dict[str, Any]:
    """``prompt``: echoed prompt tokens, listed first; the very first has no log-probability."""
    offsets: list[int] = []
    every = [*prompt, *entries]
    for entry in every:
        offsets.append(text_offset)
        text_offset += len(tokenizer.piece(entry.token_id))
    unscored = 1 if prompt else 0
    return {
        "text_offset": offsets,
        "token_logprobs": [None] * unscored + [entry.logprob for entry in every[unscored:]],
        "tokens": [tokenizer.piece(entry.token_id) for entry in every],
        "top_logprobs": [None] * unscored
        + [
            {
                tokenizer.piece(tid): lp
                for tid, lp in (entry.top or [(entry.token_id, entry.logprob)])
            }
            for entry in every[unscored:]
        ],
    }


# --- chat ---------------------------------------------------------------------------------------


class ChatStream:
    """SSE events of one chat completion stream (``exclude_unset`` shapes)."""

    def __init__(
        self,
        wire: Wire,
        tokenizer: Tokenizer,
        meta: ResponseMeta,
        prompt_tokens: int,
        include_usage: bool,
        continuous_usage: bool,
    ) -> None:
        self.wire = wire
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        self.include_usage = include_usage
        self.continuous_usage = continuous_usage
        self._head = stream_head(meta, "chat.completion.chunk")
        self._choice = self._head + b',"choices":[{"index":'
        # 0.33's chat continuous usage names completion_tokens_details, null.
        self._usage_details = (
            b',"completion_tokens_details":null'
            if wire.profile.chat_continuous_usage_details
            else b""
        )
        # Without a usage event, the fingerprint rides on each finish chunk.
        self._finish_tail = (b"" if include_usage else wire.fingerprint_tail) + wire.chat_token_tail
        # The finish fields and tail of every event but a choice's last.
        self._ongoing = (
            b',"finish_reason":null' + wire.chat_token_choice_tail,
            wire.chat_token_tail,
        )
        # Set by the producer when a reasoning parser counted reasoning tokens.
        self.reasoning_tokens: int | None = None

    def _usage_tail(self, completion_tokens: int) -> bytes:
        if not self.continuous_usage:
            return b""
        return b',"usage":' + _usage_json(
            self.prompt_tokens, completion_tokens, self._usage_details
        )

    def role(self, index: int) -> bytes:
        wire = self.wire
        return b'%b%d,"delta":{"role":"assistant","content":""%b},%b}]%b%b}%b' % (
            self._choice,
            index,
            wire.chat_delta_tail,
            b'"logprobs":null,"finish_reason":null',
            self._usage_tail(0),
            wire.chat_role_tail,
            EVENT_SEPARATOR,
        )

    def _final(self, choice: ChoiceOutput) -> tuple[bytes, bytes]:
        """The finish fields of a choice's last event, and that event's top-level tail."""
        finish = b',"finish_reason":"%b","stop_reason":%b%b' % (
            choice.finish_reason.encode(),
            _finish_json(choice.stop_reason),
            self.wire.chat_finish_choice_tail,
        )
        return finish, self._finish_tail

    def token(self, choice: ChoiceOutput, position: int) -> bytes:
        # The same event as ``delta`` makes, written out: through a shared helper each event
        # cost 10 % more (1.07 vs 0.97 us), and this is every plain chat token.
        wire = self.wire
        last = position == len(choice.token_ids) - 1
        finish, tail = self._final(choice) if last else self._ongoing
        logprobs = (
            b"null"
            if choice.logprobs is None
            else dumps(
                {"content": chat_logprob_entries(self.tokenizer, [choice.logprobs[position]])}
            )
        )
        return b'%b%d,"delta":{"content":%b%b},"logprobs":%b%b}]%b%b}%b' % (
            self._choice,
            choice.index,
            choice.json_text_at(self.tokenizer, position),
            wire.chat_delta_tail,
            logprobs,
            finish,
            self._usage_tail(position + 1),
            tail,
            EVENT_SEPARATOR,
        )

    def delta(self, choice: ChoiceOutput, position: int, delta: Delta, first: int) -> bytes:
        """The event of an agent-style answer's token at ``position``, covering the tokens
        from ``first`` (those its parser held back) for log-probabilities."""
        last = position == len(choice.token_ids) - 1
        finish, tail = self._final(choice) if last else self._ongoing
        logprobs = (
            b"null"
            if choice.logprobs is None
            else dumps(
                {
                    "content": chat_logprob_entries(
                        self.tokenizer, choice.logprobs[first : position + 1]
                    )
                }
            )
        )
        return b'%b%d,"delta":%b,"logprobs":%b%b}]%b%b}%b' % (
            self._choice,
            choice.index,
            self.wire.delta_json(delta),
            logprobs,
            finish,
            self._usage_tail(position + 1),
            tail,
            EVENT_SEPARATOR,
        )

    def usage(self, completion_tokens: int) -> bytes:
        return usage_event(
            self.wire, self._head, self.prompt_tokens, completion_tokens, self.reasoning_tokens
        )


def render_chat_choice(
    tokenizer: Tokenizer, choice: ChoiceOutput, token_ids: bool = False
) -> RenderedChoice:
    """``token_ids``: show the output's ids (return_token_ids)."""
    return RenderedChoice(
        index=choice.index,
        text=choice.text(tokenizer),
        finish_reason=choice.finish_reason,
        stop_reason=choice.stop_reason,
        logprobs=None
        if choice.logprobs is None
        else {"content": chat_logprob_entries(tokenizer, choice.logprobs)},
        message=choice.message,
        token_ids=list(choice.token_ids) if token_ids else None,
    )


def _message(profile: Profile, choice: RenderedChoice) -> dict[str, Any]:
    agent = choice.message
    values: dict[str, Any] = {"role": "assistant", "content": choice.text, "tool_calls": []}
    if agent is not None:
        values["content"] = agent.content
        values["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in agent.tool_calls
        ]
        values["reasoning"] = values["reasoning_content"] = agent.reasoning
    keys = profile.chat_message_keys
    if profile.omit_empty_tool_calls and not values["tool_calls"]:
        keys = tuple(key for key in keys if key != "tool_calls")
    return _ordered(keys, values)


def chat_body(
    wire: Wire,
    meta: ResponseMeta,
    choices: Sequence[RenderedChoice],
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """``extra``: top-level fields that are filled (prompt_logprobs, prompt_token_ids)."""
    profile = wire.profile
    head = {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": wire.fingerprint,
        "usage": wire.usage(prompt_tokens, completion_tokens, reasoning_tokens),
        **(extra or {}),
    }
    rendered = [
        _ordered(
            profile.chat_choice_keys,
            {
                "index": choice.index,
                "message": _message(profile, choice),
                "logprobs": choice.logprobs,
                "finish_reason": choice.finish_reason,
                "stop_reason": choice.stop_reason,
                "token_ids": choice.token_ids,
            },
        )
        for choice in choices
    ]
    return _body(profile.chat_body_keys, head, rendered)


def _body(keys: Sequence[str], head: Mapping[str, Any], choices: list[dict[str, Any]]) -> bytes:
    """``head`` with its ``choices`` in ``keys`` order. Several choices are encoded one at a
    time: one ``dumps`` of a large answer (n x thousands of tokens with log-probabilities) is a
    single C call that holds the interpreter for tens of milliseconds, and such answers are
    built on a thread beside the worker's loop."""
    if len(choices) < 2:
        return dumps(_ordered(keys, {**head, "choices": choices}))
    before, after = dumps(_ordered(keys, {**head, "choices": []})).split(b'"choices":[]', 1)
    # Raw quotes only delimit keys and strings in JSON (a quote inside a string is escaped), so
    # the first '"choices":[]' is the member itself.
    return b"".join((before, b'"choices":[', b",".join(map(dumps, choices)), b"]", after))


# --- completions --------------------------------------------------------------------------------


class CompletionStream:
    """SSE events of one completions stream (all fields, and ``"usage":null`` on every chunk,
    up to 0.20; only the fields set from 0.21)."""

    def __init__(
        self,
        wire: Wire,
        tokenizer: Tokenizer,
        meta: ResponseMeta,
        prompt_tokens: int,
        include_usage: bool,
        continuous_usage: bool,
        prompt_ids: Sequence[Sequence[int]] = (),
        n: int = 1,
    ) -> None:
        self.wire = wire
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        self.include_usage = include_usage
        self.continuous_usage = continuous_usage
        self._head = stream_head(meta, "text_completion")
        self._choice = self._head + b',"choices":[{"index":'
        self._finish_tail = (b"" if include_usage else wire.fingerprint_tail) + (
            wire.completion_token_tail
        )
        # 0.11.0 sends each choice's prompt ids on its first chunk (choices are prompt-major).
        self._prompt_ids = prompt_ids if wire.profile.completion_first_chunk_prompt_ids else ()
        self._n = n

    def _usage_part(self, completion_tokens: int) -> bytes:
        if self.continuous_usage:
            return b',"usage":' + _usage_json(self.prompt_tokens, completion_tokens)
        return b',"usage":null' if self.wire.profile.completion_chunk_usage_null else b""

    def _choice_tail(self, choice: ChoiceOutput, position: int) -> bytes:
        if position or not self._prompt_ids:
            return self.wire.completion_choice_tail
        ids = self._prompt_ids[choice.index // self._n]
        return self.wire.completion_choice_tail.replace(
            b'"prompt_token_ids":null', b'"prompt_token_ids":' + dumps(list(ids)), 1
        )

    def token(
        self, choice: ChoiceOutput, position: int, text_offset: int, echo_text: str = ""
    ) -> bytes:
        """One token event; ``echo_text`` is the prompt, prepended on the first event."""
        last = position >= len(choice.token_ids) - 1
        if position < len(choice.token_ids):
            text = choice.text_at(self.tokenizer, position)
            text_json = (
                dumps(echo_text + text)
                if echo_text
                else choice.json_text_at(self.tokenizer, position)
            )
        else:
            text_json = dumps(echo_text)
        logprobs = (
            b"null"
            if choice.logprobs is None or position >= len(choice.logprobs)
            else dumps(
                completion_logprobs(self.tokenizer, [choice.logprobs[position]], text_offset)
            )
        )
        finish = b'"%b"' % choice.finish_reason.encode() if last else b"null"
        stop = _finish_json(choice.stop_reason) if last else b"null"
        return b'%b%d,"text":%b,"logprobs":%b,"finish_reason":%b,"stop_reason":%b%b}]%b%b}%b' % (
            self._choice,
            choice.index,
            text_json,
            logprobs,
            finish,
            stop,
            self._choice_tail(choice, position),
            self._usage_part(min(position + 1, len(choice.token_ids))),
            self._finish_tail if last else self.wire.completion_token_tail,
            EVENT_SEPARATOR,
        )

    def usage(self, completion_tokens: int) -> bytes:
        return usage_event(self.wire, self._head, self.prompt_tokens, completion_tokens)


def render_completion_choice(
    tokenizer: Tokenizer,
    choice: ChoiceOutput,
    echo_text: str = "",
    echoed: Sequence[TokenLogprob] = (),
) -> RenderedChoice:
    """``echoed``: the prompt's log-probabilities, which then open the arrays (offsets from 0)."""
    return RenderedChoice(
        index=choice.index,
        text=echo_text + choice.text(tokenizer),
        finish_reason=choice.finish_reason,
        stop_reason=choice.stop_reason,
        logprobs=None
        if choice.logprobs is None
        else completion_logprobs(
            tokenizer, choice.logprobs, 0 if echoed else len(echo_text), echoed
        ),
    )


def completion_body(
    wire: Wire,
    meta: ResponseMeta,
    choices: Sequence[RenderedChoice],
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    profile = wire.profile
    head = {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": wire.fingerprint,
        "usage": wire.usage(prompt_tokens, completion_tokens),
    }
    rendered = [
        _ordered(
            profile.completion_choice_keys,
            {
                "index": choice.index,
                "text": choice.text,
                "logprobs": choice.logprobs,
                "finish_reason": choice.finish_reason,
                "stop_reason": choice.stop_reason,
                "token_ids": choice.token_ids,
                "prompt_logprobs": choice.prompt_logprobs,
                "prompt_token_ids": choice.prompt_token_ids,
            },
        )
        for choice in choices
    ]
    return _body(profile.completion_body_keys, head, rendered)


# --- timed event plans --------------------------------------------------------------------------

TimedEvents = Iterator[PlanEvent]


def chat_events(
    stream: ChatStream, choices: Sequence[ChoiceOutput], offsets: Sequence[float]
) -> TimedEvents:
    """Role events ride with the first token (never at t=0); then one event per token step and
    choice, interleaved in index order; the usage event only when asked for; then [DONE].
    Tokens an agent-style answer's parser holds back send nothing: the next event carries
    them."""
    plain = all(choice.deltas is None for choice in choices)
    held = [0] * len(choices)
    for step, due in enumerate(offsets):
        if step == 0:
            for choice in choices:
                yield PlanEvent(due, stream.role(choice.index), 0)
        if plain:  # the hot path: one event per token
            for choice in choices:
                if step < len(choice.token_ids):
                    yield PlanEvent(due, stream.token(choice, step), 1)
            continue
        for number, choice in enumerate(choices):
            if step >= len(choice.token_ids):
                continue
            delta = None if choice.deltas is None else choice.deltas[step]
            if choice.deltas is None:
                data = stream.token(choice, step)
            elif delta is None:
                held[number] += 1
                continue
            else:
                data = stream.delta(choice, step, delta, step - held[number])
            yield PlanEvent(due, data, held[number] + 1)
            held[number] = 0
    end = offsets[-1] if offsets else 0.0
    if stream.include_usage:
        yield PlanEvent(end, stream.usage(sum(len(choice.token_ids) for choice in choices)), 0)
    yield PlanEvent(end, DONE_EVENT, 0)


def completion_events(
    stream: CompletionStream,
    choices: Sequence[ChoiceOutput],
    offsets: Sequence[float],
    echo_texts: Mapping[int, str],
) -> TimedEvents:
    """No role event: the first event already carries the first token (and the echoed prompt)."""
    text_offsets = {choice.index: len(echo_texts.get(choice.index, "")) for choice in choices}
    tokenizer = stream.tokenizer
    for step, due in enumerate(offsets or [0.0]):
        for choice in choices:
            if step < max(len(choice.token_ids), 1):
                echo = echo_texts.get(choice.index, "") if step == 0 else ""
                data = stream.token(choice, step, text_offsets[choice.index], echo)
                has_token = step < len(choice.token_ids)
                yield PlanEvent(due, data, int(has_token))
                if has_token:
                    text_offsets[choice.index] += len(choice.text_at(tokenizer, step))
    end = offsets[-1] if offsets else 0.0
    if stream.include_usage:
        yield PlanEvent(end, stream.usage(sum(len(choice.token_ids) for choice in choices)), 0)
    yield PlanEvent(end, DONE_EVENT, 0)


# --- other endpoints ----------------------------------------------------------------------------


def models_body(
    name: str,
    root: str,
    max_model_len: int,
    created: int,
    id_hex_digits: int,
    adapters: Mapping[str, str] | None = None,
) -> bytes:
    """The served model's card, then one per LoRA adapter (its path as root, the model as
    parent, no context length), as vLLM lists them."""
    cards: list[tuple[str, str, str | None, int | None]] = [(name, root, None, max_model_len)]
    cards += [(adapter, path, name, None) for adapter, path in (adapters or {}).items()]
    return dumps(
        {
            "object": "list",
            "data": [
                {
                    "id": card_id,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": card_root,
                    "parent": parent,
                    "max_model_len": length,
                    "permission": [
                        {
                            "id": f"modelperm-{random_id(id_hex_digits)}",
                            "object": "model_permission",
                            "created": created,
                            "allow_create_engine": False,
                            "allow_sampling": True,
                            "allow_logprobs": True,
                            "allow_search_indices": False,
                            "allow_view": True,
                            "allow_fine_tuning": False,
                            "organization": "*",
                            "group": None,
                            "is_blocking": False,
                        }
                    ],
                }
                for card_id, card_root, parent, length in cards
            ],
        }
    )


def tokenize_body(
    tokenizer: Tokenizer, tokens: Sequence[int], max_model_len: int, with_strings: bool
) -> bytes:
    return dumps(
        {
            "count": len(tokens),
            "max_model_len": max_model_len,
            "tokens": list(tokens),
            "token_strs": [tokenizer.piece(t) for t in tokens] if with_strings else None,
        }
    )
