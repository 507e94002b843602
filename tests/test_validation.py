"""Field types against pydantic itself (vLLM's request models are pydantic models, validated in
lax mode), body decoding against FastAPI's failures, and error messages that cannot fail."""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.encoding import bounded_repr, dumps
from dummy_vllm.protocol.errors import APIError, ValidationFailure, model_not_found
from dummy_vllm.protocol.fields import FieldError, as_bool, as_float, as_int, as_str, list_of
from dummy_vllm.protocol.profiles import DEFAULT_PROFILE, profile_for
from dummy_vllm.protocol.requests import (
    BODY_PARSE_ERROR,
    MAX_JSON_DEPTH,
    ServedModel,
    decode_body,
    parse_chat_request,
    parse_completion_request,
    parse_detokenize_request,
    parse_tokenize_request,
)
from dummy_vllm.settings import Limits

SERVED = ServedModel("m", "m", 256, Tokenizer(), Limits(max_n=8))
MESSAGES = [{"role": "user", "content": "hi"}]

# JSON scalars as a client sends them, strings that look like numbers and booleans included
# (well-formed ones: pydantic's parser has corner cases of its own in malformed numerals).
_numeric_text = st.from_regex(
    r"\A ?[+-]?[0-9]{1,4}(_[0-9]{1,3})?(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,3})? ?\Z"
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.sampled_from([2.0**63, -(2.0**63), 2.0**63 - 1024, 1e19, 10**400, 0.0, 1.0]),
    _numeric_text,
    st.sampled_from(["true", "False", "yes", "OFF", "t", "n", "inf", "-Infinity", "nan", "\uff11"]),
    st.text(alphabet="abtyXY \t\x85", max_size=5),
    st.lists(st.integers(), max_size=2),
)


@cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def _pydantic(tp: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", _adapter(tp).validate_python(value)
    except ValidationError as exc:
        return "error", exc.errors()[0]["type"]


def _ours(check: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", check(value)
    except FieldError as exc:
        return "error", exc.errors[0].type


@pytest.mark.parametrize(("check", "tp"), [(as_int, int), (as_bool, bool), (as_str, str)])
@settings(max_examples=200, deadline=None, database=None)
@given(value=SCALARS)
def test_scalar_types_coerce_as_pydantic_lax_mode(check: Any, tp: Any, value: Any) -> None:
    assert _ours(check, value) == _pydantic(tp, value)


@settings(max_examples=200, deadline=None, database=None)
@given(value=SCALARS)
def test_floats_coerce_as_pydantic_lax_mode(value: Any) -> None:
    ours, theirs = _ours(as_float, value), _pydantic(float, value)
    if ours[0] == "ok" and theirs[0] == "ok" and ours[1] != ours[1]:  # NaN
        assert theirs[1] != theirs[1]
    else:
        assert ours == theirs


def test_list_errors_are_located_by_index() -> None:
    with pytest.raises(FieldError) as caught:
        list_of(as_int)([1, "x", None])
    assert [(e.loc, e.type) for e in caught.value.errors] == [
        ((1,), "int_parsing"),
        ((2,), "int_type"),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), BODY_PARSE_ERROR),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, BODY_PARSE_ERROR),  # past the recursion limit
        (b'{"n": ' + b"9" * 5000 + b"}", BODY_PARSE_ERROR),  # Python's 4300-digit limit
        (b'{"prompt": "\xff"}', BODY_PARSE_ERROR),  # not UTF-8
        (b'{"prompt": "a\x01b"}', "'type': 'json_invalid'"),  # ujson takes it, JSON does not
        (b'{"prompt": }', "'loc': ('body', 11), 'msg': 'JSON decode error'"),
    ],
)
def test_undecodable_bodies_get_fastapis_400(raw: bytes, message: str) -> None:
    with pytest.raises(APIError) as caught:
        decode_body(raw, "application/json")
    assert caught.value.status == 400
    assert caught.value.error_type == "Bad Request"
    assert message in caught.value.message


def test_decoding_keeps_what_json_allows() -> None:
    body = decode_body(
        b'\xef\xbb\xbf{"a": 1e400, "b": NaN, "a": 2, "c": "\\ud800"}', "application/json"
    )
    assert body["a"] == 2
    assert body["b"] != body["b"]
    assert body["c"] == "\ud800"
    # As deep as allowed: the object and MAX_JSON_DEPTH - 1 lists.
    depth = MAX_JSON_DEPTH - 1
    value = decode_body(b'{"x":' + b"[" * depth + b"]" * depth + b"}", "application/json")["x"]
    for _ in range(depth - 1):
        (value,) = value
    assert value == []


