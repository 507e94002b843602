"""/v1/messages: bodies, event streams and errors per era, against vLLM's converter
(``anthropic/serving_messages.py`` 0.14, ``anthropic/serving.py`` 0.17-0.33; api-surface notes
section 3)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.anthropic import AnthropicError, error_body, stream_error
from dummy_vllm.protocol.errors import APIError, ValidationFailure, internal_error
from dummy_vllm.protocol.profiles import V0_14, V0_17, V0_20, V0_33, Profile
from dummy_vllm.protocol.requests import MESSAGES_ROUTE, ServedModel
from dummy_vllm.protocol.sse import DONE_EVENT, event_data, event_name
from dummy_vllm.settings import Limits, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel

TOKENIZER = Tokenizer()
HI = [{"role": "user", "content": "hi"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def model(profile: Profile, eos_rate: float = 0.0) -> SyntheticModel:
    served = ServedModel("m", "m", 2048, TOKENIZER, Limits(), profile=profile)
    return SyntheticModel(SyntheticSettings(eos_rate=eos_rate), served, seed=0)


def message(profile: Profile, **request: Any) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 4, "messages": HI, **request}
    return dict(json.loads(model(profile).respond(MESSAGES_ROUTE, body, "req1").body))


def stream(profile: Profile, **request: Any) -> list[tuple[str | None, Any]]:
    body = {"model": "m", "max_tokens": 4, "messages": HI, "stream": True, **request}
    plan = model(profile).respond(MESSAGES_ROUTE, body, None)
    out: list[tuple[str | None, Any]] = []
    for event in plan.events:
        if event.data == DONE_EVENT:
            out.append((None, "[DONE]"))
            continue
        name = event_name(event.data)
        payload = json.loads(event_data(event.data))
        # The event name repeats the payload's type.
        assert name == payload["type"]
        out.append((name, payload))
    return out


def test_body_drops_nulls_and_uses_the_chat_id() -> None:
    body = message(V0_17)
    assert list(body) == ["id", "type", "role", "content", "model", "stop_reason", "usage"]
    assert body["id"] == "chatcmpl-req1"
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "m")
    assert body["stop_reason"] == "max_tokens"
    assert body["content"] == [{"type": "text", "text": body["content"][0]["text"]}]
    # Prompt tokens are the chat template's: "<|user|>\nhi</s>\n<|assistant|>\n".
    assert body["usage"] == {"input_tokens": 7, "output_tokens": 4}


def test_empty_text_per_era() -> None:
    # An answer that is only EOS: 0.12-0.14 always open with a text block, 0.15-0.23 may send
    # none, 0.24+ add an empty one.
    request = {"model": "m", "max_tokens": 50, "messages": HI}
    served = {profile: model(profile, eos_rate=0.99) for profile in (V0_14, V0_17, V0_33)}
    bodies = {
        p: json.loads(m.respond(MESSAGES_ROUTE, request, None).body) for p, m in served.items()
    }
    assert bodies[V0_14]["content"] == [{"type": "text", "text": ""}]
    assert bodies[V0_17]["content"] == []
    assert bodies[V0_33]["content"] == [{"type": "text", "text": ""}]
    assert {body["stop_reason"] for body in bodies.values()} == {"end_turn"}


def test_stop_sequences_per_era() -> None:
    text = message(V0_17, max_tokens=20)["content"][0]["text"]
    word = text.split()[2]
    stopped = message(V0_17, max_tokens=20, stop_sequences=[word])
    assert stopped["stop_reason"] == "end_turn"
    assert "stop_sequence" not in stopped
    stopped = message(V0_33, max_tokens=20, stop_sequences=[word])
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", word)
    assert word not in stopped["content"][0]["text"]


def test_v014_stream_drops_the_finish_chunk_and_ends_with_done() -> None:
    events = stream(V0_14)
    names = [name for name, _ in events]
    # Four tokens; the fourth rides on the finish chunk, which 0.14 skips entirely.
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        None,
    ]
    start = events[0][1]
    assert start == {
        "type": "message_start",
        "message": {
            "id": start["message"]["id"],
            "content": [],
            "model": "m",
            "usage": {"input_tokens": 7, "output_tokens": 0},
        },
    }
    assert events[1][1] == {
        "type": "content_block_start",
        "content_block": {"type": "text", "text": ""},
        "index": 0,
    }
    assert list(events[2][1]) == ["type", "delta", "index"]
    assert events[2][1]["delta"]["type"] == "text_delta"
    assert events[6][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens"},
        "usage": {"input_tokens": 7, "output_tokens": 4},
    }
    assert events[7][1] == {"type": "message_stop"}


def test_v033_stream_has_every_token_and_a_full_message_start() -> None:
    events = stream(V0_33)
    names = [name for name, _ in events]
    assert names.count("content_block_delta") == 4
    assert None not in names
    assert list(events[0][1]["message"]) == [
        "id",
        "type",
        "role",
        "content",
        "model",
        "stop_reason",
        "stop_sequence",
        "usage",
    ]
    assert events[-2][1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    text = "".join(p["delta"]["text"] for n, p in events if n == "content_block_delta")
    assert text == message(V0_33)["content"][0]["text"]
    # 0.17-0.23: stop fields null in message_start, no type or role; [DONE] ends 0.17 only.
    assert list(stream(V0_20)[0][1]["message"]) == [
        "id",
        "content",
        "model",
        "stop_reason",
        "stop_sequence",
        "usage",
    ]
    assert stream(V0_17)[-1] == (None, "[DONE]")
    assert stream(V0_20)[-1][0] == "message_stop"


def test_tool_use_blocks() -> None:
    body = message(V0_33, tools=TOOLS, max_tokens=50)
    assert body["stop_reason"] == "tool_use"
    (block,) = body["content"]
    assert list(block) == ["type", "id", "name", "input"]
    assert block["name"] == "get_weather"
    assert set(block["input"]) == {"city"}
    assert block["id"].startswith("chatcmpl-tool-")
    assert message(V0_14, tools=TOOLS, max_tokens=50)["content"][0] == {"type": "text", "text": ""}
    events = stream(V0_33, tools=TOOLS, max_tokens=50)
    start = events[1][1]
    assert start["content_block"]["type"] == "tool_use"
    assert start["content_block"]["input"] == {}
    partial = "".join(p["delta"]["partial_json"] for n, p in events if n == "content_block_delta")
    assert json.loads(partial) == block["input"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    # With the tool's result in the last turn, or tool_choice none, the answer is text.
    result_turn = [
        *HI,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "id": "t1", "content": "sunny"}]},
    ]
    assert message(V0_33, tools=TOOLS, messages=result_turn)["content"][0]["type"] == "text"
    assert message(V0_33, tools=TOOLS, tool_choice={"type": "none"})["content"][0]["type"] == (
        "text"
    )


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ({"model": "m", "messages": HI}, ("body", "max_tokens"), "Field required"),
        (
            {"model": "", "messages": HI, "max_tokens": 1},
            ("body", "model"),
            "Value error, Model is required",
        ),
        (
            {"model": "m", "messages": HI, "max_tokens": 0},
            ("body", "max_tokens"),
            "Value error, max_tokens must be positive",
        ),
        (
            {"model": "m", "messages": [{"role": "system", "content": "x"}], "max_tokens": 1},
            ("body", "messages", 0, "role"),
            "Input should be 'user' or 'assistant'",
        ),
        # AnthropicToolChoice and AnthropicTool (0.33 protocol.py): typed before use.
        (
            {"model": "m", "messages": HI, "max_tokens": 1, "tool_choice": {"type": []}},
            ("body", "tool_choice", "type"),
            "Input should be 'auto', 'any', 'tool' or 'none'",
        ),
        (
            {"model": "m", "messages": HI, "max_tokens": 1, "tool_choice": {"type": "tool"}},
            ("body", "tool_choice"),
            "Value error, tool_choice.name is required when type is 'tool'",
        ),
        (
            {"model": "m", "messages": HI, "max_tokens": 1, "tools": [{"name": "w"}]},
            ("body", "tools", 0, "input_schema"),
            "Field required",
        ),
        (
            {"model": "m", "messages": HI, "max_tokens": 1, "stop_sequences": [1]},
            ("body", "stop_sequences", 0),
            "Input should be a valid string",
        ),
    ],
)
def test_validation_is_openai_shaped(body: dict[str, Any], loc: tuple[Any, ...], msg: str) -> None:
    with pytest.raises(ValidationFailure) as caught:
        model(V0_17).respond(MESSAGES_ROUTE, body, None)
    assert caught.value.errors[0]["loc"] == loc
    assert caught.value.errors[0]["msg"] == msg
    assert json.loads(caught.value.body(V0_17))["error"]["type"] == "Bad Request"


def test_handler_errors_are_translated_per_era() -> None:
    with pytest.raises(APIError) as caught:
        model(V0_17).respond(MESSAGES_ROUTE, {"model": "x", "messages": HI, "max_tokens": 1}, None)
    translated = AnthropicError(caught.value)
    assert translated.status == 404
    assert json.loads(translated.body(V0_17)) == {
        "type": "error",
        "error": {"type": "NotFoundError", "message": "The model `x` does not exist."},
    }
    with pytest.raises(APIError) as caught:
        model(V0_33).respond(MESSAGES_ROUTE, {"model": "x", "messages": HI, "max_tokens": 1}, None)
    error = json.loads(error_body(caught.value, V0_33))["error"]
    assert error["type"] == "not_found_error"
    assert re.match(r"The model `x` does not exist\. Valid aliases: m\.", error["message"])
    assert json.loads(error_body(internal_error("boom"), V0_33))["error"]["type"] == "api_error"


def test_in_stream_errors_per_era() -> None:
    failed = internal_error("boom")
    event, done = stream_error(failed, V0_17)
    assert event == (
        b'event: error\ndata: {"type":"error","error":{"type":"internal_error",'
        b'"message":"boom"}}\n\n'
    )
    assert done == DONE_EVENT
    (event,) = stream_error(failed, V0_33)
    assert b'"type":"api_error"' in event
