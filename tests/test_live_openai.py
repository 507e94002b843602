"""The official openai SDK, sync and async, against a live server over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from .conftest import LiveServer
from .shapes import sse_events

MESSAGES = [{"role": "user", "content": "Tell me about GPUs."}]


def client(server: LiveServer, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, **kwargs)  # type: ignore[arg-type]


def test_models_list(live_server: LiveServer) -> None:
    models = client(live_server).models.list()
    assert [model.id for model in models.data] == ["test-model"]


def test_chat_non_stream(live_server: LiveServer) -> None:
    response = client(live_server).chat.completions.create(
        model="test-model",
        messages=MESSAGES,
        max_tokens=12,  # type: ignore[arg-type]
    )
    assert response.object == "chat.completion"
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 12
    assert response.choices[0].message.content


def test_chat_stream_with_usage(live_server: LiveServer) -> None:
    stream = client(live_server).chat.completions.create(
        model="test-model",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_completion_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    token_chunks = [c for c in chunks if c.choices and c.choices[0].delta.role is None]
    assert len(token_chunks) == 9
    assert chunks[0].choices[0].delta.role == "assistant"
    assert token_chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_without_usage_sends_no_usage_event(live_server: LiveServer) -> None:
    chunks = list(
        client(live_server).chat.completions.create(
            model="test-model",
            messages=MESSAGES,
            max_tokens=3,
            stream=True,  # type: ignore[arg-type]
        )
    )
    assert all(chunk.choices for chunk in chunks)


def test_chat_n_greater_than_one(live_server: LiveServer) -> None:
    response = client(live_server).chat.completions.create(
        model="test-model",
        messages=MESSAGES,
        max_tokens=4,
        n=3,  # type: ignore[arg-type]
    )
    assert [choice.index for choice in response.choices] == [0, 1, 2]
    assert response.usage is not None
    assert response.usage.completion_tokens == 12


def test_completions_stream_n_interleaved(live_server: LiveServer) -> None:
    chunks = list(
        client(live_server).completions.create(
            model="test-model",
            prompt="Once upon",
            max_tokens=5,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    per_index: dict[int, int] = {}
    for chunk in chunks[:-1]:
        per_index[chunk.choices[0].index] = per_index.get(chunk.choices[0].index, 0) + 1
    assert per_index == {0: 5, 1: 5}
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10


def test_completions_non_stream(live_server: LiveServer) -> None:
    response = client(live_server).completions.create(
        model="test-model", prompt=["a", "b"], max_tokens=3
    )
    assert [choice.index for choice in response.choices] == [0, 1]
    assert response.usage is not None
    assert response.usage.completion_tokens == 6


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "nope"}, openai.NotFoundError),
        ({"max_tokens": 0}, openai.BadRequestError),
        ({"n": 0}, openai.BadRequestError),
        ({"max_tokens": 5000}, openai.BadRequestError),
        ({"top_logprobs": 3}, openai.BadRequestError),
        ({"stream_options": {"include_usage": True}}, openai.BadRequestError),
        ({"stop": [""]}, openai.BadRequestError),
    ],
)
def test_errors_map_to_sdk_exceptions(
    live_server: LiveServer, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        client(live_server).chat.completions.create(
            **{"model": "test-model", "messages": MESSAGES, "max_tokens": 2, **kwargs}  # type: ignore[call-overload]
        )
    assert caught.value.body["message"]  # type: ignore[attr-defined]


def test_api_key_enforced(start_server: object) -> None:
    server = start_server("--api-key", "sekrit")  # type: ignore[operator]
    with pytest.raises(openai.AuthenticationError):
        client(server).models.list()
    ok = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sekrit", max_retries=0)
    assert ok.models.list().data


async def test_async_client_stream_and_non_stream(live_server: LiveServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{live_server.url}/v1", api_key="none", max_retries=0
    ) as async_client:
        response = await async_client.completions.create(
            model="test-model", prompt="Hello", max_tokens=6
        )
        assert response.usage is not None
        assert response.usage.completion_tokens == 6
        stream = await async_client.chat.completions.create(
            model="test-model",
            messages=MESSAGES,
            max_tokens=4,
            stream=True,  # type: ignore[arg-type]
        )
        texts = [chunk.choices[0].delta.content async for chunk in stream]
        assert texts[0] == ""  # role event
        assert len(texts) == 5


@pytest.fixture(scope="module")
def server_0_33() -> Iterator[LiveServer]:
    server = LiveServer("--model", "m", "--max-model-len", "256", "--vllm-version", "0.33")
    yield server
    server.stop()


def test_0_33_profile_through_the_sdk(server_0_33: LiveServer) -> None:
    sdk = client(server_0_33)
    assert httpx.get(f"{server_0_33.url}/version").json() == {"version": "0.33.0"}
    # stream_options without include_usage: no usage event from 0.18 on.
    chunks = list(
        sdk.chat.completions.create(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_completion_tokens=5,
            stream=True,
            stream_options={},  # type: ignore[typeddict-item]
        )
    )
    assert all(chunk.choices for chunk in chunks)
    assert chunks[-1].system_fingerprint is not None
    assert chunks[-1].system_fingerprint.startswith("vllm-0.33.0-")
    # max_tokens past the room left is clamped, not refused.
    completion = sdk.completions.create(model="m", prompt="word " * 200, max_tokens=200)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens + completion.usage.completion_tokens == 256
    assert len(completion.id) == len("cmpl-") + 16


def test_0_33_completions_chunks_carry_no_usage_null(server_0_33: LiveServer) -> None:
    body = {"model": "m", "prompt": "hi", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server_0_33.url}/v1/completions", json=body) as response:
        raw = response.read()
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    assert all(b'"usage"' not in event for event in events)
    assert all(event.endswith(b',"kv_transfer_params":null}') for event in events[:-1])
