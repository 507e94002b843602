"""Generated requests for the robustness fuzz test: valid bodies of every JSON route, mutated the
way an attacker (or a buggy client) would, and the checks every answer must pass.

A route is fuzzed once it has an entry in ``ROUTES``: valid example bodies to start from. A
mutation replaces a value anywhere in the body (wrong types, extreme numbers, deep nesting, lone
surrogates, huge strings), deletes or duplicates a key, or breaks the bytes or the content type.
Bodies are written by ``render`` so that they can hold what Python's json cannot write: number
literals of thousands of digits, nesting deeper than the recursion limit, duplicate keys.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]

# Valid bodies per route; mutations start from these.
ROUTES: dict[str, list[dict[str, Any]]] = {
    "/v1/completions": [
        {"prompt": "Once upon a time", "max_tokens": 4},
        {"prompt": ["a b", "c"], "max_tokens": 3, "n": 2, "stream": True, "logprobs": 2},
        {
            "prompt": [1, 2, 3],
            "max_tokens": 2,
            "echo": True,
            "stop": ["x", "y"],
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        },
        {"prompt": [[5, 6], [7]], "max_tokens": 2, "seed": 3, "temperature": 0.5, "top_p": 0.9},
    ],
    "/v1/chat/completions": [
        {"messages": MESSAGES, "max_tokens": 4},
        {
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, "there"]}],
            "max_completion_tokens": 3,
            "stream": True,
            "logprobs": True,
            "top_logprobs": 2,
            "n": 2,
        },
        {
            "messages": MESSAGES,
            "max_tokens": 2,
            "stop": "x",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": "none",
            "logit_bias": {"5": 1.0},
        },
        {
            "messages": [{"role": "assistant", "content": None}, {"role": "user", "content": "q"}],
            "max_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": False},
            "ignore_eos": True,
            "min_tokens": 1,
        },
        {
            "messages": MESSAGES,
            "max_tokens": 8,
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "city": {"type": "string"},
                                "days": {"type": "integer", "minimum": 1},
                                "unit": {"enum": ["c", "f"]},
                            },
                            "required": ["city"],
                        },
                    },
                }
            ],
            "tool_choice": "auto",
            "stream": True,
        },
        {
            "messages": MESSAGES,
            "max_tokens": 6,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
        {
            "messages": MESSAGES,
            "max_tokens": 12,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "r",
                    "schema": {
                        "type": "object",
                        "properties": {"a": {"type": "array", "items": {"type": "number"}}},
                    },
                },
            },
        },
        {"messages": MESSAGES, "max_tokens": 5, "guided_choice": ["yes", "no"]},
        {"messages": MESSAGES, "max_tokens": 5, "structured_outputs": {"regex": "[a-c]{2,4}"}},
        {
            "messages": MESSAGES,
            "max_tokens": 6,
            "chat_template_kwargs": {"enable_thinking": True},
            "include_reasoning": False,
        },
    ],
    "/v1/embeddings": [
        {"input": "Hello world"},
        {"input": ["a b", "c"], "encoding_format": "base64", "dimensions": 8},
        {"input": [[1, 2, 3], [4]], "encoding_format": "float", "user": "u"},
    ],
    "/pooling": [{"input": "pooled text"}, {"input": ["x", "y"], "encoding_format": "float"}],
    "/v1/responses": [
        {"input": "Tell me", "max_output_tokens": 6},
        {
            "input": [{"role": "user", "content": "hi"}],
            "instructions": "Be brief.",
            "max_output_tokens": 4,
            "stream": True,
        },
        {
            "input": "call it",
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": "required",
            "max_output_tokens": 8,
        },
    ],
    "/v1/messages": [
        {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
        {
            "model": "m",
            "max_tokens": 4,
            "system": "Be brief.",
            "stream": True,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        },
        {
            "model": "m",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
        },
    ],
    "/v1/messages/count_tokens": [
        {"model": "m", "messages": [{"role": "user", "content": "count me"}]}
    ],
    "/v1/load_lora_adapter": [{"lora_name": "fuzz-lora", "lora_path": "/adapters/fuzz"}],
    "/v1/unload_lora_adapter": [{"lora_name": "fuzz-lora"}],
    "/tokenize": [
        {"prompt": "Hello world", "return_token_strs": True},
        {"messages": MESSAGES, "add_generation_prompt": False},
    ],
    "/detokenize": [{"tokens": [72, 101, 108, 108, 111]}],
}

STREAM_ENDS = {b"response.completed", b"response.incomplete", b"message_stop", b"error"}
# The same for the Anthropic envelope of /v1/messages.
ANTHROPIC_ERROR_TYPES = {
    400: {"invalid_request_error"},
    404: {"not_found_error"},
    413: {"request_too_large"},
}
# Statuses a JSON route may answer with, and the error ``type`` each may carry.
ERROR_TYPES = {
    # InvalidUserInput: the LoRA routes' refusals; invalid_request_error: the Responses API's.
    400: {"Bad Request", "BadRequestError", "InvalidUserInput", "invalid_request_error"},
    404: {"NotFoundError", "invalid_request_error"},
    413: {"RequestEntityTooLarge"},
}


@dataclass(frozen=True)
class Raw:
    """JSON text written as is (numbers and nesting the json module cannot produce)."""

    text: str


@dataclass(frozen=True)
class DuplicateKeys:
    """An object whose keys repeat: ``pairs`` in order."""

    pairs: tuple[tuple[str, Any], ...]


def render(value: Any) -> str:
    """JSON text of ``value``; strings are written with ASCII escapes, so lone surrogates
    become ``\\udXXX`` escapes as a client would send them."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, DuplicateKeys):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(item) for item in value) + "]"
    return json.dumps(value)


