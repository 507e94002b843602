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
from collections.abc import Iterable, Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine import Tokenizer
from ..plan import PlanEvent
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
    # A list, or a compact array('i') for long outputs.
    token_ids: MutableSequence[int]
    # Positions whose streamed text differs from the token's piece (stop strings, EOS).
    text_overrides: dict[int, str]
    finish_reason: str
    stop_reason: str | int | None
    # One entry per token, possibly computed as it is read.
    logprobs: Sequence[TokenLogprob] | None = None

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
            return "".join(map(tokenizer.piece, self.token_ids))
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
    # The route's logprobs object as JSON, or None.
    logprobs: bytes | None = None


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

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """A body's usage: the counts, then the era's details keys, null."""
        return _ordered(self.profile.usage_keys, usage(prompt_tokens, completion_tokens))


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


def usage_event(wire: Wire, head: bytes, prompt_tokens: int, completion_tokens: int) -> bytes:
    """The ``choices: []`` usage event (no nulls: vLLM drops them); ``head`` is a stream's."""
    return b'%b,"choices":[],"usage":%b%b}%b' % (
        head,
        _usage_json(prompt_tokens, completion_tokens),
        wire.fingerprint_tail,
        EVENT_SEPARATOR,
    )


def _finish_json(value: str | int | None) -> bytes:
    return b"null" if value is None else dumps(value)


# --- log-probabilities --------------------------------------------------------------------------


def _chat_logprob_entry(tokenizer: Tokenizer, entry: TokenLogprob) -> bytes:
    return dumps(
        {
            "token": tokenizer.piece(entry.token_id),
            "logprob": entry.logprob,
            "bytes": tokenizer.piece_bytes(entry.token_id),
            "top_logprobs": [
                {"token": tokenizer.piece(tid), "logprob": lp, "bytes": tokenizer.piece_bytes(tid)}
                for tid, lp in entry.top
            ],
        }
    )


def chat_logprobs_json(tokenizer: Tokenizer, entries: Iterable[TokenLogprob]) -> bytes:
    """``{"content": [...]}``, written entry by entry: a long answer's log-probabilities never
    exist as Python objects all at once."""
    out = bytearray(b'{"content":[')
    for position, entry in enumerate(entries):
        if position:
            out += b","
        out += _chat_logprob_entry(tokenizer, entry)
    out += b"]}"
    return bytes(out)


def completion_logprobs_json(
    tokenizer: Tokenizer, entries: Iterable[TokenLogprob], text_offset: int
) -> bytes:
    """Completions' four parallel lists, written in one pass over the entries."""
    offsets, logprobs, tokens, tops = bytearray(), bytearray(), bytearray(), bytearray()
    for position, entry in enumerate(entries):
        if position:
            offsets += b","
            logprobs += b","
            tokens += b","
            tops += b","
        offsets += b"%d" % text_offset
        logprobs += dumps(entry.logprob)
        tokens += tokenizer.piece_json(entry.token_id)
        top = entry.top or [(entry.token_id, entry.logprob)]
        tops += dumps({tokenizer.piece(tid): lp for tid, lp in top})
        text_offset += len(tokenizer.piece(entry.token_id))
    return b"".join(
        (
            b'{"text_offset":[',
            offsets,
            b'],"token_logprobs":[',
            logprobs,
            b'],"tokens":[',
            tokens,
            b'],"top_logprobs":[',
            tops,
            b"]}",
        )
    )


def _with_list(head: Mapping[str, Any], key: str, items: Iterable[bytes]) -> bytes:
    """``dumps(head)`` with the list at ``key`` (left empty in ``head``) written from ``items``,
    one at a time. Raw quotes only delimit keys and strings in JSON, so the first
    ``"key":[]`` is the member itself, never text inside a string."""
    before, after = dumps(head).split(b'"%b":[]' % key.encode(), 1)
    out = bytearray(before)
    out += b'"%b":[' % key.encode()
    for position, item in enumerate(items):
        if position:
            out += b","
        out += item
    out += b"]"
    out += after
    return bytes(out)