def test_error_messages_are_bounded_and_encodable() -> None:
    huge = {"model": "\ud800", "messages": "x" * 1_000_000}
    error = ValidationFailure([{"type": "t", "loc": ("body",), "msg": "m", "input": huge}] * 5000)
    message, _, _ = error.fields(DEFAULT_PROFILE)
    assert len(message) < 100_000
    assert message.startswith("5000 validation errors:")
    assert message.endswith("... and 4968 more")
    body = json.loads(error.body())
    assert "\\ud800" in body["error"]["message"]  # repr's escape, as FastAPI prints it
    # An echoed lone surrogate is written as its JSON escape, which decodes back to it.
    assert (
        json.loads(model_not_found("\ud800x", ("m",), DEFAULT_PROFILE).body())["error"]["message"]
        == "The model `\ud800x` does not exist."
    )


def test_bounded_repr_is_repr_when_short_and_bounded_when_not() -> None:
    value = {"a": [1, (2,), (), "x\ud800"], "b": None, "c": 1.5, "d": ValueError("v")}
    assert bounded_repr(value) == repr(value)
    deep: list[Any] = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    assert len(bounded_repr(deep)) < 100
    assert len(bounded_repr([[]] * 1_000_000)) <= 2048 + 3
    assert dumps("\ud800") == b'"\\ud800"'


@pytest.mark.parametrize(
    ("body", "error_type", "expected"),
    [
        ({"messages": MESSAGES, "n": "2x"}, "Bad Request", "'type': 'int_parsing'"),
        ({"messages": MESSAGES, "stop": {"a": 1}}, "Bad Request", "('body', 'stop', 'list[str]')"),
        ({"messages": MESSAGES, "stop": [1]}, "Bad Request", "('body', 'stop', 'list[str]', 0)"),
        ({"messages": MESSAGES, "logit_bias": {"5": "x"}}, "Bad Request", "'float_parsing'"),
        ({"messages": MESSAGES, "logit_bias": {"x": 1}}, "BadRequestError", "invalid literal"),
        ({"messages": MESSAGES, "logit_bias": {"99999": 1}}, "BadRequestError", "out-of-vocab"),
        ({"messages": MESSAGES, "stream_options": []}, "Bad Request", "'model_type'"),
        ({"messages": MESSAGES, "seed": 2**63}, "Bad Request", "'less_than_equal'"),
        ({"messages": MESSAGES, "ignore_eos": None}, "Bad Request", "'bool_type'"),
        (
            {
                "messages": MESSAGES,
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "x", "function": {"name": "f"}},
            },
            "Bad Request",
            "literal['none']",
        ),
        ({"messages": MESSAGES, "tool_choice": 1}, "Bad Request", "`tools` must be set"),
        ({"messages": [{"role": 1}]}, "Bad Request", "('body', 'messages', 0, 'role')"),
        ({"messages": [{"role": "user", "content": None}]}, "Bad Request", "'content', 'str'"),
        ({"messages": [{"role": "user", "content": 5}]}, "Bad Request", "'content', 'str'"),
        ({"messages": [{"role": "u", "content": [5]}]}, "BadRequestError", "content[0]"),
        (
            {"messages": [{"role": "u", "content": [{"type": "text", "text": 5}]}]},
            "BadRequestError",
            "expected str instance, int found",
        ),
        ({"messages": [{"role": "u", "content": [{}]}]}, "BadRequestError", "Missing 'type'"),
        ({"messages": [{"role": "u", "content": [{"type": 1}]}]}, "BadRequestError", "Invalid"),
    ],
)
def test_chat_field_types(body: dict[str, Any], error_type: str, expected: str) -> None:
    with pytest.raises(APIError) as caught:
        parse_chat_request(body, SERVED)
    assert (caught.value.status, caught.value.error_type) == (400, error_type)
    assert expected in caught.value.message


def test_any_string_role_and_null_assistant_content_are_accepted() -> None:
    # vLLM's CustomChatCompletionMessageParam takes any role; OpenAI's assistant message a null.
    messages = [
        {"role": "narrator", "content": "x"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": ["plain", {"type": "text", "text": None}, {"image_url": "u"}]},
    ]
    assert parse_chat_request({"messages": messages, "max_tokens": 1}, SERVED).prompt


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (["1", "2"], 2),  # strings stay strings: two prompts
        ([1.0, True], 1),  # lax ints: one prompt of ids
        ([[1], [2, 3]], 2),
    ],
)
def test_prompt_union(prompt: Any, expected: int) -> None:
    request = parse_completion_request({"prompt": prompt, "max_tokens": 1}, SERVED)
    assert len(request.prompts) == expected


