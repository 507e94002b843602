"""/v1/responses: bodies and event streams per era, against the shapes read in vLLM's sources
(``serving_responses.py``/``protocol.py`` 0.11, ``openai/responses/`` 0.33; api-surface notes
section 2), and validation as those sources do it."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.errors import APIError, ValidationFailure
from dummy_vllm.protocol.profiles import V0_10_1, V0_11, V0_14, V0_20, V0_23, V0_33, Profile
from dummy_vllm.protocol.requests import RESPONSES_ROUTE, ServedModel
from dummy_vllm.protocol.sse import event_data, event_name
from dummy_vllm.response_store import ResponseStore
from dummy_vllm.settings import LatencySettings, Limits, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel

TOKENIZER = Tokenizer()
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    }
]
# ResponsesResponse of 0.11 (protocol.py:1951), model_dump() order (notes 2.3).
BODY_V011 = [
    "id", "created_at", "incomplete_details", "instructions", "metadata", "model", "object",
    "output", "input_messages", "output_messages", "parallel_tool_calls", "temperature",
    "tool_choice", "tools", "top_p", "background", "max_output_tokens", "max_tool_calls",
    "previous_response_id", "prompt", "reasoning", "service_tier", "status", "text",
    "top_logprobs", "truncation", "usage", "user",
]  # fmt: skip
# 0.33 (openai/responses/protocol.py), ``metrics`` omitted when null.
BODY_V033 = [
    "id", "created_at", "incomplete_details", "instructions", "metadata", "model", "object",
    "output", "parallel_tool_calls", "temperature", "tool_choice", "tools", "top_p",
    "background", "max_output_tokens", "max_tool_calls", "previous_response_id", "prompt",
    "prompt_cache_options", "prompt_cache_key", "prompt_cache_retention", "reasoning",
    "safety_identifier", "service_tier", "status", "text", "top_logprobs", "truncation", "usage",
    "user", "presence_penalty", "frequency_penalty", "kv_transfer_params", "ec_transfer_params",
    "input_messages", "output_messages",
]  # fmt: skip
# openai 1.109's Response, as 0.11 re-validates the streamed response object (notes 2.4).
STREAM_RESPONSE_V011 = [
    "id", "created_at", "error", "incomplete_details", "instructions", "metadata", "model",
    "object", "output", "parallel_tool_calls", "temperature", "tool_choice", "tools", "top_p",
    "background", "conversation", "max_output_tokens", "max_tool_calls", "previous_response_id",
    "prompt", "prompt_cache_key", "reasoning", "safety_identifier", "service_tier", "status",
    "text", "top_logprobs", "truncation", "usage", "user", "input_messages", "output_messages",
]  # fmt: skip
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
TEXT_DONE = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


def model(
    profile: Profile = V0_11, eos_rate: float = 0.0, store: ResponseStore | None = None
) -> SyntheticModel:
    served = ServedModel("m", "m", 2048, TOKENIZER, Limits(), profile=profile)
    settings = SyntheticSettings(latency=LatencySettings(ttft=0.1, itl=0.01), eos_rate=eos_rate)
    return SyntheticModel(settings, served, seed=0, responses=store)


def body_of(profile: Profile = V0_11, **request: Any) -> dict[str, Any]:
    plan = model(profile).respond(RESPONSES_ROUTE, {"input": "hi", **request}, None)
    return dict(json.loads(plan.body))


def events_of(
    profile: Profile = V0_11, served: SyntheticModel | None = None, **request: Any
) -> list[tuple[str, dict[str, Any], float]]:
    """(name, payload, offset) of each streamed event, framing checked."""
    plan = (served or model(profile)).respond(
        RESPONSES_ROUTE, {"input": "hi", "stream": True, **request}, None
    )
    out = []
    for event in plan.events:
        assert event.data.endswith(b"\n\n")
        name = event_name(event.data)
        assert name is not None
        assert event.data.startswith(b"event: " + name.encode() + b"\ndata: {")
        out.append((name, json.loads(event_data(event.data)), event.offset))
    return out


# --- non-streamed -------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "keys"), [(V0_11, BODY_V011), (V0_33, BODY_V033)])
def test_body_fields_in_vllm_order(profile: Profile, keys: list[str]) -> None:
    body = body_of(profile, max_output_tokens=4, instructions="Be brief.", metadata={"a": "b"})
    assert list(body) == keys
    assert re.fullmatch(rf"resp_[0-9a-f]{{{profile.id_hex_digits}}}", body["id"])
    assert body["object"] == "response"
    assert body["model"] == "m"
    assert isinstance(body["created_at"], int)
    assert (body["instructions"], body["metadata"]) == ("Be brief.", {"a": "b"})
    assert (body["temperature"], body["top_p"], body["max_output_tokens"]) == (1.0, 1.0, 4)
    (item,) = body["output"]
    assert list(item) == ["id", "content", "role", "status", "type"]
    assert item["id"].startswith("msg_")
    assert item["content"][0] == {
        "annotations": [],
        "text": item["content"][0]["text"],
        "type": "output_text",
        "logprobs": None,
    }
    usage = body["usage"]
    assert list(usage) == [
        "input_tokens",
        "input_tokens_details",
        "output_tokens",
        "output_tokens_details",
        "total_tokens",
    ]
    assert usage["output_tokens"] == 4
    assert usage["total_tokens"] == usage["input_tokens"] + 4


def test_usage_details_per_era() -> None:
    assert body_of(V0_10_1)["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    assert body_of(V0_11)["usage"]["input_tokens_details"] == {"cached_tokens": 0}
    details = body_of(V0_33)["usage"]
    assert details["input_tokens_details"] == {
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "input_tokens_per_turn": [],
        "cached_tokens_per_turn": [],
    }
    assert details["output_tokens_details"] == {
        "reasoning_tokens": 0,
        "tool_output_tokens": 0,
        "output_tokens_per_turn": [],
        "tool_output_tokens_per_turn": [],
    }
    assert "incomplete_details" not in body_of(V0_10_1)


def test_max_output_tokens_cut_is_completed_in_011_incomplete_from_012() -> None:
    # 0.11 non-Harmony always says completed; 0.12+ say incomplete, 0.24+ mark the item too.
    assert body_of(V0_11, max_output_tokens=3)["status"] == "completed"
    body = body_of(V0_14, max_output_tokens=3)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "completed"
    assert body_of(V0_33, max_output_tokens=3)["output"][0]["status"] == "incomplete"


def test_input_items_and_instructions_make_the_prompt() -> None:
    one = body_of(input="hello there")
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "hello there"}]},
    ]
    # An input_text part counts as its text: the same prompt as the plain string.
    assert body_of(input=items)["usage"]["input_tokens"] == one["usage"]["input_tokens"]
    longer = body_of(input="hello there", instructions="Answer in French.")
    assert longer["usage"]["input_tokens"] > one["usage"]["input_tokens"]


# --- streamed -----------------------------------------------------------------------------------


def test_v011_stream_sequence_and_quirks() -> None:
    events = events_of(V0_11, max_output_tokens=3)
    names = [name for name, _, _ in events]
    assert names == [
        *TEXT_EVENTS,
        *["response.output_text.delta"] * 3,
        *TEXT_DONE,
        "response.completed",
    ]
    assert [payload["sequence_number"] for _, payload, _ in events] == list(range(len(events)))
    created = events[0][1]
    assert list(created) == ["response", "sequence_number", "type"]
    # Re-validated into openai's Response: its field order, a float created_at.
    assert list(created["response"]) == STREAM_RESPONSE_V011
    assert isinstance(created["response"]["created_at"], float)
    assert created["response"]["status"] == "in_progress"
    assert created["response"]["usage"] is None
    added = events[2][1]["item"]
    uuid.UUID(added["id"])  # str(uuid.uuid4()), dashes and all
    assert added == {
        "id": added["id"],
        "content": [],
        "role": "assistant",
        "status": "in_progress",
        "type": "message",
    }
    delta = events[4][1]
    assert list(delta) == [
        "content_index",
        "delta",
        "item_id",
        "logprobs",
        "output_index",
        "sequence_number",
        "type",
    ]
    assert delta["content_index"] == 0
    assert "".join(p["delta"] for n, p, _ in events if n.endswith("delta")) == events[7][1]["text"]
    done_item = events[9][1]["item"]
    assert done_item["summary"] == []
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["usage"]["output_tokens"] == 3
    assert completed["output"][0]["content"][0]["text"] == events[7][1]["text"]


def test_timing_created_at_once_deltas_on_token_offsets() -> None:
    events = events_of(V0_11, max_output_tokens=3)
    offsets = {name: offset for name, _, offset in events}
    assert offsets["response.created"] == offsets["response.in_progress"] == 0.0
    deltas = [offset for name, _, offset in events if name == "response.output_text.delta"]
    assert deltas == pytest.approx([0.1, 0.11, 0.12])
    assert offsets["response.completed"] == pytest.approx(0.12)


def test_the_eos_step_sends_an_empty_delta_up_to_020_only() -> None:
    for profile, empty in ((V0_20, True), (V0_23, False)):
        served = model(profile, eos_rate=0.1)
        events = events_of(profile, served, max_output_tokens=200, seed=0)
        deltas = [p["delta"] for n, p, _ in events if n == "response.output_text.delta"]
        assert len(deltas) > 2
        assert (deltas[-1] == "") is empty
        usage = events[-1][1]["response"]["usage"]
        # The EOS token counts either way.
        assert usage["output_tokens"] == len(deltas) + (not empty)
        assert events[-1][0] == "response.completed"


def test_v033_stream_ids_and_the_incomplete_terminal_event() -> None:
    events = events_of(V0_33, max_output_tokens=3)
    item_id = events[2][1]["item"]["id"]
    assert re.fullmatch(r"msg_[0-9a-f]{16}", item_id)
    assert isinstance(events[0][1]["response"]["created_at"], int)
    assert list(events[0][1]["response"]) == BODY_V033
    name, payload, _ = events[-1]
    assert name == "response.incomplete"
    assert payload["response"]["status"] == "incomplete"
    # The streamed items, reused.
    assert payload["response"]["output"][0]["id"] == item_id
    assert payload["response"]["output"][0]["status"] == "incomplete"
    assert "summary" not in events[-2][1]["item"]


def test_item_ids_per_era() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", events_of(V0_20)[2][1]["item"]["id"])
    # Before 0.24 the final response names its items afresh.
    events = events_of(V0_14, max_output_tokens=2)
    assert events[-1][1]["response"]["output"][0]["id"].startswith("msg_")
    assert events[-1][1]["response"]["output"][0]["id"] != events[2][1]["item"]["id"]


# --- function calls -----------------------------------------------------------------------------


def test_function_calls_per_era() -> None:
    body = body_of(V0_33, input="weather in Paris?", tools=TOOLS)
    (call,) = body["output"]
    assert list(call) == ["arguments", "call_id", "name", "type", "id", "namespace", "status"]
    assert call["type"] == "function_call"
    assert call["name"] == "get_weather"
    assert set(json.loads(call["arguments"])) == {"city"}
    assert call["call_id"].startswith("chatcmpl-tool-")
    assert call["id"].startswith("fc_")
    assert body["usage"]["output_tokens"] == len(TOKENIZER.encode(call["arguments"]))
    assert "namespace" not in body_of(V0_14, tools=TOOLS)["output"][0]
    # After the tool's result the model answers in text; tool_choice "none" never calls.
    turn = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    assert body_of(V0_33, input=turn, tools=TOOLS)["output"][0]["type"] == "message"
    assert body_of(V0_33, tools=TOOLS, tool_choice="none")["output"][0]["type"] == "message"
    forced = {"type": "function", "name": "get_weather"}
    assert body_of(V0_33, input=turn, tools=TOOLS, tool_choice=forced)["output"][0]["name"] == (
        "get_weather"
    )


def test_function_call_stream_events() -> None:
    events = events_of(V0_33, input="weather?", tools=TOOLS)
    names = [name for name, _, _ in events]
    deltas = names.count("response.function_call_arguments.delta")
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * deltas,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2][1]["item"]
    assert (added["arguments"], added["status"]) == ("", "in_progress")
    done = events[-3][1]
    assert list(done) == [
        "arguments",
        "item_id",
        "output_index",
        "sequence_number",
        "type",
        "name",
    ]
    joined = "".join(p["delta"] for n, p, _ in events if n.endswith("arguments.delta"))
    assert done["arguments"] == joined
    assert json.loads(joined)
    assert events[-2][1]["item"]["arguments"] == joined


# --- validation and the store -------------------------------------------------------------------


def error(profile: Profile = V0_11, **request: Any) -> tuple[APIError, dict[str, Any]]:
    with pytest.raises(APIError) as caught:
        model(profile).respond(RESPONSES_ROUTE, request, None)
    return caught.value, json.loads(caught.value.body(profile))["error"]


def test_validation_and_handler_errors() -> None:
    with pytest.raises(ValidationFailure):
        model().respond(RESPONSES_ROUTE, {}, None)
    exc, envelope = error(input="hi", prompt={"id": "p"})
    assert exc.status == 400
    assert "prompt template is not supported" in envelope["message"]
    _, envelope = error(input="hi", background=True, store=False)
    assert "background can only be used when `store` is true" in envelope["message"]
    _, envelope = error(input="hi", tools=TOOLS)
    assert envelope["message"] == "Tool use is not supported in Responses API without Harmony None"
    # Named tool choices must name a tool.
    _, envelope = error(
        V0_33, input="hi", tools=TOOLS, tool_choice={"type": "function", "name": "nope"}
    )
    assert envelope["message"] == "Tool choice 'function' not found in 'tools' parameter."
    _, envelope = error(V0_33, input="hi", tool_choice="required")
    assert envelope["message"] == (
        "Tool choice 'required' must be specified with 'tools' parameter."
    )


def test_without_the_store_background_is_refused_and_ids_are_unknown() -> None:
    exc, envelope = error(input="hi", background=True)
    assert exc.status == 400
    assert envelope["type"] == "invalid_request_error"
    assert "VLLM_ENABLE_RESPONSES_API_STORE=1" in envelope["message"]
    exc, envelope = error(V0_33, input="hi", previous_response_id="resp_x")
    assert exc.status == 404
    assert envelope == {
        "message": "Response with id 'resp_x' not found.",
        "type": "invalid_request_error",
        "param": "response_id",
        "code": 404,
    }
    assert error(input="hi", previous_response_id="resp_x")[1]["param"] is None


def test_the_store_keeps_answers_and_conversations() -> None:
    store = ResponseStore(enabled=True)
    served = model(store=store)
    ask = {"max_output_tokens": 5}
    first = json.loads(served.respond(RESPONSES_ROUTE, {"input": "hi", **ask}, None).body)
    stored = store.get(first["id"])
    assert stored is not None
    assert json.loads(stored.body) == first
    follow_up = {"input": "and then?", "previous_response_id": first["id"], **ask}
    second = json.loads(served.respond(RESPONSES_ROUTE, follow_up, None).body)
    alone = json.loads(served.respond(RESPONSES_ROUTE, {"input": "and then?", **ask}, None).body)
    # The earlier turn and its answer are part of the prompt.
    assert second["usage"]["input_tokens"] > alone["usage"]["input_tokens"]
    assert second["previous_response_id"] == first["id"]
    assert store.get(alone["id"]) is not None
    assert (
        store.get(
            json.loads(served.respond(RESPONSES_ROUTE, {"input": "x", "store": False}, None).body)[
                "id"
            ]
        )
        is None
    )
    bounded = ResponseStore(enabled=True, capacity=2)
    for name in ("a", "b", "c"):
        bounded.put(name, b"{}", [])
    assert [bounded.get(name) is not None for name in ("a", "b", "c")] == [False, True, True]
