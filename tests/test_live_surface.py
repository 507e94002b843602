"""Embeddings, the Responses API and Anthropic Messages through the real client libraries over a
socket: the openai SDK, the anthropic SDK and LangChain's OpenAIEmbeddings."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from .conftest import LiveServer

TOOLS_OPENAI = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
TOOLS_ANTHROPIC = [
    {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@pytest.fixture(scope="module")
def server_033() -> Iterator[LiveServer]:
    """vLLM 0.33's shapes, with EOS so that answers end before max tokens (response.completed,
    end_turn), and some latency to observe."""
    server = LiveServer(
        "--model", "m", "--vllm-version", "0.33", "--eos-rate", "0.05",
        "--ttft-delay", "40", "--token-delay", "10", "--embedding-dimensions", "256",
    )  # fmt: skip
    yield server
    server.stop()


def openai_client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def anthropic_client(server: LiveServer, **auth: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, max_retries=0, **(auth or {"api_key": "x"}))


# --- embeddings ---------------------------------------------------------------------------------


def test_openai_sdk_embeddings_base64_default_and_float(live_server: LiveServer) -> None:
    client = openai_client(live_server)
    texts = ["The cat sat on the mat.", "The cat sat on a mat.", "Stock markets fell."]
    # Without encoding_format the SDK asks for base64 and decodes the float32 bytes itself.
    packed = client.embeddings.create(model="test-model", input=texts)
    floats = client.embeddings.create(model="test-model", input=texts, encoding_format="float")
    assert [item.index for item in packed.data] == [0, 1, 2]
    assert packed.usage.prompt_tokens == floats.usage.prompt_tokens > 0
    for a, b in zip(packed.data, floats.data, strict=True):
        assert len(a.embedding) == 1024
        assert a.embedding == pytest.approx(b.embedding, abs=1e-7)
        assert math.fsum(v * v for v in a.embedding) == pytest.approx(1.0, abs=1e-5)
    cat, cat2, stocks = (item.embedding for item in floats.data)

    def cosine(x: list[float], y: list[float]) -> float:
        return math.fsum(p * q for p, q in zip(x, y, strict=True))

    assert cosine(cat, cat2) > cosine(cat, stocks) + 0.3
    short = client.embeddings.create(model="test-model", input="hi", dimensions=64)
    assert len(short.data[0].embedding) == 64


def test_langchain_embeddings(server_033: LiveServer) -> None:
    # LangChain's docs tell vLLM users to turn the tiktoken length check off: strings go out.
    embeddings = OpenAIEmbeddings(
        model="m",
        base_url=f"{server_033.url}/v1",
        api_key="unused",
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    documents = embeddings.embed_documents(["hello world", "goodbye world", "hello world"])
    assert [len(vector) for vector in documents] == [256, 256, 256]
    assert documents[0] == documents[2]
    assert documents[0] != documents[1]
    assert embeddings.embed_query("hello world") == documents[0]
    # With the check on it sends tiktoken's token arrays, which vLLM takes unchecked.
    tokens = httpx.post(
        f"{server_033.url}/v1/embeddings",
        json={"model": "m", "input": [[15339, 1917], [100257]], "encoding_format": "base64"},
    )
    assert tokens.status_code == 200
    assert tokens.json()["usage"]["prompt_tokens"] == 3


# --- Responses API ------------------------------------------------------------------------------


def test_openai_sdk_responses_create(live_server: LiveServer) -> None:
    response = openai_client(live_server).responses.create(
        model="test-model", input="Say something.", instructions="Be brief.", max_output_tokens=6
    )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text
    assert response.usage is not None
    assert response.usage.output_tokens == 6
    assert response.instructions == "Be brief."


def test_openai_sdk_responses_stream_assembles_the_final_response(
    live_server: LiveServer, server_033: LiveServer
) -> None:
    for server, model in ((live_server, "test-model"), (server_033, "m")):
        deltas = []
        with openai_client(server).responses.stream(
            model=model, input="Tell me a story.", max_output_tokens=400
        ) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = stream.get_final_response()
        assert final.status == "completed"
        assert final.output_text == "".join(deltas)
        assert final.output_text
        assert final.usage is not None
        assert final.usage.output_tokens >= len([d for d in deltas if d])


def test_responses_stream_timing_follows_the_latency_model(server_033: LiveServer) -> None:
    arrivals = []
    start = time.perf_counter()
    with httpx.stream(
        "POST",
        f"{server_033.url}/v1/responses",
        json={"model": "m", "input": "timing", "max_output_tokens": 400, "stream": True},
        timeout=30,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: response.output_text.delta"):
                arrivals.append(time.perf_counter() - start)
    assert len(arrivals) >= 3
    # TTFT 40 ms, ITL 10 ms: no earlier, and generously late on a busy machine.
    assert arrivals[0] >= 0.04
    assert arrivals[0] < 1.0
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(gaps) / len(gaps) >= 0.009


def test_openai_sdk_function_calls(server_033: LiveServer) -> None:
    client = openai_client(server_033)
    response = client.responses.create(model="m", input="Weather in Paris?", tools=TOOLS_OPENAI)
    (call,) = response.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert "city" in json.loads(call.arguments)
    with client.responses.stream(model="m", input="Weather?", tools=TOOLS_OPENAI) as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"
    assert json.loads(final.output[0].arguments)


def test_responses_store_serves_get_and_follow_ups(start_server: Callable[..., LiveServer]) -> None:
    server = start_server("--model", "m", "--enable-responses-store")
    client = openai_client(server)
    first = client.responses.create(model="m", input="Remember this.", max_output_tokens=5)
    fetched = client.responses.retrieve(first.id)
    assert fetched.id == first.id
    assert fetched.output_text == first.output_text
    second = client.responses.create(
        model="m", input="And now?", previous_response_id=first.id, max_output_tokens=5
    )
    assert second.previous_response_id == first.id
    with pytest.raises(openai.BadRequestError, match="Cannot cancel a synchronous response"):
        client.responses.cancel(first.id)
    with pytest.raises(openai.NotFoundError, match="Response with id 'resp_nope' not found"):
        client.responses.retrieve("resp_nope")


# --- Anthropic Messages -------------------------------------------------------------------------


def test_anthropic_sdk_messages_create_and_stream(server_033: LiveServer) -> None:
    client = anthropic_client(server_033)
    created = client.messages.create(
        model="m",
        max_tokens=400,
        system="You are terse.",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    assert created.type == "message"
    assert created.role == "assistant"
    assert created.id.startswith("chatcmpl-")
    assert created.stop_reason == "end_turn"
    assert created.usage.input_tokens > 0
    with client.messages.stream(
        model="m", max_tokens=400, messages=[{"role": "user", "content": "Hello there"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens >= 1


def test_anthropic_sdk_tool_use(server_033: LiveServer) -> None:
    client = anthropic_client(server_033)
    request = {
        "model": "m",
        "max_tokens": 200,
        "tools": TOOLS_ANTHROPIC,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    created = client.messages.create(**request)
    assert created.stop_reason == "tool_use"
    assert created.content[-1].type == "tool_use"
    assert "city" in created.content[-1].input
    with client.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert final.content[-1].type == "tool_use"
    assert final.content[-1].input == created.content[-1].input


def test_anthropic_errors_and_the_api_key(start_server: Callable[..., LiveServer]) -> None:
    server = start_server("--model", "m", "--vllm-version", "0.17", "--api-key", "secret")
    hi = [{"role": "user", "content": "hi"}]
    # vLLM's key check reads only Authorization: Bearer: the x-api-key of anthropic SDKs before
    # 2.x (and of Claude-style clients) is refused, OpenAI-shaped.
    body = {"model": "m", "max_tokens": 5, "messages": hi}
    refused = httpx.post(f"{server.url}/v1/messages", json=body, headers={"x-api-key": "secret"})
    assert refused.status_code == 401
    assert refused.json() == {"error": "Unauthorized"}
    # This SDK sends its api_key (and auth_token) as a bearer token.
    for auth in ({"api_key": "secret"}, {"auth_token": "secret"}):
        reply = anthropic_client(server, **auth).messages.create(
            model="m", max_tokens=5, messages=hi
        )
        assert reply.usage.output_tokens == 5
    client = anthropic_client(server, auth_token="secret")
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-x", max_tokens=5, messages=hi)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "NotFoundError", "message": "The model `claude-x` does not exist."},
    }


def test_unserved_routes_are_404_in_older_eras(live_server: LiveServer) -> None:
    # 0.11 has no /v1/messages (first in 0.11.1; the 0.14 era has it).
    response = httpx.post(f"{live_server.url}/v1/messages", json={})
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# --- faults and the pipeline --------------------------------------------------------------------


def test_fault_header_breaks_named_streams_in_their_own_shape(server_033: LiveServer) -> None:
    headers = {"X-Dummy-Fault": "error-event;after=2"}
    with httpx.stream(
        "POST",
        f"{server_033.url}/v1/responses",
        json={"model": "m", "input": "x", "max_output_tokens": 50, "stream": True},
        headers=headers,
        timeout=30,
    ) as response:
        body = response.read()
    events = body.split(b"\n\n")[:-1]
    assert events[-1].startswith(b"event: error\ndata: ")
    error = json.loads(events[-1].split(b"data: ", 1)[1])
    assert error["type"] == "error"
    assert error["sequence_number"] == len(events) - 1
    assert body.count(b"event: response.output_text.delta") == 2
    with (
        pytest.raises(anthropic.APIStatusError),
        anthropic_client(server_033).messages.stream(
            model="m",
            max_tokens=50,
            messages=[{"role": "user", "content": "x"}],
            extra_headers=headers,
        ) as stream,
    ):
        "".join(stream.text_stream)
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client(server_033).messages.create(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Dummy-Fault": "429"},
        )
    assert caught.value.body["error"]["type"] == "rate_limit_error"
