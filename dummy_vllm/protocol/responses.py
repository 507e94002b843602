"""Response bodies and SSE events in vLLM 0.11's shapes.

Field order and explicit nulls are part of the contract (clients and diff-based tests see them),
so bodies are built as ordered dicts and serialised compactly. Stream events are the hot path:
each encoder renders its constant head once and a token event is a few byte concatenations.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ujson

from ..engine import Tokenizer
from ..plan import PlanEvent
from .sse import DATA_PREFIX, DONE_EVENT, EVENT_SEPARATOR

_ids = random.Random(os.urandom(32))
JSON_CONTENT_TYPE = "application/json"


def dumps(value: Any) -> bytes:
    """Compact JSON with raw UTF-8, as vLLM's pydantic serialisation produces."""
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False).encode()


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token_id: int
    logprob: float
    # The most likely tokens at this step, best first (the sampled one included).
    top: list[tuple[int, float]]


@dataclass(slots=True)
class ChoiceOutput:
    index: int
    token_ids: list[int]
    # Positions whose streamed text differs from the token's piece (stop strings, EOS).
    text_overrides: dict[int, str]
    finish_reason: str
    stop_reason: str | int | None
    logprobs: list[TokenLogprob] | None = None

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
    # Already in the route's logprobs shape, or None.
    logprobs: Any = None


def new_response_meta(prefix: str, model: str, request_id: str | None) -> ResponseMeta:
    """``cmpl-``/``chatcmpl-`` plus 32 hex (0.11), or the client's X-Request-Id."""
    # 32 hex digits, as vLLM 0.11's random_uuid(), from a per-process generator seeded by the
    # OS: unique in practice, and no system call per request.
    suffix = request_id if request_id else f"{_ids.getrandbits(128):032x}"
    return ResponseMeta(id=f"{prefix}-{suffix}", created=int(time.time()), model=model)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    # vLLM's field order, all versions.
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def _usage_json(prompt_tokens: int, completion_tokens: int) -> bytes:
    return b'{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d}' % (
        prompt_tokens,
        prompt_tokens + completion_tokens,
        completion_tokens,
    )


def stream_head(meta: ResponseMeta, object_name: str) -> bytes:
    """``data: {"id":…,"object":…,"created":…,"model":…`` without the closing brace."""
    return (
        DATA_PREFIX
        + dumps(
            {"id": meta.id, "object": object_name, "created": meta.created, "model": meta.model}
        )[:-1]
    )


def usage_event(head: bytes, prompt_tokens: int, completion_tokens: int) -> bytes:
    """The ``choices: []`` usage event; ``head`` is a stream's ``_head``."""
    return b'%b,"choices":[],"usage":%b}%b' % (
        head,
        _usage_json(prompt_tokens, completion_tokens),
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
    tokenizer: Tokenizer, entries: Sequence[TokenLogprob], text_offset: int
) -> dict[str, Any]:
    offsets: list[int] = []
    for entry in entries:
        offsets.append(text_offset)
        text_offset += len(tokenizer.piece(entry.token_id))
    return {
        "text_offset": offsets,
        "token_logprobs": [entry.logprob for entry in entries],
        "tokens": [tokenizer.piece(entry.token_id) for entry in entries],
        "top_logprobs": [
            {
                tokenizer.piece(tid): lp
                for tid, lp in (entry.top or [(entry.token_id, entry.logprob)])
            }
            for entry in entries
        ],
    }


# --- chat ---------------------------------------------------------------------------------------


