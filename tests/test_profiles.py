"""Every era difference of the wire contract, each against a real capture of that era where one
exists, otherwise against the vLLM source named in the test (see ``dummy_vllm/protocol/
profiles.py`` for where each field list was read)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.errors import APIError, ValidationFailure, model_not_found
from dummy_vllm.protocol.profiles import (
    PROFILES,
    V0_8,
    V0_10_1,
    V0_11,
    V0_14,
    V0_17,
    V0_20,
    V0_23,
    V0_33,
    Profile,
    UnknownVersion,
    profile_for,
)
from dummy_vllm.protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE, ServedModel
from dummy_vllm.settings import Limits, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel

from .conftest import CAPTURES
from .shapes import capture_events, shape, sse_events

TOKENIZER = Tokenizer()
MESSAGES = [{"role": "user", "content": "hi"}]


def model(profile: Profile, max_model_len: int = 2048) -> SyntheticModel:
    served = ServedModel(
        "m", "m", max_model_len, TOKENIZER, Limits(), profile=profile, version=profile.version
    )
    return SyntheticModel(SyntheticSettings(), served, seed=0)


def respond(profile: Profile, route: str, body: dict[str, Any], max_model_len: int = 2048) -> Any:
    return model(profile, max_model_len).respond(route, body, None)


def chat_body(profile: Profile, **body: Any) -> dict[str, Any]:
    plan = respond(profile, CHAT_ROUTE, {"messages": MESSAGES, "max_tokens": 4, **body})
    return dict(json.loads(plan.body))


def completion_body(profile: Profile, **body: Any) -> dict[str, Any]:
    plan = respond(profile, COMPLETIONS_ROUTE, {"prompt": "Hello there", **body})
    return dict(json.loads(plan.body))


def stream(profile: Profile, route: str, **body: Any) -> list[dict[str, Any]]:
    """The JSON events of a streamed answer, [DONE] checked and left out."""
    request = {"messages": MESSAGES} if route == CHAT_ROUTE else {"prompt": "Hello there"}
    plan = respond(profile, route, {**request, "max_tokens": 3, "stream": True, **body})
    events = sse_events(b"".join(event.data for event in plan.events))
    assert events[-1] == b"[DONE]"
    return [json.loads(event) for event in events[:-1]]


def error_of(profile: Profile, route: str, body: dict[str, Any], max_model_len: int = 64) -> Any:
    with pytest.raises(APIError) as caught:
        respond(profile, route, body, max_model_len)
    return json.loads(caught.value.body(profile))


def load(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text())


# --- versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "era", "reported"),
    [
        ("0.8", "0.8", "0.8.5"),
        ("0.11", "0.11", "0.11.0"),
        ("0.20", "0.20", "0.20.0"),
        ("0.23", "0.23", "0.23.0"),
        ("0.33", "0.33", "0.33.0"),
        ("0.33.1", "0.33", "0.33.1"),
        ("0.10.0", "0.8", "0.10.0"),
        ("0.12.0", "0.14", "0.12.0"),
        ("0.19", "0.20", "0.19.0"),
        ("0.20.1rc1.dev135+ge786a2dfc", "0.20", "0.20.1rc1.dev135+ge786a2dfc"),
    ],
)
def test_versions_map_to_their_era(given: str, era: str, reported: str) -> None:
    profile, version = profile_for(given)
    assert (profile.name, version) == (era, reported)


@pytest.mark.parametrize("given", ["0.7.3", "latest", "", "v0.11"])
def test_unknown_versions_are_refused(given: str) -> None:
    with pytest.raises(UnknownVersion):
        profile_for(given)


def test_eras_are_in_release_order() -> None:
    firsts = [profile_for(profile.first_release)[0] for profile in PROFILES]
    assert firsts == list(PROFILES)


# --- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "digits"), [(V0_8, 32), (V0_11, 32), (V0_14, 16), (V0_33, 16)])
def test_random_ids_are_32_hex_until_0_12_then_16(profile: Profile, digits: int) -> None:
    # vllm/utils random_uuid(): uuid4().hex (<= 0.11), 64-bit hex from 0.12.0.
    for body in (chat_body(profile), completion_body(profile)):
        assert re.fullmatch(rf"(chatcmpl|cmpl)-[0-9a-f]{{{digits}}}", body["id"])


# --- chat, non-streamed -----------------------------------------------------------------------


def test_chat_body_of_0_11_matches_its_capture() -> None:
    assert shape(chat_body(V0_11)) == shape(load("v0.11_chat-nonstream_tinyllama.json"))


@pytest.mark.parametrize(
    ("profile", "message_keys"),
    [
        (V0_8, ["role", "reasoning_content", "content", "tool_calls"]),
        (V0_11, [*["role", "content", "refusal", "annotations", "audio", "function_call"],
                 "tool_calls", "reasoning_content"]),
        # 0.12-0.14: a validator copies reasoning into reasoning_content, both always present.
        (V0_14, [*["role", "content", "refusal", "annotations", "audio", "function_call"],
                 "tool_calls", "reasoning", "reasoning_content"]),
        (V0_17, [*["role", "content", "refusal", "annotations", "audio", "function_call"],
                 "tool_calls", "reasoning"]),
        # 0.33 ChatMessage._serialize drops an empty tool_calls.
        (V0_33, ["role", "content", "refusal", "annotations", "audio", "function_call",
                 "reasoning"]),
    ],
)  # fmt: skip
def test_chat_message_keys_by_era(profile: Profile, message_keys: list[str]) -> None:
    message = chat_body(profile)["choices"][0]["message"]
    assert list(message) == message_keys
    if "tool_calls" in message:
        assert message["tool_calls"] == []


def test_chat_body_keys_of_0_8_and_0_33() -> None:
    # 0.8.5 protocol.py ChatCompletionResponse; 0.33 chat_completion/protocol.py.
    assert list(chat_body(V0_8)) == [
        *["id", "object", "created", "model", "choices", "usage", "prompt_logprobs"]
    ]
    body = chat_body(V0_33)
    assert list(body)[-5:] == [
        "prompt_token_ids",
        "prompt_text",
        "kv_transfer_params",
        "ec_transfer_params",
        "metrics",
    ]
    assert list(body["choices"][0])[-3:] == ["token_ids", "routed_experts", "weight_versions"]
    assert list(body["usage"]) == [
        *["prompt_tokens", "total_tokens", "completion_tokens"],
        *["prompt_tokens_details", "completion_tokens_details"],
    ]


@pytest.mark.parametrize("profile", [V0_8, V0_11, V0_20])
def test_no_fingerprint_before_0_21(profile: Profile) -> None:
    body = chat_body(profile)
    assert body.get("system_fingerprint") is None


@pytest.mark.parametrize("profile", [V0_23, V0_33])
def test_fingerprint_from_0_21_is_vllm_version_and_a_stable_hash(profile: Profile) -> None:
    # serve/utils/fingerprint.py, --fingerprint-mode full, one GPU: vllm-<version>-<hash8>.
    first, second = chat_body(profile), completion_body(profile)
    pattern = rf"vllm-{re.escape(profile.version)}-[0-9a-f]{{8}}"
    assert re.fullmatch(pattern, first["system_fingerprint"])
    assert second["system_fingerprint"] == first["system_fingerprint"]


# --- completions, non-streamed ----------------------------------------------------------------


def test_completion_body_of_0_8_matches_the_pre_0_10_capture() -> None:
    assert shape(completion_body(V0_8, max_tokens=5)) == shape(
        load("v0.6_completions-nonstream_llama31.json")
    )


def test_completion_body_of_0_20_matches_its_capture_but_the_fingerprint() -> None:
    captured = load("v0.20.1_completions-nonstream_deepseek-v4.json")
    # That capture is a dev build between 0.20 and 0.21; released 0.20.x send null.
    captured["system_fingerprint"] = None
    assert shape(completion_body(V0_20)) == shape(captured)


def test_completion_body_of_0_33_names_its_new_fields() -> None:
    # 0.33 entrypoints/openai/completion/protocol.py CompletionResponse / ...Choice.
    body = completion_body(V0_33)
    assert list(body)[-3:] == ["kv_transfer_params", "ec_transfer_params", "metrics"]
    assert list(body["choices"][0])[-2:] == ["routed_experts", "weight_versions"]


# --- chat streams -----------------------------------------------------------------------------


def test_chat_stream_of_0_8_matches_its_capture() -> None:
    ours = stream(V0_8, CHAT_ROUTE)
    captured = capture_events(CAPTURES / "v0.8_chat-stream_llama31_partial.sse")
    assert shape(ours[0]) == shape(captured[0])  # role: no prompt_token_ids
    assert shape(ours[1]) == shape(captured[1])  # content: no token_ids


def test_chat_stream_of_0_23_matches_its_capture_event_for_event() -> None:
    ours = stream(V0_23, CHAT_ROUTE, stream_options={"include_usage": True})
    captured = capture_events(CAPTURES / "v0.23_chat-stream-include-usage_gemma4.sse")
    assert shape(ours[0]) == shape(captured[0])  # role: prompt_token_ids, prompt_text
    assert shape(ours[1]) == shape(captured[1])
    finish = dict(captured[-2])
    finish["choices"] = [{**finish["choices"][0], "stop_reason": None}]  # a stop token id there
    assert shape(ours[-2]) == shape(finish)
    assert shape(ours[-1]) == shape(captured[-1])  # usage event with the fingerprint
    assert ours[-1]["system_fingerprint"].startswith("vllm-0.23.0-")


def test_fingerprint_rides_the_finish_chunk_without_a_usage_event() -> None:
    # 0.23 serving_chat: chunk.system_fingerprint set when not include_usage and finishing.
    events = stream(V0_23, CHAT_ROUTE)
    assert "system_fingerprint" in events[-1]
    assert all("system_fingerprint" not in event for event in events[:-1])


def test_chat_deltas_of_0_14_carry_a_null_reasoning_content() -> None:
    # 0.12-0.14 DeltaMessage validator marks reasoning_content set (vllm issue #31319).
    events = stream(V0_14, CHAT_ROUTE)
    assert events[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "reasoning_content": None,
    }
    assert all("reasoning_content" in event["choices"][0]["delta"] for event in events)
    assert all(
        "reasoning_content" not in e["choices"][0]["delta"] for e in stream(V0_17, CHAT_ROUTE)
    )


def test_chat_chunks_of_0_33() -> None:
    # 0.33 chat_completion/serving.py:780-835: kv_transfer_params on token chunks (not the role
    # chunk), weight_versions on the finish choice; continuous usage names the details key.
    options = {"include_usage": True, "continuous_usage_stats": True}
    events = stream(V0_33, CHAT_ROUTE, stream_options=options)
    role, content, finish, usage = events[0], events[1], events[-2], events[-1]
    assert list(role) == [
        *["id", "object", "created", "model", "choices", "usage"],
        *["prompt_token_ids", "prompt_text"],
    ]
    assert list(content)[-1] == "kv_transfer_params"
    assert list(finish["choices"][0])[-2:] == ["token_ids", "weight_versions"]
    assert content["usage"]["completion_tokens_details"] is None
    assert list(usage) == [*["id", "object", "created", "model", "choices", "usage"],
                           "system_fingerprint"]  # fmt: skip


@pytest.mark.parametrize(
    ("profile", "usage_event"), [(V0_11, True), (V0_17, True), (V0_20, False), (V0_33, False)]
)
def test_empty_stream_options_get_a_usage_event_only_until_0_18(
    profile: Profile, usage_event: bool
) -> None:
    # StreamOptions.include_usage defaults to True up to 0.17.0, False from 0.18.0.
    for route in (CHAT_ROUTE, COMPLETIONS_ROUTE):
        events = stream(profile, route, stream_options={})
        assert (events[-1]["choices"] == []) is usage_event


# --- completions streams ----------------------------------------------------------------------


def test_completion_chunks_carry_usage_null_until_0_21() -> None:
    captured = capture_events(CAPTURES / "v0.2x_completions-stream-tail_qwen25.sse")
    ours = stream(V0_20, COMPLETIONS_ROUTE)
    assert shape(ours[-1]) == shape(captured[-1])
    assert all(event["usage"] is None for event in ours)
    # 0.21.0 serialises completions chunks with exclude_unset=True.
    assert all("usage" not in event for event in stream(V0_23, COMPLETIONS_ROUTE))


def test_completion_chunks_of_0_8_have_no_token_id_fields() -> None:
    choice = stream(V0_8, COMPLETIONS_ROUTE)[0]["choices"][0]
    assert list(choice) == ["index", "text", "logprobs", "finish_reason", "stop_reason"]


def test_completion_chunks_of_0_33() -> None:
    # 0.33 completion/serving.py:438-466: weight_versions and kv_transfer_params on every chunk.
    for event in stream(V0_33, COMPLETIONS_ROUTE):
        assert list(event)[-1] == "kv_transfer_params"
        assert list(event["choices"][0])[-1] == "weight_versions"


def test_only_0_11_leaks_prompt_ids_on_the_first_completions_chunk() -> None:
    # 0.11.0 serving_completion.py:406 (vllm issue #27336, fixed by 0.12).
    prompt_ids = TOKENIZER.encode("Hello there")
    assert stream(V0_11, COMPLETIONS_ROUTE)[0]["choices"][0]["prompt_token_ids"] == prompt_ids
    assert stream(V0_14, COMPLETIONS_ROUTE)[0]["choices"][0]["prompt_token_ids"] is None


# --- errors -----------------------------------------------------------------------------------


def test_errors_are_flat_until_0_10_1() -> None:
    captured = load("pre-0.10.1_error-404_oldshape.json")
    error = model_not_found("Qwen1.5-14B-Chat-GPTQ-Int8", ("m",), V0_8)
    assert json.loads(error.body(V0_8)) == captured
    assert "error" in json.loads(error.body(V0_10_1))


def test_unknown_model_names_its_param_from_0_14_and_the_aliases_in_0_33() -> None:
    body = {"model": "nope", "prompt": "hi"}
    assert error_of(V0_11, COMPLETIONS_ROUTE, body)["error"]["param"] is None
    assert error_of(V0_14, COMPLETIONS_ROUTE, body)["error"]["param"] == "model"
    latest = error_of(V0_33, COMPLETIONS_ROUTE, body)["error"]
    assert latest["message"] == "The model `nope` does not exist. Valid aliases: m."
    assert latest["param"] == "model"


def test_validation_errors_by_era() -> None:
    failure = ValidationFailure(
        [{"type": "missing", "loc": ("body", "messages"), "msg": "Field required", "input": {}}]
    )
    flat = json.loads(failure.body(V0_8))
    assert flat["type"] == "BadRequestError"
    nested = json.loads(failure.body(V0_23))["error"]
    assert (nested["type"], nested["param"]) == ("Bad Request", None)
    assert "'loc': ('body', 'messages')" in nested["message"]
    # 0.33 serve/exception_handling/handlers/validation.py: param and message use dotted locs.
    latest = json.loads(failure.body(V0_33))["error"]
    assert latest["param"] == "body.messages"
    assert "'loc': 'body.messages'" in latest["message"]


def test_sampling_errors_name_their_parameter_from_0_14() -> None:
    body = {"prompt": "hi", "temperature": -1}
    assert error_of(V0_11, COMPLETIONS_ROUTE, body)["error"] == {
        "message": "temperature must be non-negative, got -1.0.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    assert error_of(V0_14, COMPLETIONS_ROUTE, body)["error"] == {
        "message": "temperature must be non-negative, got -1.0. (parameter=temperature, "
        "value=-1.0)",
        "type": "BadRequestError",
        "param": "temperature",
        "code": 400,
    }
    # 0.33 sampling_params.py bounds temperature at 2.
    hot = {"prompt": "hi", "temperature": 2.5}
    assert error_of(V0_33, COMPLETIONS_ROUTE, hot)["error"]["param"] == "temperature"
    assert respond(V0_23, COMPLETIONS_ROUTE, hot).completion_tokens == 16


def test_best_of_is_refused_until_0_12_then_ignored() -> None:
    body = {"prompt": "hi", "best_of": 2}
    assert error_of(V0_11, COMPLETIONS_ROUTE, body)["error"]["message"] == (
        "vLLM V1 does not yet support best_of."
    )
    assert respond(V0_14, COMPLETIONS_ROUTE, {**body, "best_of": "not even a number"})


def test_in_stream_errors_are_compact_only_for_0_33_chat() -> None:
    error = APIError(500, "boom", "InternalServerError")
    assert error.stream_event(V0_11, chat=True).startswith(b'data: {"error": {"message": ')
    assert error.stream_event(V0_33, chat=False).startswith(b'data: {"error": {"message": ')
    assert error.stream_event(V0_33, chat=True).startswith(b'data: {"error":{"message":')
    assert error.stream_event(V0_8).startswith(b'data: {"error": {"object": "error", ')


# --- context length ---------------------------------------------------------------------------

LONG_PROMPT = "word " * 80  # well over the 64-token context these tests serve


def context_error(profile: Profile, route: str, **body: Any) -> dict[str, Any]:
    request = (
        {"messages": [{"role": "user", "content": LONG_PROMPT}]}
        if route == CHAT_ROUTE
        else {"prompt": LONG_PROMPT}
    )
    envelope = error_of(profile, route, {**request, **body})
    return dict(envelope.get("error", envelope))


def test_context_errors_of_0_8() -> None:
    # 0.8.5 serving_engine.py:245-266.
    error = context_error(V0_8, COMPLETIONS_ROUTE, max_tokens=10)
    assert re.fullmatch(
        r"This model's maximum context length is 64 tokens\. However, you requested \d+ tokens "
        r"\(\d+ in the messages, 10 in the completion\)\. Please reduce the length of the "
        r"messages or completion\.",
        error["message"],
    )


def test_context_errors_of_0_11() -> None:
    # Chat: serving_engine._validate_input wrapped in f"{e} {e.__cause__}" (real bodies end
    # in " None"); completions: entrypoints/renderer.py reports L - max_tokens as the context.
    chat = context_error(V0_11, CHAT_ROUTE)
    assert chat["message"].startswith(
        "This model's maximum context length is 64 tokens. However, your request has "
    )
    assert chat["message"].endswith("Please reduce the length of the input messages. None")
    completion = context_error(V0_11, COMPLETIONS_ROUTE, max_tokens=10)
    assert completion["message"].startswith("This model's maximum context length is 54 tokens.")
    assert completion["param"] is None


def test_context_errors_of_0_14_carry_the_parameter() -> None:
    chat = context_error(V0_14, CHAT_ROUTE)
    assert re.search(r"\(parameter=input_tokens, value=\d+\) None$", chat["message"])
    assert chat["param"] is None  # lost to the f-string wrapper
    completion = context_error(V0_14, COMPLETIONS_ROUTE, max_tokens=100)
    assert completion["message"] == (
        "'max_tokens' (100) cannot be greater than the model's maximum context length (64). "
        "(parameter=max_tokens, value=100)"
    )
    assert completion["param"] == "max_tokens"


def test_context_errors_of_0_17() -> None:
    # 0.17 renderers/params.py, typo and all.
    error = context_error(V0_17, COMPLETIONS_ROUTE, max_tokens=100)
    assert error["message"] == (
        "max_tokens=100cannot be greater than max_model_len=max_total_tokens=64. Please request "
        "fewer output tokens. (parameter=max_tokens, value=100)"
    )
    error = context_error(V0_17, COMPLETIONS_ROUTE, max_tokens=10)
    assert error["message"].startswith("You passed ")
    assert error["param"] == "input_tokens"


def test_context_errors_of_0_20_and_0_23_report_a_truncated_prompt() -> None:
    # 0.20-0.23 renderers/params.py: text prompts are tokenized to room + 1 tokens.
    for profile in (V0_20, V0_23):
        error = context_error(profile, COMPLETIONS_ROUTE, max_tokens=10)
        assert error["message"] == (
            "This model's maximum context length is 64 tokens. However, you requested 10 output "
            "tokens and your prompt contains at least 55 input tokens, for a total of at least "
            "65 tokens. Please reduce the length of the input prompt or the number of requested "
            "output tokens. (parameter=input_tokens, value=55)"
        )
        assert error["param"] == "input_tokens"


def test_0_33_clamps_max_tokens_to_the_room_left() -> None:
    # 0.33 serve/utils/api_utils.get_max_tokens: min(L - P, max_tokens).
    prompt = "word " * 20
    prompt_tokens = len(TOKENIZER.encode(prompt))
    plan = respond(V0_33, COMPLETIONS_ROUTE, {"prompt": prompt, "max_tokens": 60}, 64)
    assert plan.completion_tokens == 64 - prompt_tokens
    assert plan.finish_reasons == ("length",)
    with pytest.raises(APIError, match="max_tokens=100 cannot be greater than max_model_len=64"):
        respond(V0_33, COMPLETIONS_ROUTE, {"prompt": prompt, "max_tokens": 100}, 64)
    error = context_error(V0_33, CHAT_ROUTE)
    assert "which exceeds this limit even without any output tokens" in error["message"]
    # The same request is refused before 0.33.
    with pytest.raises(APIError):
        respond(V0_23, COMPLETIONS_ROUTE, {"prompt": prompt, "max_tokens": 60}, 64)