def _with_logprobs(choice: Mapping[str, Any], logprobs: bytes | None) -> bytes:
    """``dumps(choice)`` whose ``"logprobs":null`` member is ``logprobs`` when given."""
    body = dumps(choice)
    return (
        body if logprobs is None else body.replace(b'"logprobs":null', b'"logprobs":' + logprobs, 1)
    )


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

    def token(self, choice: ChoiceOutput, position: int) -> bytes:
        wire = self.wire
        if position == len(choice.token_ids) - 1:
            finish = b',"finish_reason":"%b","stop_reason":%b%b' % (
                choice.finish_reason.encode(),
                _finish_json(choice.stop_reason),
                wire.chat_finish_choice_tail,
            )
            tail = self._finish_tail
        else:
            finish = b',"finish_reason":null' + wire.chat_token_choice_tail
            tail = wire.chat_token_tail
        logprobs = (
            b"null"
            if choice.logprobs is None
            else chat_logprobs_json(self.tokenizer, (choice.logprobs[position],))
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

    def usage(self, completion_tokens: int) -> bytes:
        return usage_event(self.wire, self._head, self.prompt_tokens, completion_tokens)


def render_chat_choice(tokenizer: Tokenizer, choice: ChoiceOutput) -> RenderedChoice:
    return RenderedChoice(
        index=choice.index,
        text=choice.text(tokenizer),
        finish_reason=choice.finish_reason,
        stop_reason=choice.stop_reason,
        logprobs=None
        if choice.logprobs is None
        else chat_logprobs_json(tokenizer, choice.logprobs),
    )


def chat_body(
    wire: Wire,
    meta: ResponseMeta,
    choices: Iterable[RenderedChoice],
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """The body, written choice by choice (``choices`` may render each as it is read)."""
    profile = wire.profile
    message_keys = profile.chat_message_keys
    if profile.omit_empty_tool_calls:
        message_keys = tuple(key for key in message_keys if key != "tool_calls")
    head = {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [],
        "system_fingerprint": wire.fingerprint,
        "usage": wire.usage(prompt_tokens, completion_tokens),
    }
    rendered = (
        _with_logprobs(
            _ordered(
                profile.chat_choice_keys,
                {
                    "index": choice.index,
                    "message": _ordered(
                        message_keys,
                        {"role": "assistant", "content": choice.text, "tool_calls": []},
                    ),
                    "finish_reason": choice.finish_reason,
                    "stop_reason": choice.stop_reason,
                },
            ),
            choice.logprobs,
        )
        for choice in choices
    )
    return _with_list(_ordered(profile.chat_body_keys, head), "choices", rendered)


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
            else completion_logprobs_json(self.tokenizer, (choice.logprobs[position],), text_offset)
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
    tokenizer: Tokenizer, choice: ChoiceOutput, echo_text: str = ""
) -> RenderedChoice:
    return RenderedChoice(
        index=choice.index,
        text=echo_text + choice.text(tokenizer),
        finish_reason=choice.finish_reason,
        stop_reason=choice.stop_reason,
        logprobs=None
        if choice.logprobs is None
        else completion_logprobs_json(tokenizer, choice.logprobs, len(echo_text)),
    )


def completion_body(
    wire: Wire,
    meta: ResponseMeta,
    choices: Iterable[RenderedChoice],
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """The body, written choice by choice (``choices`` may render each as it is read)."""
    profile = wire.profile
    head = {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [],
        "system_fingerprint": wire.fingerprint,
        "usage": wire.usage(prompt_tokens, completion_tokens),
    }
    rendered = (
        _with_logprobs(
            _ordered(
                profile.completion_choice_keys,
                {
                    "index": choice.index,
                    "text": choice.text,
                    "finish_reason": choice.finish_reason,
                    "stop_reason": choice.stop_reason,
                },
            ),
            choice.logprobs,
        )
        for choice in choices
    )
    return _with_list(_ordered(profile.completion_body_keys, head), "choices", rendered)


# --- timed event plans --------------------------------------------------------------------------

TimedEvents = Iterator[PlanEvent]


def chat_events(
    stream: ChatStream, choices: Sequence[ChoiceOutput], offsets: Sequence[float]
) -> TimedEvents:
    """Role events ride with the first token (never at t=0); then one event per token step and
    choice, interleaved in index order; the usage event only when asked for; then [DONE]."""
    for step, due in enumerate(offsets):
        if step == 0:
            for choice in choices:
                yield PlanEvent(due, stream.role(choice.index), 0)
        for choice in choices:
            if step < len(choice.token_ids):
                yield PlanEvent(due, stream.token(choice, step), 1)
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
    name: str, root: str, max_model_len: int, created: int, id_hex_digits: int
) -> bytes:
    return dumps(
        {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": root,
                    "parent": None,
                    "max_model_len": max_model_len,
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
