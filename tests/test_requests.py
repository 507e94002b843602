"""Request validation: vLLM 0.11's statuses, types and messages, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.errors import APIError
from dummy_vllm.protocol.requests import (
    ServedModel,
    decode_body,
    parse_chat_request,
    parse_completion_request,
)
from dummy_vllm.settings import Limits

SERVED = ServedModel("m", "m", 64, Tokenizer(), Limits(max_n=8))
MESSAGES = [{"role": "user", "content": "hi"}]


def chat_error(body: dict[str, Any]) -> APIError:
    with pytest.raises(APIError) as caught:
        parse_chat_request(body, SERVED)
    return caught.value


def completion_error(body: dict[str, Any]) -> APIError:
    with pytest.raises(APIError) as caught:
        parse_completion_request(body, SERVED)
    return caught.value


def test_defaults() -> None:
    completion = parse_completion_request({"prompt": "hello"}, SERVED)
    assert completion.params.max_tokens == 16
    assert completion.params.n == 1
    assert completion.params.include_usage is False
    chat = parse_chat_request({"messages": MESSAGES}, SERVED)
    assert chat.params.max_tokens == 64 - len(chat.prompt)


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    chat = parse_chat_request(
        {"messages": MESSAGES, "max_tokens": 3, "max_completion_tokens": 5}, SERVED
    )
    assert chat.params.max_tokens == 5


def test_stream_options_defaults_include_usage_true_when_present() -> None:
    chat = parse_chat_request({"messages": MESSAGES, "stream": True, "stream_options": {}}, SERVED)
    assert chat.params.include_usage is True  # 0.11: StreamOptions.include_usage defaults to True
    chat = parse_chat_request(
        {"messages": MESSAGES, "stream": True, "stream_options": {"continuous_usage_stats": True}},
        SERVED,
    )
    assert chat.params.include_usage is True
    assert chat.params.continuous_usage_stats is True


def test_prompt_forms() -> None:
    assert len(parse_completion_request({"prompt": ["a", "b c"]}, SERVED).prompts) == 2
    assert parse_completion_request({"prompt": [1, 2, 3]}, SERVED).prompts == ((1, 2, 3),)
    assert parse_completion_request({"prompt": [[1], [2, 3]]}, SERVED).prompts == ((1,), (2, 3))


def test_unknown_fields_and_nulls_are_accepted() -> None:
    chat = parse_chat_request(
        {
            "messages": MESSAGES,
            "stop": None,
            "ignore_eos": True,
            "whatever": {"x": 1},
            "max_tokens": 2,
        },
        SERVED,
    )
    assert chat.params.stop == ()
    assert chat.params.ignore_eos is True


@pytest.mark.parametrize(
    ("body", "status", "error_type", "message"),
    [
        ({}, 400, "Bad Request", "'loc': ('body', 'messages'), 'msg': 'Field required'"),
        ({"messages": MESSAGES, "n": 0}, 400, "BadRequestError", "n must be at least 1, got 0."),
        ({"messages": MESSAGES, "n": 9}, 400, "BadRequestError", "n must be at most 8, got 9."),
        (
            {"messages": MESSAGES, "max_tokens": 0},
            400,
            "BadRequestError",
            "max_tokens must be at least 1, got 0.",
        ),
        (
            {"messages": MESSAGES, "top_logprobs": 2},
            400,
            "Bad Request",
            "when using `top_logprobs`, `logprobs` must be set to true.",
        ),
        (
            {"messages": MESSAGES, "stream_options": {"include_usage": True}},
            400,
            "Bad Request",
            "Stream options can only be defined when `stream=True`.",
        ),
        (
            {"messages": MESSAGES, "stop": ["a", ""]},
            400,
            "BadRequestError",
            "stop cannot contain an empty string.",
        ),
        (
            {"messages": MESSAGES, "n": 2, "temperature": 0},
            400,
            "BadRequestError",
            "n must be 1 when using greedy sampling, got 2.",
        ),
        (
            {"messages": MESSAGES, "logprobs": True, "top_logprobs": 21},
            400,
            "BadRequestError",
            "Requested sample logprobs of 21, which is greater than max allowed: 20",
        ),
        (
            {"messages": MESSAGES, "max_tokens": 60},
            400,
            "BadRequestError",
            "'max_tokens' or 'max_completion_tokens' is too large: 60.",
        ),
        (
            {"messages": [{"role": "user", "content": "word " * 80}]},
            400,
            "BadRequestError",
            "This model's maximum context length is 64 tokens. However, your request has",
        ),
        (
            {"messages": MESSAGES, "model": "other"},
            404,
            "NotFoundError",
            "The model `other` does not exist.",
        ),
        (
            {"messages": MESSAGES, "max_tokens": "lots"},
            400,
            "Bad Request",
            "'type': 'int_parsing', 'loc': ('body', 'max_tokens')",
        ),
        (
            {"messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]},
            400,
            "BadRequestError",
            '"auto" tool choice requires --enable-auto-tool-choice',
        ),
        (
            # ChatCompletionToolsParam.function is required: pydantic refuses before the handler.
            {"messages": MESSAGES, "tools": [{"type": "function"}]},
            400,
            "Bad Request",
            "'type': 'missing', 'loc': ('body', 'tools', 0, 'function')",
        ),
        (
            {"messages": [{"content": "x"}]},
            400,
            "Bad Request",
            "'loc': ('body', 'messages', 0, 'role'), 'msg': 'Field required'",
        ),
    ],
)
def test_chat_errors(body: dict[str, Any], status: int, error_type: str, message: str) -> None:
    error = chat_error(body)
    assert (error.status, error.error_type) == (status, error_type)
    assert message in error.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'loc': ('body', 'prompt'), 'msg': 'Field required'"),
        (
            {"prompt": "x", "logprobs": 21},
            "Requested sample logprobs of 21, which is greater than max allowed: 20",
        ),
        ({"prompt": "x", "logprobs": -1}, "`logprobs` must be a positive value."),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens must be at least 1, got 0."),
        ({"prompt": []}, "Prompt cannot be empty."),
        ({"prompt": [999999999]}, "out of vocabulary"),
        ({"prompt": {"a": 1}}, "'type': 'string_type'"),
        (
            {"prompt": "x", "min_tokens": 20, "max_tokens": 4},
            "min_tokens must be less than or equal to max_tokens=4, got 20.",
        ),
    ],
)
def test_completion_errors(body: dict[str, Any], message: str) -> None:
    error = completion_error(body)
    assert error.status == 400
    assert message in error.message


def test_echo_allows_zero_max_tokens() -> None:
    request = parse_completion_request({"prompt": "x", "echo": True, "max_tokens": 0}, SERVED)
    assert request.params.max_tokens == 0


@pytest.mark.parametrize(
    ("raw", "content_type", "fragment"),
    [
        (b"", "application/json", "'loc': ('body',), 'msg': 'Field required', 'input': None"),
        (b"{", "application/json", "'type': 'json_invalid'"),
        (b"[1]", "application/json", "'type': 'model_attributes_type'"),
        (b'{"prompt": "x"}', "text/plain", "Unsupported Media Type: Only 'application/json'"),
        (b"\xff\xfe", "application/json", "'type': 'json_invalid'"),
    ],
)
def test_body_decoding_errors(raw: bytes, content_type: str, fragment: str) -> None:
    with pytest.raises(APIError) as caught:
        decode_body(raw, content_type)
    assert caught.value.status == 400
    assert caught.value.error_type == "Bad Request"
    assert fragment in caught.value.message


def test_json_content_type_with_charset_is_accepted() -> None:
    assert decode_body(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}
