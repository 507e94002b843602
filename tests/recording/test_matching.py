from __future__ import annotations

import json
from typing import Any

from dummy_vllm.recording.matching import (
    DEFAULT_IGNORED,
    canonical_key,
    diff_fields,
    normalise_body,
    relaxed_key,
)

CHAT = "/v1/chat/completions"


def chat(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "llama",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "temperature": 0.7,
        "max_tokens": 32,
    }
    body.update(overrides)
    return body


def test_key_ignores_member_order_and_whitespace() -> None:
    compact = json.loads(
        '{"model":"llama","max_tokens":32,"temperature":0.7,"messages":'
        '[{"content":"Be brief.","role":"system"},{"content":"Hello","role":"user"}]}'
    )
    spaced = json.loads(json.dumps(chat(), indent=4))

    assert list(compact) != list(spaced)
    assert canonical_key(CHAT, compact) == canonical_key(CHAT, spaced)


def test_key_starts_with_route_and_differs_per_route() -> None:
    key = canonical_key(CHAT, chat())

    assert key.startswith(f"{CHAT} ")
    assert key != canonical_key("/v1/completions", chat())


def test_key_hashes_the_body_so_secrets_in_it_are_not_stored() -> None:
    key = canonical_key(CHAT, chat(messages=[{"role": "user", "content": "sk-secret-in-prompt"}]))

    assert "secret" not in key
    assert "llama" not in key


def test_every_answer_changing_field_changes_the_key() -> None:
    base = canonical_key(CHAT, chat())

    for change in (
        {"temperature": 0.8},
        {"max_tokens": 33},
        {"model": "mistral"},
        {"seed": 1},
        {"n": 2},
        {"messages": [{"role": "user", "content": "Hello!"}]},
    ):
        assert canonical_key(CHAT, chat(**change)) != base, change


def test_ignored_fields_do_not_change_the_key() -> None:
    plain = canonical_key(CHAT, chat())
    decorated = chat(
        stream=True,
        stream_options={"include_usage": True},
        user="alice",
        request_id="req-123",
        priority=5,
        cache_salt="salt",
    )

    assert set(decorated) - set(chat()) == DEFAULT_IGNORED
    assert canonical_key(CHAT, decorated) == plain


def test_custom_ignore_set_replaces_the_default() -> None:
    assert canonical_key(CHAT, chat(stream=True), ignore=frozenset()) != canonical_key(
        CHAT, chat(), ignore=frozenset()
    )
    assert canonical_key(CHAT, chat(seed=1), ignore=frozenset({"seed"})) == canonical_key(
        CHAT, chat(seed=2), ignore=frozenset({"seed"})
    )


def test_include_keeps_only_the_named_fields() -> None:
    fields = frozenset({"model", "messages"})

    assert canonical_key(CHAT, chat(temperature=0.1), include=fields) == canonical_key(
        CHAT, chat(temperature=1.5), include=fields
    )
    assert canonical_key(CHAT, chat(model="other"), include=fields) != canonical_key(
        CHAT, chat(), include=fields
    )


def test_equal_json_numbers_give_equal_keys() -> None:
    assert canonical_key(CHAT, chat(temperature=1, max_tokens=32.0)) == canonical_key(
        CHAT, chat(temperature=1.0, max_tokens=32)
    )
    assert canonical_key(CHAT, chat(temperature=1.5)) != canonical_key(CHAT, chat(temperature=1))


def test_null_is_the_same_as_absent_at_top_level() -> None:
    assert canonical_key(CHAT, chat(seed=None, stop=None)) == canonical_key(CHAT, chat())


def test_booleans_are_not_numbers() -> None:
    assert canonical_key(CHAT, chat(logprobs=True)) != canonical_key(CHAT, chat(logprobs=1))


def test_max_tokens_and_max_completion_tokens_are_the_same_field() -> None:
    modern = {key: value for key, value in chat().items() if key != "max_tokens"}
    modern["max_completion_tokens"] = 32

    assert canonical_key(CHAT, modern) == canonical_key(CHAT, chat())
    assert canonical_key(CHAT, {**modern, "max_completion_tokens": 64}) != canonical_key(
        CHAT, chat()
    )
    # vLLM uses max_completion_tokens when a request sends both.
    both = chat(max_tokens=10, max_completion_tokens=32)
    assert canonical_key(CHAT, both) == canonical_key(CHAT, chat())
    # Either spelling may also be named in include/ignore.
    only = frozenset({"max_completion_tokens"})
    assert canonical_key(CHAT, modern, include=only) == canonical_key(CHAT, chat(), include=only)
    assert canonical_key(CHAT, chat(max_tokens=1), include=only) != canonical_key(
        CHAT, chat(), include=only
    )


def test_model_aliases_map_onto_the_recorded_model() -> None:
    aliases = {"my-llama": "llama"}

    assert canonical_key(CHAT, chat(model="my-llama"), model_aliases=aliases) == canonical_key(
        CHAT, chat()
    )
    assert canonical_key(CHAT, chat(model="my-llama")) != canonical_key(CHAT, chat())
    assert relaxed_key(CHAT, chat(model="my-llama"), model_aliases=aliases) == relaxed_key(
        CHAT, chat()
    )


def test_relaxed_key_uses_model_and_prompt_only() -> None:
    assert relaxed_key(CHAT, chat(temperature=0.0, seed=3)) == relaxed_key(CHAT, chat())
    assert canonical_key(CHAT, chat(temperature=0.0)) != canonical_key(CHAT, chat())
    assert relaxed_key(CHAT, chat(model="other")) != relaxed_key(CHAT, chat())
    assert relaxed_key(CHAT, chat(messages=[])) != relaxed_key(CHAT, chat())

    completion = {"model": "llama", "prompt": "Once upon", "max_tokens": 5}
    assert relaxed_key("/v1/completions", completion) == relaxed_key(
        "/v1/completions", {**completion, "max_tokens": 50}
    )
    assert relaxed_key("/v1/completions", completion) != relaxed_key(
        "/v1/completions", {**completion, "prompt": "Once upon a"}
    )


def test_diff_fields_names_nested_paths() -> None:
    recorded = chat(seed=1)
    live = chat(temperature=0.9, n=2)
    live["messages"][1]["content"] = "Hi"

    assert diff_fields(recorded, live) == ["messages[1].content", "n", "seed", "temperature"]


def test_diff_fields_reports_lists_of_different_length_whole() -> None:
    longer = chat()
    longer["messages"].append({"role": "user", "content": "More"})

    assert diff_fields(chat(), longer) == ["messages"]


def test_diff_fields_is_empty_when_keys_match() -> None:
    a = chat(stream=True, user="x", max_tokens=None, max_completion_tokens=32.0)
    b = chat(request_id="y")

    assert canonical_key(CHAT, a) == canonical_key(CHAT, b)
    assert diff_fields(a, b) == []
    assert diff_fields(a, b, ignore=frozenset()) == ["request_id", "stream", "user"]


def test_diff_fields_reports_type_changes_and_missing_nested_keys() -> None:
    a = chat(response_format={"type": "json_object"}, logprobs=True)
    b = chat(response_format={"type": "json_object", "schema": {}}, logprobs=1)

    assert diff_fields(a, b) == ["logprobs", "response_format.schema"]


def test_normalise_body_resolves_aliases_and_drops_nulls() -> None:
    body = {"model": "alias", "max_completion_tokens": 5.0, "stop": None, "n": 1}

    assert normalise_body(body, model_aliases={"alias": "llama"}) == {
        "model": "llama",
        "max_tokens": 5,
        "n": 1,
    }