# --- values -------------------------------------------------------------------------------------

# Letters, digits and space, with lone surrogates (Cs), control (Cc) and other characters.
_any_char = st.characters(
    codec=None, categories=["Cs", "Cc", "Cf", "Lu", "Ll", "Lo", "Nd", "Zs", "Po", "So"]
)
_text = st.text(_any_char, max_size=30)
_extreme_numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 0, 1, 2, 2**31, 2**63, -(2**63) - 1, 10**20]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(1, 6000).map(lambda digits: Raw("9" * digits)),
    st.integers(1, 6000).map(lambda digits: Raw("-1" + "0" * digits)),
    st.sampled_from([Raw("1e400"), Raw("-1e400"), Raw("NaN"), Raw("Infinity"), Raw("1e-400")]),
    st.sampled_from([Raw("1.5"), Raw("0.0"), Raw("-0"), Raw("4.0"), Raw("1E3")]),
)
_deep = st.integers(50, 3000).flatmap(
    lambda depth: st.sampled_from(
        [Raw("[" * depth + "]" * depth), Raw('{"a":' * depth + "1" + "}" * depth)]
    )
)
_huge_strings = st.sampled_from([Raw(json.dumps("x" * 200_000)), Raw(json.dumps("y " * 100_000))])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _extreme_numbers,
    _text,
    st.sampled_from(["", "1", "true", "none", "auto", "function", "user", "text", "\ud800"]),
)
_json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(_text, children, max_size=5)
    ),
    max_leaves=12,
)
VALUES = st.one_of(
    _json_values,
    _json_values,
    _deep,
    _huge_strings,
    st.lists(st.sampled_from(["a", "", "\ud800", 1, None]), max_size=400, min_size=100),
)


# --- mutations ----------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in ``value`` (the root included)."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths.extend(_paths(child, (*prefix, index)))
    return paths


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(value[head], rest, new)
    return copy


def _deleted(value: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != path[0]}
        return [v for i, v in enumerate(value) if i != path[0]]
    head = path[0]
    if isinstance(value, dict):
        return {**value, head: _deleted(value[head], path[1:])}
    copy = list(value)
    copy[head] = _deleted(value[head], path[1:])
    return copy


@st.composite
def _mutated(draw: st.DrawFn, body: dict[str, Any], route_fields: list[str]) -> Any:
    value: Any = body
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "replace", "add", "delete", "duplicate"]))
        paths = _paths(value)
        if kind == "replace":
            value = _replaced(value, draw(st.sampled_from(paths)), draw(VALUES))
        elif kind == "add" and isinstance(value, dict):
            name = draw(st.one_of(st.sampled_from(route_fields), _text))
            value = {**value, name: draw(VALUES)}
        elif kind == "delete" and len(paths) > 1:
            value = _deleted(value, draw(st.sampled_from(paths[1:])))
        elif kind == "duplicate" and isinstance(value, dict) and value:
            key = draw(st.sampled_from(sorted(value)))
            return DuplicateKeys((*value.items(), (key, draw(VALUES))))
    return value


