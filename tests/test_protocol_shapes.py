"""Bodies and events built by the protocol functions, compared with real vLLM 0.11-era captures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.errors import APIError, bad_request, model_not_found
from dummy_vllm.protocol.profiles import DEFAULT_PROFILE
from dummy_vllm.protocol.requests import (
    ServedModel,
    decode_body,
    parse_chat_request,
    parse_completion_request,
)
from dummy_vllm.protocol.responses import dumps, models_body
from dummy_vllm.protocol.sse import DONE_EVENT
from dummy_vllm.settings import Limits, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel

from .conftest import CAPTURES
from .shapes import capture_events, shape, sse_events

TOKENIZER = Tokenizer()
SERVED = ServedModel("m", "m", 2048, TOKENIZER, Limits())
MODEL = SyntheticModel(SyntheticSettings(), SERVED, seed=0)


def load(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text())


def chat(body: dict[str, Any]) -> tuple[Any, Any]:
    request = parse_chat_request({"messages": [{"role": "user", "content": "hi"}], **body}, SERVED)
    return request, MODEL.generate([request.prompt], request.params)


def completion(body: dict[str, Any]) -> tuple[Any, Any]:
    request = parse_completion_request({"prompt": "Hello there", **body}, SERVED)
    return request, MODEL.generate(request.prompts, request.params)


def chat_stream(body: dict[str, Any], request_id: str | None = None) -> list[tuple[float, bytes]]:
    """(due offset, bytes) of every event of a streamed chat answer to ``body``."""
    request, _ = chat({**body, "stream": True})
    return [(event.offset, event.data) for event in MODEL.chat_plan(request, request_id).events]


def completion_stream(body: dict[str, Any]) -> list[tuple[float, bytes]]:
    request, _ = completion({**body, "stream": True})
    return [(event.offset, event.data) for event in MODEL.completion_plan(request, None).events]


def payloads(events: list[tuple[float, bytes]]) -> list[dict[str, Any]]:
    """The JSON events, [DONE] checked and left out."""
    raw = sse_events(b"".join(data for _, data in events))
    assert raw[-1] == b"[DONE]"
    return [json.loads(event) for event in raw[:-1]]


def test_chat_body_matches_capture_field_for_field() -> None:
    request, _ = chat({"max_tokens": 5})
    body = json.loads(MODEL.chat_plan(request, None).body)
    assert shape(body) == shape(load("v0.11_chat-nonstream_tinyllama.json"))
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["id"].startswith("chatcmpl-")
    assert len(body["id"]) == len("chatcmpl-") + 32


def test_completion_body_matches_capture_field_for_field() -> None:
    request, _ = completion({"max_tokens": 16})
    body = json.loads(MODEL.completion_plan(request, None).body)
    captured = load("v0.20.1_completions-nonstream_deepseek-v4.json")
    captured["system_fingerprint"] = None  # 0.20.1 fills it; 0.11 sends null
    assert shape(body) == shape(captured)
    assert list(body["usage"]) == [
        "prompt_tokens",
        "total_tokens",
        "completion_tokens",
        "prompt_tokens_details",
    ]


@pytest.mark.parametrize("route", ["chat", "completion"])
def test_bodies_of_several_choices_are_one_json_document_in_field_order(route: str) -> None:
    """Several choices are encoded one at a time and spliced into the body: the result is the
    body one encoding of the whole would give, whatever the model name holds."""
    tricky = ServedModel('m "choices":[] x', "m", 2048, TOKENIZER, Limits())
    model = SyntheticModel(SyntheticSettings(), tricky, seed=0)
    body = {"n": 3, "max_tokens": 4, "logprobs": 2 if route == "completion" else True}
    if route == "chat":
        request = parse_chat_request(
            {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2, **body}, tricky
        )
        raw = model.chat_plan(request, None).body
        keys = DEFAULT_PROFILE.chat_body_keys
    else:
        request = parse_completion_request({"prompt": "Hello", **body}, tricky)
        raw = model.completion_plan(request, None).body
        keys = DEFAULT_PROFILE.completion_body_keys
    decoded = json.loads(raw)
    assert list(decoded) == list(keys)
    assert decoded["model"] == 'm "choices":[] x'
    assert [choice["index"] for choice in decoded["choices"]] == [0, 1, 2]
    assert raw == dumps(decoded)


def test_chat_stream_events_match_capture() -> None:
    plan = chat_stream({"max_tokens": 4})
    ours = payloads(plan)
    captured = capture_events(CAPTURES / "v0.11_chat-stream_tinyllama_readme-elided.sse")
    assert shape(ours[0]) == shape(captured[0])  # role event
    assert shape(ours[1]) == shape(captured[1])  # content event
    assert shape(ours[-1]) == shape(captured[-1])  # finish event
    assert ours[-1]["choices"][0]["finish_reason"] == "length"
    # One event per token: the role event carries none.
    assert len(ours) - 1 == 4
    # Role event is due together with the first token, never at t=0 before it.
    assert plan[0][0] == plan[1][0]


def test_chat_usage_event_matches_capture() -> None:
    ours = payloads(chat_stream({"max_tokens": 3, "stream_options": {"include_usage": True}}))[-1]
    captured = capture_events(CAPTURES / "v0.23_chat-stream-include-usage_gemma4.sse")[-1]
    del captured["system_fingerprint"]  # 0.20.1+ only
    assert shape(ours) == shape(captured)
    assert ours["usage"]["completion_tokens"] == 3
    assert ours["usage"]["total_tokens"] == ours["usage"]["prompt_tokens"] + 3


def test_completion_stream_events_match_capture() -> None:
    _, generation = completion({"max_tokens": 3, "stream": True})
    ours = payloads(completion_stream({"max_tokens": 3}))
    captured = capture_events(CAPTURES / "v0.2x_completions-stream-tail_qwen25.sse")
    assert len(ours) == 3
    # 0.11.0 sends the prompt's ids on a choice's first chunk (vLLM issue #27336).
    assert ours[0]["choices"][0]["prompt_token_ids"] == TOKENIZER.encode("Hello there")
    ours[0]["choices"][0]["prompt_token_ids"] = None
    assert shape(ours[0]) == shape(captured[0])
    assert shape(ours[-1]) == shape(captured[-1])
    assert [event["choices"][0]["finish_reason"] for event in ours] == [None, None, "length"]
    text = "".join(event["choices"][0]["text"] for event in ours)
    assert text == generation.choices[0].text(TOKENIZER)


def test_stream_event_framing_is_compact_data_lines() -> None:
    for _, data in chat_stream({"max_tokens": 2}, request_id="abc"):
        assert data.startswith(b"data: ")
        assert data.endswith(b"\n\n")
        assert data.count(b"\n") == 2
        if data != DONE_EVENT:
            payload = json.loads(data[6:])
            assert payload["id"] == "chatcmpl-abc"
            assert (
                data[6:-2]
                == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            )


def test_n_greater_than_one_interleaves_distinct_indexes() -> None:
    _, generation = chat({"max_tokens": 3, "n": 3, "stream": True})
    events = payloads(chat_stream({"max_tokens": 3, "n": 3}))
    indexes = [event["choices"][0]["index"] for event in events]
    assert indexes[:3] == [0, 1, 2]  # role events first
    assert "role" in events[0]["choices"][0]["delta"]
    assert indexes[3:] == [0, 1, 2] * 3
    texts = {generation.choices[i].text(TOKENIZER) for i in range(3)}
    assert len(texts) == 3  # distinct samples


def test_completion_multiple_prompts_index_prompt_major() -> None:
    _request, generation = completion({"prompt": ["a b", "c d e"], "n": 2, "max_tokens": 2})
    assert [choice.index for choice in generation.choices] == [0, 1, 2, 3]
    assert generation.prompt_tokens == len(TOKENIZER.encode("a b")) + len(TOKENIZER.encode("c d e"))


def test_continuous_usage_counts_per_choice() -> None:
    options = {"include_usage": True, "continuous_usage_stats": True}
    events = payloads(chat_stream({"max_tokens": 3, "stream_options": options}))
    assert [event["usage"]["completion_tokens"] for event in events] == [0, 1, 2, 3, 3]
    assert events[-1]["choices"] == []


def test_models_body_matches_capture() -> None:
    body = json.loads(models_body("m", "/models/m", 2048, 1700000000, 32))
    assert shape(body) == shape(load("v0.11_models_tinyllama.json"))
    assert body["data"][0]["root"] == "/models/m"


def test_error_envelope_matches_capture() -> None:
    captured = [
        json.loads(line)
        for line in (CAPTURES / "v0.2x_errors_nested-shape_rerank.jsonl").read_text().splitlines()
    ]
    assert (
        json.loads(model_not_found("no-such-model", ("m",), DEFAULT_PROFILE).body()) == captured[2]
    )
    assert shape(json.loads(bad_request("x").body())) == shape(captured[1])


def test_malformed_json_is_reported_like_fastapi() -> None:
    with pytest.raises(APIError) as caught:
        decode_body(b'{"model": "reranker", "query": "x", "documents": [1], }', "application/json")
    captured = json.loads(
        (CAPTURES / "v0.2x_errors_nested-shape_rerank.jsonl").read_text().splitlines()[4]
    )
    error = json.loads(caught.value.body())["error"]
    assert error["type"] == captured["error"]["type"] == "Bad Request"
    assert error["code"] == 400
    assert error["message"].startswith("1 validation error:\n  {'type': 'json_invalid'")
    assert (
        "'ctx': {'error': 'Expecting property name enclosed in double quotes'}" in error["message"]
    )


def test_in_stream_error_uses_json_dumps_spacing() -> None:
    event = bad_request("boom").stream_event()
    assert event == (
        b'data: {"error": {"message": "boom", "type": "BadRequestError", '
        b'"param": null, "code": 400}}\n\n'
    )
