"""Agent-style clients against a live server: the openai SDK (tool calls named, required and
auto, streamed tool-call deltas accumulated, ``chat.completions.parse``, ``json_object``) and
LangChain (``bind_tools``, ``with_structured_output`` by json_schema and function_calling).
Every argument object and structured answer is validated against its schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from .conftest import LiveServer

MODEL = "agent-model"
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
}
SEARCH = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["query"],
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "search", "parameters": SEARCH}},
]
SCHEMAS = {"get_weather": WEATHER, "search": SEARCH}


class Person(BaseModel):
    """A person."""

    name: str
    age: int
    role: Literal["admin", "user"]
    nicknames: list[str]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    started = LiveServer(
        "--model",
        MODEL,
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
        "--seed",
        "3",
    )
    yield started
    started.stop()


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def check_call(name: str, arguments: str) -> None:
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


@pytest.mark.parametrize(
    ("tool_choice", "finish"),
    [
        ({"type": "function", "function": {"name": "search"}}, "stop"),
        ("required", "stop"),  # 0.11.0 says "stop" for required when not streamed
        ("auto", "tool_calls"),
    ],
)
def test_tool_calls(server: LiveServer, tool_choice: Any, finish: str) -> None:
    for seed in range(5):
        response = client(server).chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=TOOLS, tool_choice=tool_choice, seed=seed
        )
        choice = response.choices[0]
        assert choice.finish_reason == finish
        calls = choice.message.tool_calls
        assert calls
        for call in calls:
            assert call.type == "function"
            assert call.id.startswith("chatcmpl-tool-")
            assert len(call.id) == 14 + 32
            check_call(call.function.name, call.function.arguments)
        if isinstance(tool_choice, dict):
            assert [call.function.name for call in calls] == ["search"]
            assert choice.message.content == ""
        # The tools rendered into the prompt count.
        assert response.usage is not None
        assert response.usage.prompt_tokens > 40


@pytest.mark.parametrize(
    "tool_choice", [{"type": "function", "function": {"name": "get_weather"}}, "required", "auto"]
)
def test_streamed_tool_call_deltas_accumulate(server: LiveServer, tool_choice: Any) -> None:
    stream = client(server).chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice=tool_choice,
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    assert calls
    assert finish == "tool_calls"
    for call in calls.values():
        assert call["id"].startswith("chatcmpl-tool-")
        check_call(call["name"], call["arguments"])
    assert usage is not None
    assert usage.completion_tokens > len(calls)


def test_tool_call_loop_history_is_accepted(server: LiveServer) -> None:
    first = client(server).chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=TOOLS, tool_choice="required"
    )
    message = first.choices[0].message
    assert message.tool_calls
    history = [
        *MESSAGES,
        message.model_dump(exclude_none=True),
        *(
            {"role": "tool", "tool_call_id": call.id, "content": "22 degrees"}
            for call in message.tool_calls
        ),
    ]
    second = client(server).chat.completions.create(
        model=MODEL, messages=history, tools=TOOLS, tool_choice="none", max_tokens=5
    )
    assert second.choices[0].message.content
    assert second.choices[0].message.tool_calls == []
    assert second.usage is not None
    assert first.usage is not None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens


def test_parse_with_a_pydantic_model(server: LiveServer) -> None:
    for seed in range(5):
        completion = client(server).chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=Person, seed=seed
        )
        parsed = completion.choices[0].message.parsed
        assert isinstance(parsed, Person)
        assert completion.choices[0].finish_reason == "stop"


def test_json_object(server: LiveServer) -> None:
    response = client(server).chat.completions.create(
        model=MODEL, messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(response.choices[0].message.content or ""), dict)


def test_json_schema_streamed_token_by_token(server: LiveServer) -> None:
    schema = Person.model_json_schema()
    stream = client(server).chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks[1:] if c.choices]
    jsonschema.validate(json.loads("".join(p or "" for p in pieces)), schema)
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == len(pieces)


def test_tool_choice_errors_are_vllms(server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert "does not match any of the specified `tools`" in str(caught.value)
    with pytest.raises(openai.BadRequestError, match="`tools` must be set"):
        client(server).chat.completions.create(
            model=MODEL, messages=MESSAGES, tool_choice="required"
        )


# --- LangChain ----------------------------------------------------------------------------------


def chat_model(server: LiveServer) -> ChatOpenAI:
    return ChatOpenAI(model=MODEL, base_url=f"{server.url}/v1", api_key="none", max_retries=0)  # type: ignore[arg-type]


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """Current weather in a city."""
    return f"22 {unit} in {city}"


def test_langchain_bind_tools(server: LiveServer) -> None:
    model = chat_model(server).bind_tools([get_weather])
    reply = model.invoke([HumanMessage("Weather in Paris?")])
    assert reply.tool_calls
    call = reply.tool_calls[0]
    assert call["name"] == "get_weather"
    assert set(call["args"]) == {"city", "unit"}
    assert call["args"]["unit"] in (
        "celsius",
        "fahrenheit",
    )
    # The agent loop goes on with the tool's answer in the history.
    followup = model.invoke(
        [
            HumanMessage("Weather in Paris?"),
            reply,
            ToolMessage(get_weather(**call["args"]), tool_call_id=str(call["id"])),
        ]
    )
    # Its prompt carried the call and the tool's answer on top of the question.
    assert reply.usage_metadata is not None
    assert followup.usage_metadata is not None
    assert followup.usage_metadata["input_tokens"] > reply.usage_metadata["input_tokens"]


def test_langchain_streamed_tool_call(server: LiveServer) -> None:
    model = chat_model(server).bind_tools([get_weather], tool_choice="get_weather")
    merged: Any = None
    for chunk in model.stream([HumanMessage("Weather in Paris?")]):
        merged = chunk if merged is None else merged + chunk
    assert merged.tool_calls[0]["name"] == "get_weather"
    assert merged.tool_calls[0]["args"]["unit"] in ("celsius", "fahrenheit")


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output(server: LiveServer, method: str) -> None:
    model = chat_model(server).with_structured_output(Person, method=method)  # type: ignore[arg-type]
    for _ in range(3):
        person = model.invoke([HumanMessage("Invent a person.")])
        assert isinstance(person, Person)
