"""A worker's model answers each kind of request once before it accepts connections."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE, ServedModel
from dummy_vllm.settings import Limits, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel


def model(max_model_len: int = 4096) -> SyntheticModel:
    served = ServedModel(
        name="m", root="m", max_model_len=max_model_len, tokenizer=Tokenizer(), limits=Limits()
    )
    return SyntheticModel(SyntheticSettings(), served, seed=0)


def without_ids(data: bytes) -> Any:
    """A body or SSE event, minus what is random per response."""
    body = json.loads(data.removeprefix(b"data: ").strip())
    for key in ("id", "created"):
        body.pop(key, None)
    return body


@pytest.mark.parametrize(
    ("route", "body"),
    [
        (CHAT_ROUTE, {"messages": [{"role": "user", "content": "Warm up."}], "max_tokens": 9}),
        (CHAT_ROUTE, {"messages": [{"role": "user", "content": "hi"}], "stream": True}),
        (COMPLETIONS_ROUTE, {"prompt": "Warm up.", "max_tokens": 5, "logprobs": 2}),
        (COMPLETIONS_ROUTE, {"prompt": [1, 2, 3], "stream": True, "echo": True}),
    ],
)
def test_warming_up_changes_no_answer(route: str, body: dict[str, Any]) -> None:
    warm, cold = model(), model()
    warm.warm_up()
    answers = []
    for responder in (warm, cold):
        plan = responder.respond(route, body, None)
        if plan.stream:
            events = [e for e in plan.events if e.data != b"data: [DONE]\n\n"]
            answers.append([(e.offset, e.tokens, without_ids(e.data)) for e in events])
        else:
            answers.append([without_ids(plan.body)])
    assert answers[0] == answers[1]


def test_a_context_too_short_to_warm_up_with_is_no_error() -> None:
    model(max_model_len=2).warm_up()
