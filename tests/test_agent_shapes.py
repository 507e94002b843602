"""Tool-call, structured-output and reasoning answers in each era's shapes, against the vLLM
sources cited in notes/agent-requests.md (no captures of these exist yet), and their
validation errors with vLLM's texts."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.errors import APIError
from dummy_vllm.protocol.profiles import V0_8, V0_11, V0_14, V0_17, V0_23, V0_33, Profile
from dummy_vllm.protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE, ServedModel
from dummy_vllm.settings import (
    AgentSettings,
    Limits,
    OutputLength,
    SettingsError,
    SyntheticSettings,
)
from dummy_vllm.synthetic import SyntheticModel

from .shapes import sse_events

TOKENIZER = Tokenizer()
MESSAGES = [{"role": "user", "content": "hi"}]
PARAMETERS = {
    "type": "object",
    "properties": {"x": {"type": "integer"}, "tag": {"type": "string", "enum": ["a", "b"]}},
    "required": ["x", "tag"],
}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": PARAMETERS}}]
NAMED = {"type": "function", "function": {"name": "f"}}
HERMES = AgentSettings(enable_auto_tool_choice=True, tool_call_parser="hermes")


def model(profile: Profile, agent: AgentSettings = HERMES, **synthetic: Any) -> SyntheticModel:
    served = ServedModel(
        "m", "m", 4096, TOKENIZER, Limits(), profile=profile, version=profile.version, agent=agent
    )
    return SyntheticModel(SyntheticSettings(agent=agent, **synthetic), served, seed=0)


def chat(profile: Profile, agent: AgentSettings = HERMES, **body: Any) -> Any:
    plan = model(profile, agent).respond(CHAT_ROUTE, {"messages": MESSAGES, **body}, None)
    if not plan.stream:
        return json.loads(plan.body)
    events = sse_events(b"".join(event.data for event in plan.events))
    assert events[-1] == b"[DONE]"
    return [json.loads(event) for event in events[:-1]]


def deltas(events: list[Any]) -> list[dict[str, Any]]:
    return [e["choices"][0]["delta"] for e in events[1:] if e["choices"]]


def accumulated(events: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas(events):
        for tool in delta.get("tool_calls", ()):
            call = calls.setdefault(tool["index"], {"name": "", "arguments": ""})
            call["name"] += tool["function"].get("name") or ""
            call["arguments"] += tool["function"].get("arguments", "")
    return calls


def error_of(profile: Profile, agent: AgentSettings = HERMES, **body: Any) -> dict[str, Any]:
    with pytest.raises(APIError) as caught:
        chat(profile, agent, **body)
    return dict(json.loads(caught.value.body(profile))["error"])


# --- named tool choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "stream_finish"), [(V0_11, "tool_calls"), (V0_14, "stop"), (V0_23, "stop")]
)
def test_named_tool_streams_guided_json_up_to_0_23(profile: Profile, stream_finish: str) -> None:
    # 0.11 serving_chat.py:759-815, 0.17 chat_completion/serving.py:896-970: every token is an
    # argument fragment, the first with id, type and name, index = the choice's.
    events = chat(profile, tool_choice=NAMED, tools=TOOLS, stream=True, max_tokens=60)
    tools = [d["tool_calls"][0] for d in deltas(events)]
    assert list(tools[0]) == ["id", "type", "index", "function"]
    assert list(tools[0]["function"]) == ["name", "arguments"]
    assert tools[0]["function"]["name"] == "f"
    assert all(
        list(t) == ["index", "function"] and list(t["function"]) == ["arguments"] for t in tools[1:]
    )
    assert tools[-1]["function"]["arguments"] == ""  # the EOS token
    assert len(tools[0]["id"]) == len("chatcmpl-tool-") + profile.id_hex_digits
    jsonschema.validate(json.loads(accumulated(events)[0]["arguments"]), PARAMETERS)
    assert events[-1]["choices"][0]["finish_reason"] == stream_finish
    # Tokens in the usage are the events after the role one: one per token on this path.
    body = chat(profile, tool_choice=NAMED, tools=TOOLS, max_tokens=60)
    assert body["choices"][0]["finish_reason"] == "stop"
    message = body["choices"][0]["message"]
    assert message["content"] == ""
    assert body["usage"]["completion_tokens"] == len(tools)


@pytest.mark.parametrize(("profile", "finish"), [(V0_11, "stop"), (V0_14, "tool_calls")])
def test_required_tool_calls(profile: Profile, finish: str) -> None:
    # 0.11 serving_chat.py:1286-1309 ("stop": the pre-#25054 quirk), 0.14 1590-1600.
    body = chat(profile, tool_choice="required", tools=TOOLS, max_tokens=80)
    choice = body["choices"][0]
    assert choice["finish_reason"] == finish
    (call,) = choice["message"]["tool_calls"]
    assert list(call) == ["id", "type", "function"]
    jsonschema.validate(json.loads(call["function"]["arguments"]), PARAMETERS)
    events = chat(profile, tool_choice="required", tools=TOOLS, max_tokens=80, stream=True)
    tools = [t for d in deltas(events) for t in d.get("tool_calls", ())]
    # After the first, fragments carry "name": null; the array's own brackets never stream.
    assert all(t["function"]["name"] is None for t in tools[1:])
    assert deltas(events)[-1] == ({} if profile is V0_11 else {"reasoning_content": None})
    jsonschema.validate(json.loads(accumulated(events)[0]["arguments"]), PARAMETERS)
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_auto_tool_calls_in_0_11_and_0_33() -> None:
    # Hermes: the name alone once complete, then the arguments; 0.11 ends with
    # {"content":""}, 0.33 sets "content":null on tool deltas and ends with {}.
    old = chat(V0_11, tools=TOOLS, stream=True, max_tokens=80)
    assert list(deltas(old)[0]["tool_calls"][0]["function"]) == ["name"]
    assert deltas(old)[-1] == {"content": ""}
    new = chat(V0_33, tools=TOOLS, stream=True, max_tokens=80)
    assert all(d["content"] is None for d in deltas(new)[:-1])
    assert deltas(new)[-1] == {}
    for events in (old, new):
        assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
        jsonschema.validate(json.loads(accumulated(events)[0]["arguments"]), PARAMETERS)
        # The parser holds back the <tool_call> markup: fewer events than tokens.
        assert len(deltas(events)) < 40
    body = chat(V0_33, tools=TOOLS, max_tokens=80)
    assert body["choices"][0]["message"]["content"] is None
    # 0.33 hermes also answers named choices (strict tool calling), finish "stop".
    named = chat(V0_33, tools=TOOLS, tool_choice=NAMED, max_tokens=80, stream=True)
    assert list(deltas(named)[0]["tool_calls"][0]["function"]) == ["name"]
    assert named[-1]["choices"][0]["finish_reason"] == "stop"


def test_auto_answers_in_prose_at_the_call_rate() -> None:
    agent = AgentSettings(
        enable_auto_tool_choice=True, tool_call_parser="hermes", tool_call_rate=0.0
    )
    body = chat(V0_11, agent, tools=TOOLS, max_tokens=5)
    assert body["choices"][0]["message"]["content"]
    assert body["choices"][0]["message"]["tool_calls"] == []
    assert body["choices"][0]["finish_reason"] == "length"
    assert (
        "tool_calls" not in chat(V0_33, agent, tools=TOOLS, max_tokens=5)["choices"][0]["message"]
    )


def test_tool_call_cut_by_max_tokens_ends_with_length() -> None:
    body = chat(V0_11, tool_choice=NAMED, tools=TOOLS, max_tokens=3)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    # The guided-JSON path returns what was generated, cut.
    arguments = choice["message"]["tool_calls"][0]["function"]["arguments"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tool_choice": "required"}, "When using `tool_choice`, `tools` must be set."),
        (
            {"tools": TOOLS, "tool_choice": "any"},
            "Invalid value for `tool_choice`: any! Only named",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function"}},
            "Invalid value for `function`: `None` in `tool_choice`!",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {}}},
            "Expected field `name` in `function` in `tool_choice`!",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "The tool specified in `tool_choice` does not match any of the specified `tools`",
        ),
        (
            {"structured_outputs": {"json": {}, "regex": "a"}},
            "You can only use one kind of constraints for structured outputs",
        ),
    ],
)
def test_validation_errors(body: dict[str, Any], message: str) -> None:
    error = error_of(V0_11, **body)
    assert error["type"] == "Bad Request"
    assert message in error["message"]


def test_auto_needs_both_flags_and_named_needs_them_from_0_17() -> None:
    bare = AgentSettings()
    auto = error_of(V0_11, bare, tools=TOOLS)
    assert auto["type"] == "BadRequestError"
    # The handler's check reads only tool_choice: "auto" with no tools needs the flags too.
    assert error_of(V0_11, bare, tools=[], tool_choice="auto")["message"] == auto["message"]
    assert chat(V0_11, bare, tools=[], tool_choice="required", max_tokens=4)["choices"]
    assert auto["message"] == (
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    )
    # <= 0.14 named and required work without flags (guided decoding).
    assert chat(V0_14, bare, tools=TOOLS, tool_choice=NAMED, max_tokens=40)["choices"]
    named = error_of(V0_17, bare, tools=TOOLS, tool_choice=NAMED)["message"]
    assert named == (
        "tool_choice=\"function=ChatCompletionNamedFunction(name='f') type='function'\" "
        "requires --tool-call-parser to be set"
    )
    assert error_of(V0_33, bare, tools=TOOLS, tool_choice=NAMED)["message"].startswith(
        'tool_choice=function "f" requires'
    )
    required = error_of(V0_33, bare, tools=TOOLS, tool_choice="required")["message"]
    assert required == 'tool_choice="required" requires --tool-call-parser to be set'


def test_empty_tools_refused_from_0_23() -> None:
    assert chat(V0_17, tools=[], tool_choice="required", max_tokens=2)["choices"]
    assert "`tools` must not be an empty array" in error_of(V0_23, tools=[])["message"]


def test_unknown_parsers_are_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="invalid tool call parser: nope"):
        AgentSettings(enable_auto_tool_choice=True, tool_call_parser="nope").check_parsers(V0_11)
    with pytest.raises(SettingsError, match="invalid reasoning parser: deepseek_v3"):
        AgentSettings(reasoning_parser="deepseek_v3").check_parsers(V0_11)  # 0.14+
    AgentSettings(reasoning_parser="deepseek_v3").check_parsers(V0_14)
    with pytest.raises(SettingsError, match="requires --tool-call-parser"):
        AgentSettings(enable_auto_tool_choice=True)


# --- structured outputs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "body", "check"),
    [
        (V0_11, {"guided_choice": ["yes", "no"]}, lambda text: text in ("yes", "no")),
        (V0_11, {"guided_regex": r"\d{3}-[a-z]+"}, lambda text: text[3] == "-"),
        (V0_14, {"structured_outputs": {"choice": ["up", "down"]}}, lambda t: t in ("up", "down")),
        (
            V0_33,
            {"response_format": {"type": "json_object"}},
            lambda t: isinstance(json.loads(t), dict),
        ),
        (
            V0_11,
            {"guided_json": json.dumps(PARAMETERS)},
            lambda t: jsonschema.validate(json.loads(t), PARAMETERS) is None,
        ),
    ],
)
def test_constrained_answers(profile: Profile, body: dict[str, Any], check: Any) -> None:
    for seed in range(10):
        answer = chat(profile, seed=seed, max_tokens=200, **body)["choices"][0]
        assert check(answer["message"]["content"]), answer
        assert answer["finish_reason"] == "stop"


def test_guided_fields_are_ignored_from_0_12() -> None:
    answer = chat(V0_14, guided_choice=["yes", "no"], max_tokens=30)["choices"][0]
    assert answer["message"]["content"] not in ("yes", "no")


def test_completions_honour_constraints() -> None:
    plan = model(V0_11).respond(
        COMPLETIONS_ROUTE, {"prompt": "x", "guided_choice": ["a", "b"], "max_tokens": 5}, None
    )
    assert json.loads(plan.body)["choices"][0]["text"] in ("a", "b")


def test_unsupported_constraints_say_what() -> None:
    regex = error_of(V0_11, guided_regex="(a)\\1")
    assert regex["type"] == "BadRequestError"
    assert "backreference" in regex["message"]
    grammar = error_of(V0_11, guided_grammar="root ::= 'a'")["message"]
    assert "grammar" in grammar
    schema = error_of(
        V0_11,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "n", "schema": {"not": {}}},
        },
    )
    assert "'not'" in schema["message"]
    assert (
        "multiple are specified"
        in error_of(V0_11, guided_choice=["a"], guided_regex="a")["message"]
    )


def test_structured_answer_too_long_for_max_tokens_is_cut_with_length() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "minLength": 200}},
        "required": ["a"],
    }
    answer = chat(
        V0_11,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        max_tokens=8,
    )
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 8


# --- reasoning --------------------------------------------------------------------------------

THINKER = AgentSettings(reasoning_parser="deepseek_r1", reasoning_ratio=0.5)


@pytest.mark.parametrize(
    ("profile", "keys"),
    [
        (V0_8, ["reasoning_content"]),
        (V0_11, ["reasoning_content"]),
        (V0_14, ["reasoning", "reasoning_content"]),
        (V0_33, ["reasoning"]),
    ],
)
def test_reasoning_fields(profile: Profile, keys: list[str]) -> None:
    events = chat(profile, THINKER, max_tokens=20, stream=True)
    steps = deltas(events)
    reasoning = [d for d in steps if keys[0] in d and d[keys[0]] is not None]
    assert len(reasoning) == 10
    assert all([k for k in d if d[k] is not None] == keys for d in reasoning)
    # The </think> token streams nothing; the answer follows as content.
    content = [d for d in steps if d.get("content")]
    assert len(reasoning) + len(content) == 19
    body = chat(profile, THINKER, max_tokens=20)
    message = body["choices"][0]["message"]
    assert message[keys[0]] == "".join(d[keys[0]] for d in reasoning)
    assert message["content"] == "".join(d["content"] for d in content)
    assert body["usage"]["completion_tokens"] == 20
    details = body["usage"].get("completion_tokens_details")
    assert details == ({"reasoning_tokens": 10} if profile is V0_33 else None)


def test_thinking_off_and_reasoning_hidden() -> None:
    off = chat(V0_11, THINKER, max_tokens=10, chat_template_kwargs={"enable_thinking": False})
    assert off["choices"][0]["message"]["reasoning_content"] is None
    hidden = chat(V0_11, THINKER, max_tokens=10, include_reasoning=False)["choices"][0]["message"]
    assert hidden["reasoning_content"] is None
    assert hidden["content"]


# --- output length, echo, token ids -----------------------------------------------------------


def test_chat_without_max_tokens_stops_at_a_natural_length() -> None:
    synthetic = model(V0_11, AgentSettings(), default_length=OutputLength(mean=60, spread=20))
    lengths = []
    for seed in range(40):
        body = json.loads(
            synthetic.respond(CHAT_ROUTE, {"messages": MESSAGES, "seed": seed}, None).body
        )
        assert body["choices"][0]["finish_reason"] == "stop"
        lengths.append(body["usage"]["completion_tokens"])
    assert 40 < sum(lengths) / len(lengths) < 85
    assert len(set(lengths)) > 10
    exact = synthetic.respond(
        CHAT_ROUTE, {"messages": MESSAGES, "max_tokens": 300, "ignore_eos": True}, None
    )
    assert json.loads(exact.body)["usage"]["completion_tokens"] == 300


def test_echo_with_zero_max_tokens() -> None:
    # protocol.py echo_without_generation: one hidden token, counted, finish "length".
    plan = model(V0_11).respond(
        COMPLETIONS_ROUTE,
        {"prompt": "Hello there", "echo": True, "max_tokens": 0, "logprobs": 1},
        None,
    )
    choice = json.loads(plan.body)["choices"][0]
    assert choice["text"] == "Hello there"
    assert choice["finish_reason"] == "length"
    assert json.loads(plan.body)["usage"]["completion_tokens"] == 1
    assert choice["logprobs"]["tokens"] == ["Hello", " there"]


def test_return_token_ids_and_prompt_logprobs() -> None:
    plan = model(V0_11).respond(
        COMPLETIONS_ROUTE,
        {"prompt": "Hello there", "max_tokens": 3, "return_token_ids": True, "prompt_logprobs": 2},
        None,
    )
    choice = json.loads(plan.body)["choices"][0]
    assert choice["prompt_token_ids"] == TOKENIZER.encode("Hello there")
    assert TOKENIZER.decode(choice["token_ids"]) == choice["text"]
    first, second = choice["prompt_logprobs"]
    assert first is None
    actual = str(TOKENIZER.encode(" there")[0])
    assert next(iter(second)) == actual
    assert list(second[actual]) == [
        "logprob",
        "rank",
        "decoded_token",
    ]
    body = chat(V0_11, AgentSettings(), max_tokens=2, return_token_ids=True, echo=True)
    assert body["prompt_token_ids"]
    assert len(body["choices"][0]["token_ids"]) == 2
    assert len(body["prompt_logprobs"]) == len(body["prompt_token_ids"])