class ChatStream:
    """SSE events of one chat completion stream (``exclude_unset`` shapes)."""

    def __init__(
        self, tokenizer: Tokenizer, meta: ResponseMeta, prompt_tokens: int, continuous_usage: bool
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        self.continuous_usage = continuous_usage
        self._head = stream_head(meta, "chat.completion.chunk")
        self._choice = self._head + b',"choices":[{"index":'

    def _usage_tail(self, completion_tokens: int) -> bytes:
        if not self.continuous_usage:
            return b""
        return b',"usage":' + _usage_json(self.prompt_tokens, completion_tokens)

    def role(self, index: int) -> bytes:
        return (
            b"%b%d%b%b%b"
            % (
                self._choice,
                index,
                b',"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]',
                self._usage_tail(0),
                b',"prompt_token_ids":null}',
            )
            + EVENT_SEPARATOR
        )

    def token(self, choice: ChoiceOutput, position: int) -> bytes:
        last = position == len(choice.token_ids) - 1
        finish = (
            b',"finish_reason":"%b","stop_reason":%b'
            % (choice.finish_reason.encode(), _finish_json(choice.stop_reason))
            if last
            else b',"finish_reason":null'
        )
        logprobs = (
            b"null"
            if choice.logprobs is None
            else dumps(
                {"content": chat_logprob_entries(self.tokenizer, [choice.logprobs[position]])}
            )
        )
        return b'%b%d,"delta":{"content":%b},"logprobs":%b%b,"token_ids":null}]%b}%b' % (
            self._choice,
            choice.index,
            choice.json_text_at(self.tokenizer, position),
            logprobs,
            finish,
            self._usage_tail(position + 1),
            EVENT_SEPARATOR,
        )

    def usage(self, completion_tokens: int) -> bytes:
        return usage_event(self._head, self.prompt_tokens, completion_tokens)


def render_chat_choice(tokenizer: Tokenizer, choice: ChoiceOutput) -> RenderedChoice:
    return RenderedChoice(
        index=choice.index,
        text=choice.text(tokenizer),
        finish_reason=choice.finish_reason,
        stop_reason=choice.stop_reason,
        logprobs=None
        if choice.logprobs is None
        else {"content": chat_logprob_entries(tokenizer, choice.logprobs)},
    )


def chat_body(
    meta: ResponseMeta,
    choices: Sequence[RenderedChoice],
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    return dumps(
        {
            "id": meta.id,
            "object": "chat.completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [
                {
                    "index": choice.index,
                    "message": {
                        "role": "assistant",
                        "content": choice.text,
                        "refusal": None,
                        "annotations": None,
                        "audio": None,
                        "function_call": None,
                        "tool_calls": [],
                        "reasoning_content": None,
                    },
                    "logprobs": choice.logprobs,
                    "finish_reason": choice.finish_reason,
                    "stop_reason": choice.stop_reason,
                    "token_ids": None,
                }
                for choice in choices
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": {**usage(prompt_tokens, completion_tokens), "prompt_tokens_details": None},
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "kv_transfer_params": None,
        }
    )


# --- completions --------------------------------------------------------------------------------


class CompletionStream:
    """SSE events of one completions stream (all fields, ``"usage":null`` on every chunk)."""

    def __init__(
        self, tokenizer: Tokenizer, meta: ResponseMeta, prompt_tokens: int, continuous_usage: bool
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        self.continuous_usage = continuous_usage
        self._head = stream_head(meta, "text_completion")
        self._choice = self._head + b',"choices":[{"index":'

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
        usage_json = (
            _usage_json(self.prompt_tokens, min(position + 1, len(choice.token_ids)))
            if self.continuous_usage
            else b"null"
        )
        return (
            b'%b%d,"text":%b,"logprobs":%b,"finish_reason":%b,"stop_reason":%b,'
            b'"prompt_token_ids":null,"token_ids":null}],"usage":%b}%b'
            % (
                self._choice,
                choice.index,
                text_json,
                logprobs,
                finish,
                stop,
                usage_json,
                EVENT_SEPARATOR,
            )
        )

    def usage(self, completion_tokens: int) -> bytes:
        return usage_event(self._head, self.prompt_tokens, completion_tokens)


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
        else completion_logprobs(tokenizer, choice.logprobs, len(echo_text)),
    )


def completion_body(
    meta: ResponseMeta,
    choices: Sequence[RenderedChoice],
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    return dumps(
        {
            "id": meta.id,
            "object": "text_completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [
                {
                    "index": choice.index,
                    "text": choice.text,
                    "logprobs": choice.logprobs,
                    "finish_reason": choice.finish_reason,
                    "stop_reason": choice.stop_reason,
                    "token_ids": None,
                    "prompt_logprobs": None,
                    "prompt_token_ids": None,
                }
                for choice in choices
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": {**usage(prompt_tokens, completion_tokens), "prompt_tokens_details": None},
            "kv_transfer_params": None,
        }
    )


# --- timed event plans --------------------------------------------------------------------------

TimedEvents = Iterator[PlanEvent]


def chat_events(
    stream: ChatStream,
    choices: Sequence[ChoiceOutput],
    offsets: Sequence[float],
    include_usage: bool,
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
    if include_usage:
        yield PlanEvent(end, stream.usage(sum(len(choice.token_ids) for choice in choices)), 0)
    yield PlanEvent(end, DONE_EVENT, 0)


def completion_events(
    stream: CompletionStream,
    choices: Sequence[ChoiceOutput],
    offsets: Sequence[float],
    include_usage: bool,
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
    if include_usage:
        yield PlanEvent(end, stream.usage(sum(len(choice.token_ids) for choice in choices)), 0)
    yield PlanEvent(end, DONE_EVENT, 0)


# --- other endpoints ----------------------------------------------------------------------------


def models_body(name: str, root: str, max_model_len: int, created: int) -> bytes:
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
                            "id": f"modelperm-{uuid.uuid4().hex}",
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