def test_prompt_union_errors_name_every_member() -> None:
    with pytest.raises(APIError) as caught:
        parse_completion_request({"prompt": 5}, SERVED)
    for member in ("list[int]", "list[list[int]]", "'str'", "list[str]"):
        assert member in caught.value.message


def test_stop_list_length_is_bounded_by_0_33s_model() -> None:
    served = ServedModel("m", "m", 256, Tokenizer(), Limits(), profile=profile_for("0.33")[0])
    with pytest.raises(APIError) as caught:
        parse_chat_request({"messages": MESSAGES, "stop": list("abcde")}, served)
    assert "List should have at most 4 items after validation, not 5" in caught.value.message
    assert caught.value.status == 400
    parse_chat_request({"messages": MESSAGES, "stop": list("abcd"), "max_tokens": 1}, served)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"stop": [f"s{i}" for i in range(65)]}, "stop must contain at most 64 strings, got 65."),
        ({"n": 8, "max_tokens": 200}, "Requested 1600 output tokens"),
        ({"max_tokens": 200, "logprobs": 20}, "Requested 4200 log-probabilities"),
    ],
)
def test_work_per_request_is_bounded(body: dict[str, Any], message: str) -> None:
    limits = Limits(max_n=8, max_request_tokens=1000, max_logprob_entries=4000)
    served = ServedModel("m", "m", 256, Tokenizer(), limits)
    with pytest.raises(APIError) as caught:
        parse_completion_request({"prompt": "p", **body}, served)
    assert (caught.value.status, caught.value.error_type) == (400, "BadRequestError")
    assert message in caught.value.message


def test_tokenize_and_detokenize_bodies() -> None:
    assert parse_tokenize_request({"prompt": "a b"}, SERVED).text == "a b"
    chat = parse_tokenize_request({"messages": MESSAGES, "return_token_strs": "yes"}, SERVED)
    assert chat.with_strings
    assert chat.text.endswith("<|assistant|>\n")
    with pytest.raises(APIError) as caught:
        parse_tokenize_request({"messages": [{"content": "x"}]}, SERVED)
    assert "'type': 'missing'" in caught.value.message
    with pytest.raises(APIError) as caught:
        parse_tokenize_request({}, SERVED)
    message = caught.value.message
    assert "('body', 'TokenizeCompletionRequest', 'prompt')" in message
    assert "('body', 'TokenizeChatRequest', 'messages')" in message
    assert parse_detokenize_request({"tokens": [1, "2", 3.0]}, SERVED) == [1, 2, 3]
    with pytest.raises(APIError):
        parse_detokenize_request({"tokens": "abc"}, SERVED)


def test_tokenize_chat_with_a_null_prompt_is_the_chat_member() -> None:
    # Found by the fuzz test: the chat member keeps the body's other keys, a null prompt too.
    chat = parse_tokenize_request({"messages": MESSAGES, "prompt": None}, SERVED)
    assert chat.text.endswith("<|assistant|>\n")


@pytest.mark.parametrize("route", ["chat", "completion"])
def test_field_checks_follow_the_era(route: str) -> None:
    """0.11 declares best_of and any number of stop strings; 0.33 no longer declares best_of
    (unknown, so ignored) and bounds stop at VLLM_MAX_STOP_STRINGS (4)."""
    parse = parse_chat_request if route == "chat" else parse_completion_request
    start = {"messages": MESSAGES} if route == "chat" else {"prompt": "hi"}
    old, new = SERVED, dataclasses.replace(SERVED, profile=profile_for("0.33")[0])
    five = {**start, "max_tokens": 2, "stop": ["a", "b", "c", "d", "e"]}
    assert parse(five, old).params.stop == ("a", "b", "c", "d", "e")
    with pytest.raises(ValidationFailure) as caught:
        parse(five, new)
    assert caught.value.errors[-1]["type"] == "too_long"
    assert caught.value.errors[-1]["loc"] == ("body", "stop", "list[str]")
    with pytest.raises(ValidationFailure):
        parse({**start, "max_tokens": 2, "best_of": "x"}, old)
    assert parse({**start, "max_tokens": 2, "best_of": "x"}, new).params.max_tokens == 2
