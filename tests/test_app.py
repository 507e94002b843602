"""Routes, error envelopes and limits through Sanic's test client."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from sanic import Sanic

from dummy_vllm.settings import Limits, SyntheticSettings

CHAT = {"model": "dummy-vllm/synthetic-1b", "messages": [{"role": "user", "content": "hi"}]}


def post(app: Sanic, path: str, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    _, response = app.test_client.post(
        path, content=data, headers={"content-type": "application/json", **headers}
    )
    return response


def test_health_ping_version(app: Sanic) -> None:
    _, response = app.test_client.get("/health")
    assert response.status == 200
    assert response.body == b""
    _, response = app.test_client.post("/ping")
    assert response.status == 200
    _, response = app.test_client.get("/version")
    assert response.json == {"version": "0.11.0"}


def test_chat_completion_non_stream(app: Sanic) -> None:
    response = post(app, "/v1/chat/completions", {**CHAT, "max_tokens": 7})
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json
    assert body["object"] == "chat.completion"
    assert body["usage"]["completion_tokens"] == 7
    assert body["choices"][0]["message"]["content"]


def test_request_id_header_becomes_response_id(app: Sanic) -> None:
    response = post(
        app, "/v1/completions", {"prompt": "x", "max_tokens": 1}, **{"x-request-id": "bench-42"}
    )
    assert response.json["id"] == "cmpl-bench-42"


def test_stream_response_framing(app: Sanic) -> None:
    response = post(app, "/v1/chat/completions", {**CHAT, "max_tokens": 3, "stream": True})
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.body.endswith(b"data: [DONE]\n\n")
    assert response.body.count(b"data: ") == 1 + 3 + 1  # role, tokens, [DONE]


def test_same_prompt_same_answer_and_seed_changes_it(app: Sanic) -> None:
    first = post(app, "/v1/completions", {"prompt": "same", "max_tokens": 8}).json
    second = post(app, "/v1/completions", {"prompt": "same", "max_tokens": 8}).json
    seeded = post(app, "/v1/completions", {"prompt": "same", "max_tokens": 8, "seed": 7}).json
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert seeded["choices"][0]["text"] != first["choices"][0]["text"]


def test_stop_string_truncates_text(app: Sanic) -> None:
    full = post(app, "/v1/completions", {"prompt": "p", "max_tokens": 40}).json
    text = full["choices"][0]["text"]
    word = text.split()[3]
    cut = post(app, "/v1/completions", {"prompt": "p", "max_tokens": 40, "stop": word}).json
    choice = cut["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["stop_reason"] == word
    assert choice["text"] == text[: text.index(word)]
    assert cut["usage"]["completion_tokens"] < 40


def test_eos_rate_ends_some_answers_early_but_not_with_ignore_eos(
    make_app: Callable[..., Sanic],
) -> None:
    app = make_app(synthetic=SyntheticSettings(eos_rate=0.2))
    bodies = [
        post(app, "/v1/completions", {"prompt": f"p{i}", "max_tokens": 30}).json for i in range(10)
    ]
    reasons = {body["choices"][0]["finish_reason"] for body in bodies}
    assert "stop" in reasons
    early = [b for b in bodies if b["choices"][0]["finish_reason"] == "stop"]
    assert all(b["usage"]["completion_tokens"] < 30 for b in early)
    forced = post(app, "/v1/completions", {"prompt": "p0", "max_tokens": 30, "ignore_eos": True})
    assert forced.json["usage"]["completion_tokens"] == 30


def test_echo_prompt_mode_answers_with_prompt(make_app: Callable[..., Sanic]) -> None:
    app = make_app(synthetic=SyntheticSettings(echo_prompt=True))
    body = post(app, "/v1/completions", {"prompt": "echo me back", "max_tokens": 50}).json
    assert body["choices"][0]["text"] == "echo me back"
    # Characters that fall back to several byte tokens stream whole, on their last token.
    prompt = "héllo 日本 🚀!"
    streamed = post(app, "/v1/completions", {"prompt": prompt, "max_tokens": 50, "stream": True})
    texts = [
        json.loads(line[6:])["choices"][0]["text"]
        for line in streamed.body.decode().split("\n\n")
        if line.startswith("data: {")
    ]
    assert "".join(texts) == prompt
    assert "\ufffd" not in "".join(texts)


def test_completion_echo_and_logprobs(app: Sanic) -> None:
    body = post(
        app, "/v1/completions", {"prompt": "Say", "max_tokens": 3, "echo": True, "logprobs": 2}
    ).json
    choice = body["choices"][0]
    assert choice["text"].startswith("Say")
    logprobs = choice["logprobs"]
    assert list(logprobs) == ["text_offset", "token_logprobs", "tokens", "top_logprobs"]
    # vLLM lists the echoed prompt's tokens first; the very first has no log-probability.
    assert logprobs["tokens"][0] == "Say"
    assert len(logprobs["tokens"]) == 1 + 3
    assert logprobs["text_offset"][:2] == [0, len("Say")]
    assert logprobs["token_logprobs"][0] is None
    assert logprobs["top_logprobs"][0] is None
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert all(len(top) == 2 for top in logprobs["top_logprobs"][1:])
    # echo implies prompt_logprobs = logprobs: one entry per prompt token, the first null.
    assert choice["prompt_logprobs"] == [None]


def chat_logprobs(app: Sanic, content: str) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": content}]
    body = {**CHAT, "messages": messages, "max_tokens": 24, "logprobs": True, "top_logprobs": 3}
    return list(post(app, "/v1/chat/completions", body).json["choices"][0]["logprobs"]["content"])


def test_chat_logprobs_rank_the_sampled_token_first_and_are_fixed_per_token(app: Sanic) -> None:
    content = chat_logprobs(app, "hi")
    assert len(content) == 24
    assert list(content[0]) == ["token", "logprob", "bytes", "top_logprobs"]
    for entry in content:
        # A real log-probability, not vLLM's -9999.0 stand-in for -inf.
        assert -10 < entry["logprob"] < 0, entry
        assert bytes(entry["bytes"]).decode() == entry["token"]
        top = entry["top_logprobs"]
        assert (top[0]["token"], top[0]["logprob"]) == (entry["token"], entry["logprob"])
        assert len({alt["token"] for alt in top}) == 3
        # The alternatives follow, each strictly less likely than the one before.
        assert all(a["logprob"] > b["logprob"] for a, b in itertools.pairwise(top)), top
    # Deterministic per token: wherever a token is sampled, in whichever answer, its logprob is
    # the same.
    seen: dict[str, float] = {}
    entries = [*content, *chat_logprobs(app, "something else")]
    for entry in entries:
        assert seen.setdefault(entry["token"], entry["logprob"]) == entry["logprob"], entry
    assert len(seen) < len(entries)  # some token did recur, so something was compared


def test_models_lists_served_model(app: Sanic) -> None:
    _, response = app.test_client.get("/v1/models")
    card = response.json["data"][0]
    assert card["id"] == "dummy-vllm/synthetic-1b"
    assert card["max_model_len"] == 4096


def test_tokenize_detokenize_and_usage_agree(app: Sanic) -> None:
    tokens = post(app, "/tokenize", {"prompt": "count these words"}).json
    assert tokens["count"] == len(tokens["tokens"])
    assert tokens["token_strs"] is None
    usage = post(app, "/v1/completions", {"prompt": "count these words", "max_tokens": 1}).json
    assert usage["usage"]["prompt_tokens"] == tokens["count"]
    text = post(app, "/detokenize", {"tokens": tokens["tokens"]}).json
    assert text == {"prompt": "count these words"}
    chat_tokens = post(app, "/tokenize", {"messages": CHAT["messages"]}).json
    chat = post(app, "/v1/chat/completions", {**CHAT, "max_tokens": 1}).json
    assert chat["usage"]["prompt_tokens"] == chat_tokens["count"]


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("get", "/nope", 404, {"detail": "Not Found"}),
        ("get", "/v1/chat/completions", 405, {"detail": "Method Not Allowed"}),
    ],
)
def test_unknown_route_and_wrong_method(
    app: Sanic, method: str, path: str, status: int, body: Any
) -> None:
    _, response = getattr(app.test_client, method)(path)
    assert response.status == status
    assert response.json == body


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_empty_post_answers_400(app: Sanic, path: str) -> None:
    _, response = app.test_client.post(path)
    assert response.status == 400
    assert response.json["error"]["code"] == 400


def test_malformed_json_is_400_envelope(app: Sanic) -> None:
    response = post(app, "/v1/chat/completions", b'{"messages": [')
    assert response.status == 400
    assert list(response.json["error"]) == ["message", "type", "param", "code"]


def test_unknown_model_is_404(app: Sanic) -> None:
    response = post(app, "/v1/chat/completions", {**CHAT, "model": "gpt-9"})
    assert response.status == 404
    assert response.json["error"]["message"] == "The model `gpt-9` does not exist."


def test_body_size_limit_is_413_envelope(make_app: Callable[..., Sanic]) -> None:
    app = make_app(limits=Limits(max_body_bytes=2048))
    response = post(app, "/v1/completions", {"prompt": "x" * 5000})
    assert response.status == 413
    assert response.json["error"]["code"] == 413


def test_api_key_guards_v1_only(make_app: Callable[..., Sanic]) -> None:
    app = make_app(api_key="sekrit")
    _, response = app.test_client.get("/v1/models")
    assert response.status == 401
    assert response.json == {"error": "Unauthorized"}
    _, response = app.test_client.get("/v1/models", headers={"authorization": "Bearer wrong"})
    assert response.status == 401
    _, response = app.test_client.get("/v1/models", headers={"authorization": "Bearer sekrit"})
    assert response.status == 200
    _, response = app.test_client.get("/health")
    assert response.status == 200


@pytest.mark.parametrize(
    ("version", "present", "absent"),
    [
        ("0.8", ["/v1/embeddings", "/pooling"], ["/v1/responses", "/v1/messages"]),
        ("0.11", ["/v1/responses"], ["/v1/messages", "/v1/messages/count_tokens"]),
        ("0.14", ["/v1/responses", "/v1/messages"], ["/v1/messages/count_tokens"]),
        ("0.17", ["/v1/messages", "/v1/messages/count_tokens"], []),
    ],
)
def test_routes_per_era(
    make_app: Callable[..., Sanic], version: str, present: list[str], absent: list[str]
) -> None:
    app = make_app(vllm_version=version)
    for path in present:
        # Served: a validation error for the empty body, not the router's 404.
        assert post(app, path, {}).status == 400, path
    for path in absent:
        response = post(app, path, {})
        assert response.status == 404, path
        assert response.json == {"detail": "Not Found"}


def test_count_tokens_counts_the_templated_prompt(make_app: Callable[..., Sanic]) -> None:
    app = make_app(vllm_version="0.17")
    messages = [{"role": "user", "content": "hi"}]
    counted = post(app, "/v1/messages/count_tokens", {"model": "m", "messages": messages}).json
    # "<|user|>\nhi</s>\n<|assistant|>\n", as the chat request vLLM builds.
    assert counted == {"input_tokens": 7, "context_management": {"original_input_tokens": 7}}
    served = post(
        app, "/v1/messages", {"model": CHAT["model"], "max_tokens": 1, "messages": messages}
    )
    assert served.json["usage"]["input_tokens"] == 7


def test_messages_handler_errors_are_anthropic_shaped(make_app: Callable[..., Sanic]) -> None:
    app = make_app(vllm_version="0.33")
    body = {"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    response = post(app, "/v1/messages", body)
    assert response.status == 404
    assert response.json["type"] == "error"
    assert response.json["error"]["type"] == "not_found_error"
    # An injected fault is the handler's error too.
    body["model"] = CHAT["model"]
    response = post(app, "/v1/messages", body, **{"X-Dummy-Fault": "503"})
    assert response.status == 503
    assert response.json["error"]["type"] == "overloaded_error"
    # Validation stays OpenAI-shaped.
    response = post(app, "/v1/messages", {"model": "x"})
    assert response.json["error"]["type"] == "Bad Request"