# Fields vLLM's request models declare, so that additions hit checked fields too.
FIELD_NAMES = sorted(
    {
        "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "n", "stop",
        "stream", "stream_options", "temperature", "top_p", "top_k", "min_p", "seed", "logprobs",
        "top_logprobs", "echo", "logit_bias", "presence_penalty", "frequency_penalty",
        "repetition_penalty", "ignore_eos", "min_tokens", "stop_token_ids", "best_of", "user",
        "tools", "tool_choice", "include_stop_str_in_output", "tokens", "add_generation_prompt",
        "return_token_strs", "prompt_logprobs", "truncate_prompt_tokens", "bad_words",
        "allowed_token_ids", "vllm_xargs", "priority", "request_id", "reasoning_effort",
        "documents", "chat_template_kwargs", "continue_final_message", "suffix",
        "response_format", "structured_outputs", "guided_json", "guided_choice", "guided_regex",
        "guided_grammar", "parallel_tool_calls", "include_reasoning", "return_token_ids",
        "input", "encoding_format", "dimensions", "instructions", "max_output_tokens", "system",
        "stop_sequences", "lora_name", "lora_path", "previous_response_id", "text", "reasoning",
    }
)  # fmt: skip

_CONTENT_TYPES = st.sampled_from(
    [
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ]
)


@dataclass(frozen=True)
class FuzzRequest:
    path: str
    body: bytes
    content_type: str | None


@st.composite
def requests(draw: st.DrawFn) -> FuzzRequest:
    path = draw(st.sampled_from(sorted(ROUTES)))
    body = draw(st.sampled_from(ROUTES[path]))
    shape = draw(st.sampled_from(["valid", "mutated", "mutated", "mutated", "mutated", "bytes"]))
    if shape == "valid":
        text = render(body).encode()
    elif shape == "mutated":
        text = render(draw(_mutated(body, FIELD_NAMES))).encode()
    else:
        valid = render(body).encode()
        cut = draw(st.integers(0, len(valid)))
        noise = draw(st.binary(max_size=20))
        text = draw(st.sampled_from([valid[:cut], valid[:cut] + noise + valid[cut:], noise]))
    content_type = draw(
        st.sampled_from(["application/json"] * 8 + [None]) | _CONTENT_TYPES  # mostly JSON
    )
    return FuzzRequest(path, text, content_type)


# --- checks -------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Answers by status, for the report ``make fuzz`` prints."""

    statuses: Counter[int] = field(default_factory=Counter)

    def report(self) -> str:
        total = sum(self.statuses.values())
        lines = [f"{total} requests; answers by status:"]
        lines += [f"  {status}: {count}" for status, count in sorted(self.statuses.items())]
        return "\n".join(lines)


def check_answer(status: int, content_type: str, body: bytes, nested: bool = True) -> None:
    """What every answer of a JSON route must be: never a 5xx; a 4xx in vLLM's envelope with a
    ``type`` vLLM gives that status (or the Anthropic envelope /v1/messages answers with, or
    FastAPI's 404 for a route the era lacks); a 2xx that parses (a JSON body or a stream)."""
    assert status < 500, f"{status}: {body[:300]!r}"
    if status >= 400:
        assert content_type.startswith("application/json"), content_type
        envelope = json.loads(body)
        if envelope == {"detail": "Not Found"}:
            assert status == 404
            return
        if envelope.get("type") == "error":
            assert set(envelope["error"]) == {"type", "message"}, envelope
            assert envelope["error"]["type"] in ANTHROPIC_ERROR_TYPES[status], envelope
            return
        error = envelope["error"] if nested else envelope
        assert set(error) >= {"message", "type", "param", "code"}, envelope
        assert error["code"] == status, envelope
        assert isinstance(error["message"], str), envelope
        assert error["type"] in ERROR_TYPES[status], envelope
        return
    assert status == 200, status
    if content_type.startswith("text/event-stream"):
        assert body.endswith(b"\n\n"), body[-200:]
        names = []
        for event in body.split(b"\n\n")[:-1]:
            name, _, data = event.rpartition(b"data: ")
            names.append(name.removeprefix(b"event: ").strip())
            if data != b"[DONE]":
                json.loads(data)
        # A chat or completions stream ends with [DONE]; the others with their named last event.
        assert body.endswith(b"data: [DONE]\n\n") or names[-1] in STREAM_ENDS, body[-200:]
    elif content_type.startswith("application/json"):
        json.loads(body)
    else:  # the LoRA routes answer in plain text, with no content type
        assert not content_type, content_type
        body.decode()
