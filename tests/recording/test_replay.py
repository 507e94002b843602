"""Replay without a server: matching, conversion, usage handling, cuts, miss policies, speed.

Recordings are made in-process from synthetic plans, so their bytes and offsets are known.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable
from typing import Any

import pytest

from benchmarks.synthetic_session import exchange_from_plan
from dummy_vllm.engine import Tokenizer
from dummy_vllm.metrics import Metrics
from dummy_vllm.plan import ResponsePlan
from dummy_vllm.protocol.errors import APIError
from dummy_vllm.protocol.profiles import V0_33
from dummy_vllm.protocol.requests import (
    CHAT_ROUTE,
    COMPLETIONS_ROUTE,
    EMBEDDINGS_ROUTE,
    MESSAGES_ROUTE,
    RESPONSES_ROUTE,
    ServedModel,
)
from dummy_vllm.recording.matching import canonical_key, relaxed_key
from dummy_vllm.recording.replay import (
    SERVED_BY_HEADER,
    EventKind,
    ReplayIndex,
    ReplayResponder,
    classify,
)
from dummy_vllm.recording.store import ExchangeRecord, Outcome, StoredExchange
from dummy_vllm.scheduler import Scheduler
from dummy_vllm.settings import (
    AgentSettings,
    LatencySettings,
    Limits,
    MissPolicy,
    ReplaySettings,
    SchedulerSettings,
    SyntheticSettings,
)
from dummy_vllm.synthetic import SyntheticModel

from ..shapes import shape

TOKENIZER = Tokenizer()
SERVED = ServedModel("m", "m", 4096, TOKENIZER, Limits())
# The "upstream" whose answers are recorded: distinctive timing.
UPSTREAM = SyntheticModel(
    SyntheticSettings(latency=LatencySettings(ttft=0.2, itl=0.03, itl_jitter=0.01)), SERVED, seed=0
)
CHAT = {"model": "m", "messages": [{"role": "user", "content": "record me"}], "max_tokens": 6}


def record(route: str, body: dict[str, Any], seq: int = 1) -> StoredExchange:
    """Run ``body`` through the synthetic upstream and store what a recorder would store."""
    exchange = exchange_from_plan(route, body, UPSTREAM.respond(route, body, None))
    return StoredExchange(id=seq, session="s", seq=seq, record=exchange)


def responder(exchanges: Iterable[StoredExchange], **replay: Any) -> ReplayResponder:
    replay_settings = ReplaySettings(sessions=("s",), **replay)
    index = ReplayIndex(list(exchanges), replay_settings, seed=0)
    metrics = Metrics(
        Scheduler(SchedulerSettings()),
        enabled=True,
        model="m",
        max_model_len=2048,
        kv_capacity=2048,
        replay=True,
        directory=None,
    )
    synthetic = SyntheticModel(SyntheticSettings(), SERVED, seed=0)
    return ReplayResponder(replay_settings, index, synthetic, metrics)


def stream_of(plan: ResponsePlan) -> list[tuple[float, bytes]]:
    assert plan.stream
    plan.events = list(plan.events)  # plans may hold a one-shot generator
    return [(event.offset, event.data) for event in plan.events]


def payloads(plan: ResponsePlan) -> list[dict[str, Any]]:
    return [json.loads(data[6:]) for _, data in stream_of(plan) if data.startswith(b"data: {")]


def test_classify_recorded_events() -> None:
    plan = UPSTREAM.respond(
        CHAT_ROUTE,
        {**CHAT, "n": 2, "stream": True, "stream_options": {"include_usage": True}},
        None,
    )
    kinds = [classify(event.data) for event in plan.events]
    assert kinds[:2] == [(EventKind.ROLE, 0), (EventKind.ROLE, 1)]
    assert kinds[2:4] == [(EventKind.TOKEN, 0), (EventKind.TOKEN, 1)]
    assert kinds[-2:] == [(EventKind.USAGE, -1), (EventKind.DONE, -1)]
    assert classify(b'data: {"error": {"message": "x"}}\n\n')[0] is EventKind.ERROR


@pytest.mark.parametrize("route", [CHAT_ROUTE, COMPLETIONS_ROUTE])
def test_exact_stream_replay_is_byte_identical_with_recorded_offsets(route: str) -> None:
    body: dict[str, Any] = (
        {**CHAT, "stream": True, "n": 2}
        if route == CHAT_ROUTE
        else {"model": "m", "prompt": "record me", "max_tokens": 5, "n": 2, "stream": True}
    )
    recorded = record(route, body)
    plan = responder([recorded]).respond(route, body, None)
    assert plan.headers[SERVED_BY_HEADER] == "exact"
    replayed = stream_of(plan)
    assert [data for _, data in replayed] == [raw for _, raw in recorded.record.events]
    assert [offset for offset, _ in replayed] == pytest.approx(
        [ns * 1e-9 for ns, _ in recorded.record.events]
    )


def test_stream_and_stream_options_do_not_change_the_match() -> None:
    recorded = record(CHAT_ROUTE, {**CHAT, "stream": True})
    plan = responder([recorded]).respond(CHAT_ROUTE, {**CHAT, "stream": False}, None)
    assert plan.headers[SERVED_BY_HEADER] == "exact"


def test_usage_event_follows_the_replaying_request() -> None:
    with_usage = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    recorded_with = record(CHAT_ROUTE, with_usage)
    plan = responder([recorded_with]).respond(CHAT_ROUTE, {**CHAT, "stream": True}, None)
    assert all(event["choices"] for event in payloads(plan))

    recorded_without = record(CHAT_ROUTE, {**CHAT, "stream": True})
    plan = responder([recorded_without]).respond(CHAT_ROUTE, with_usage, None)
    events = payloads(plan)
    assert events[-1]["choices"] == []
    assert events[-1]["usage"] == {
        "prompt_tokens": recorded_without.record.prompt_tokens,
        "total_tokens": recorded_without.record.prompt_tokens + 6,
        "completion_tokens": 6,
    }
    assert stream_of(plan)[-1][1] == b"data: [DONE]\n\n"


def test_streamed_recording_answers_a_non_streaming_request() -> None:
    recorded = record(CHAT_ROUTE, {**CHAT, "stream": True, "n": 2})
    plan = responder([recorded]).respond(CHAT_ROUTE, {**CHAT, "n": 2}, None)
    assert not plan.stream
    body = json.loads(plan.body)
    direct = json.loads(UPSTREAM.respond(CHAT_ROUTE, {**CHAT, "n": 2}, None).body)
    assert shape(body) == shape(direct)
    assert [c["message"]["content"] for c in body["choices"]] == [
        c["message"]["content"] for c in direct["choices"]
    ]
    assert body["usage"] == direct["usage"]
    assert plan.body_offset == pytest.approx(recorded.record.events[-1][0] * 1e-9)


def test_non_streamed_recording_answers_a_streaming_request() -> None:
    body = {"model": "m", "prompt": "record me", "max_tokens": 7}
    recorded = record(COMPLETIONS_ROUTE, body)
    plan = responder([recorded]).respond(COMPLETIONS_ROUTE, {**body, "stream": True}, None)
    events = payloads(plan)
    text = json.loads(recorded.record.response_body or b"")["choices"][0]["text"]
    assert "".join(event["choices"][0]["text"] for event in events) == text
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    # Spread over the recorded total time: the last token is due when the body was.
    assert stream_of(plan)[-1][0] == pytest.approx(recorded.record.complete_ns * 1e-9)


def test_relaxed_match_with_fewer_tokens_cuts_the_stream() -> None:
    recorded = record(CHAT_ROUTE, {**CHAT, "stream": True, "max_tokens": 6})
    asked = {**CHAT, "stream": True, "max_tokens": 3, "stream_options": {"include_usage": True}}
    plan = responder([recorded]).respond(CHAT_ROUTE, asked, None)
    assert plan.headers[SERVED_BY_HEADER] == "relaxed"
    events = payloads(plan)
    tokens = [e for e in events if e["choices"] and "role" not in e["choices"][0]["delta"]]
    assert len(tokens) == 3
    assert tokens[-1]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["usage"]["completion_tokens"] == 3


def test_repeated_requests_cycle_through_recordings() -> None:
    body = {**CHAT, "stream": False}
    first = record(CHAT_ROUTE, {**body, "seed": 1})
    second = record(CHAT_ROUTE, {**body, "seed": 2}, seq=2)
    # Same key for both: store them under the unseeded request's key.
    recordings = [
        StoredExchange(x.id, x.session, x.seq, _rekeyed(x.record, body)) for x in (first, second)
    ]
    replay = responder(recordings)
    bodies = [replay.respond(CHAT_ROUTE, body, None).body for _ in range(6)]
    assert len(set(bodies)) == 2
    assert bodies[0::2] == [bodies[0]] * 3
    assert bodies[1::2] == [bodies[1]] * 3


def _rekeyed(record_: ExchangeRecord, body: dict[str, Any]) -> ExchangeRecord:
    from dataclasses import replace

    return replace(
        record_,
        match_key=canonical_key(CHAT_ROUTE, body),
        relaxed_key=relaxed_key(CHAT_ROUTE, body),
    )


def test_miss_error_names_nearest_recording_and_differing_fields() -> None:
    replay = responder([record(CHAT_ROUTE, CHAT)])
    other = {**CHAT, "messages": [{"role": "user", "content": "something else"}]}
    with pytest.raises(APIError) as caught:
        replay.respond(CHAT_ROUTE, other, None)
    assert caught.value.status == 404
    assert "s#1" in caught.value.message
    assert "messages[0].content" in caught.value.message


def test_miss_synthetic_answers_like_synthetic_mode() -> None:
    replay = responder([record(CHAT_ROUTE, CHAT)], on_miss=MissPolicy.SYNTHETIC)
    other = {**CHAT, "messages": [{"role": "user", "content": "unseen"}], "max_tokens": 4}
    plan = replay.respond(CHAT_ROUTE, other, None)
    assert plan.headers[SERVED_BY_HEADER] == "miss-synthetic"
    assert json.loads(plan.body)["usage"]["completion_tokens"] == 4


def test_miss_profile_uses_the_recorded_timing() -> None:
    recorded = record(CHAT_ROUTE, {**CHAT, "stream": True, "max_tokens": 20})
    replay = responder([recorded], on_miss=MissPolicy.PROFILE)
    other = {
        **CHAT,
        "messages": [{"role": "user", "content": "unseen"}],
        "max_tokens": 30,
        "stream": True,
    }
    plan = replay.respond(CHAT_ROUTE, other, None)
    assert plan.headers[SERVED_BY_HEADER] == "miss-profile"
    offsets = sorted({offset for offset, _ in stream_of(plan)})
    recorded_tokens = [
        ns * 1e-9 for ns, raw in recorded.record.events if classify(raw)[0] is EventKind.TOKEN
    ]
    assert offsets[0] == pytest.approx(recorded_tokens[0])
    recorded_gaps = [b - a for a, b in itertools.pairwise(recorded_tokens)]
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert gaps[: len(recorded_gaps)] == pytest.approx(recorded_gaps)
    assert len(offsets) == 30


def test_miss_profile_takes_turns_over_equally_near_recordings() -> None:
    def timed(ttft: float, prompt: str, max_tokens: int, seq: int) -> StoredExchange:
        upstream = SyntheticModel(
            SyntheticSettings(latency=LatencySettings(ttft=ttft, itl=0.01)), SERVED, seed=0
        )
        body = {**CHAT, "messages": [{"role": "user", "content": prompt}]}
        body |= {"stream": True, "max_tokens": max_tokens}
        plan = upstream.respond(CHAT_ROUTE, body, None)
        return StoredExchange(seq, "s", seq, exchange_from_plan(CHAT_ROUTE, body, plan))

    # Three alike recordings and one of very different length, never the nearest.
    recorded = [timed(t, "alike", 20, i) for i, t in enumerate((0.1, 0.2, 0.3))]
    recorded.append(timed(0.9, "a much longer prompt than the others " * 20, 200, 4))
    replay = responder(recorded, on_miss=MissPolicy.PROFILE)
    miss = {**CHAT, "messages": [{"role": "user", "content": "other"}], "stream": True}
    miss["max_tokens"] = 20

    first_offsets = [
        min(offset for offset, _ in stream_of(replay.respond(CHAT_ROUTE, miss, None)))
        for _ in range(6)
    ]

    assert sorted(first_offsets) == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3])


@pytest.mark.parametrize(("options", "scale"), [({"speed": 2.0}, 0.5), ({"instant": True}, 0.0)])
def test_speed_scales_offsets(options: dict[str, Any], scale: float) -> None:
    body = {**CHAT, "stream": True}
    recorded = record(CHAT_ROUTE, body)
    plan = responder([recorded], **options).respond(CHAT_ROUTE, body, None)
    assert [offset for offset, _ in stream_of(plan)] == pytest.approx(
        [ns * 1e-9 * scale for ns, _ in recorded.record.events]
    )


def test_unreplayable_outcomes_are_skipped() -> None:
    from dataclasses import replace

    aborted = record(CHAT_ROUTE, CHAT)
    aborted = StoredExchange(1, "s", 1, replace(aborted.record, outcome=Outcome.CLIENT_ABORTED))
    with pytest.raises(APIError):
        responder([aborted]).respond(CHAT_ROUTE, CHAT, None)


def test_seeded_round_robin_start_is_reproducible() -> None:
    body = {**CHAT, "stream": False}
    recordings = [
        StoredExchange(i, "s", i, _rekeyed(record(CHAT_ROUTE, {**body, "seed": i}).record, body))
        for i in range(1, 6)
    ]
    firsts = {responder(recordings).respond(CHAT_ROUTE, body, None).body for _ in range(3)}
    assert len(firsts) == 1
    random.seed(0)  # unrelated global state must not matter
    assert responder(recordings).respond(CHAT_ROUTE, body, None).body in firsts


# --- tool calls -------------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
TOOL_CHAT = {**CHAT, "max_tokens": 60, "tools": TOOLS, "tool_choice": "required", "stream": True}


def tool_upstream() -> SyntheticModel:
    agent = AgentSettings(enable_auto_tool_choice=True, tool_call_parser="hermes")
    served = ServedModel("m", "m", 4096, TOKENIZER, Limits(), agent=agent)
    return SyntheticModel(SyntheticSettings(agent=agent), served, seed=0)


def test_recorded_tool_call_streams_replay_byte_for_byte() -> None:
    upstream = tool_upstream()
    recorded = exchange_from_plan(
        CHAT_ROUTE, TOOL_CHAT, upstream.respond(CHAT_ROUTE, TOOL_CHAT, None)
    )
    assert any(b'"tool_calls":[{"id":"chatcmpl-tool-' in raw for _, raw in recorded.events)
    replay = responder([StoredExchange(id=1, session="s", seq=1, record=recorded)], instant=True)
    plan = replay.respond(CHAT_ROUTE, TOOL_CHAT, None)
    assert plan.headers[SERVED_BY_HEADER] == "exact"
    assert [data for _, data in stream_of(plan)] == [raw for _, raw in recorded.events]
    # A non-streamed request gets the calls assembled into the message, as vLLM would send.
    body = json.loads(replay.respond(CHAT_ROUTE, {**TOOL_CHAT, "stream": False}, None).body)
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert "city" in json.loads(call["function"]["arguments"])
    assert body["choices"][0]["finish_reason"] == "tool_calls"


def test_tools_and_formats_are_part_of_both_keys() -> None:
    plain = {**CHAT}
    for extra in (
        {"tools": TOOLS},
        {"tools": TOOLS, "tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"structured_outputs": {"choice": ["a", "b"]}},
        {"guided_json": {"type": "object"}},
    ):
        assert canonical_key(CHAT_ROUTE, {**plain, **extra}) != canonical_key(CHAT_ROUTE, plain)
        assert relaxed_key(CHAT_ROUTE, {**plain, **extra}) != relaxed_key(CHAT_ROUTE, plain)
    assert relaxed_key(CHAT_ROUTE, {**plain, "max_tokens": 3}) == relaxed_key(CHAT_ROUTE, plain)


def test_a_profile_miss_answers_a_forced_tool_call_with_one() -> None:
    replay = responder([record(CHAT_ROUTE, {**CHAT, "stream": True})], on_miss=MissPolicy.PROFILE)
    named = {"type": "function", "function": {"name": "get_weather"}}
    request = {**CHAT, "max_tokens": 60, "tools": TOOLS, "tool_choice": named}
    plan = replay.respond(CHAT_ROUTE, request, None)
    assert plan.headers[SERVED_BY_HEADER] == "miss-profile"
    (call,) = json.loads(plan.body)["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"])["city"]


# --- named-event streams and embeddings: replayed only as recorded ---------------------------

UPSTREAM_033 = SyntheticModel(
    SyntheticSettings(latency=LatencySettings(ttft=0.2, itl=0.03)),
    ServedModel("m", "m", 4096, TOKENIZER, Limits(), profile=V0_33),
    seed=0,
)
RESPONSES = {"model": "m", "input": "record me", "max_output_tokens": 5, "stream": True}
MESSAGES = {
    "model": "m",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "record me"}],
    "stream": True,
}


def record_033(route: str, body: dict[str, Any]) -> StoredExchange:
    exchange = exchange_from_plan(route, body, UPSTREAM_033.respond(route, body, None))
    return StoredExchange(id=1, session="s", seq=1, record=exchange)


def test_classify_named_events() -> None:
    plan = UPSTREAM_033.respond(RESPONSES_ROUTE, RESPONSES, None)
    kinds = [classify(event.data)[0] for event in plan.events]
    assert kinds.count(EventKind.TOKEN) == 5
    assert set(kinds) == {EventKind.NAMED, EventKind.TOKEN}
    plan = UPSTREAM_033.respond(MESSAGES_ROUTE, MESSAGES, None)
    kinds = [classify(event.data)[0] for event in plan.events]
    assert kinds.count(EventKind.TOKEN) == 5
    assert classify(b'event: error\ndata: {"type":"error"}\n\n')[0] is EventKind.ERROR


@pytest.mark.parametrize(
    ("route", "body"), [(RESPONSES_ROUTE, RESPONSES), (MESSAGES_ROUTE, MESSAGES)]
)
def test_named_streams_replay_verbatim(route: str, body: dict[str, Any]) -> None:
    recorded = record_033(route, body)
    served = responder([recorded])
    # stream_options would add an OpenAI usage event to a chat stream: never to these.
    plan = served.respond(route, {**body, "stream_options": {"include_usage": True}}, None)
    assert plan.headers[SERVED_BY_HEADER] == "exact"
    replayed = stream_of(plan)
    assert [raw for _, raw in replayed] == [raw for _, raw in recorded.record.events]
    assert [at for at, _ in replayed] == pytest.approx(
        [ns / 1e9 for ns, _ in recorded.record.events]
    )
    assert plan.finish_reasons == ("length",)
    assert sum(event.tokens for event in plan.events) == 5
    # A relaxed match is not cut to its max tokens either.
    relaxed = served.respond(route, {**body, "temperature": 0.5}, None)
    assert relaxed.headers[SERVED_BY_HEADER] == "relaxed"
    assert [raw for _, raw in stream_of(relaxed)] == [raw for _, raw in recorded.record.events]


def test_embeddings_replay_verbatim_and_streaming_mismatches_miss() -> None:
    body = {"model": "m", "input": ["a", "b c"]}
    recorded = record_033(EMBEDDINGS_ROUTE, body)
    plan = responder([recorded]).respond(EMBEDDINGS_ROUTE, body, None)
    assert plan.body == recorded.record.response_body
    assert plan.finish_reasons == ("stop", "stop")
    streamed = record_033(RESPONSES_ROUTE, RESPONSES)
    with pytest.raises(APIError, match="was recorded streamed"):
        responder([streamed]).respond(RESPONSES_ROUTE, {**RESPONSES, "stream": False}, None)
    fallback = responder([streamed], on_miss=MissPolicy.SYNTHETIC).respond(
        RESPONSES_ROUTE, {**RESPONSES, "stream": False}, None
    )
    assert json.loads(fallback.body)["object"] == "response"
