"""Replay of recordings that record mode stored as complete although their answers are in no
shape vLLM sends: they are left out with a warning, never a crash, and the rest is served."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from dummy_vllm.protocol.errors import APIError
from dummy_vllm.protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE
from dummy_vllm.recording.replay import EventKind, classify
from dummy_vllm.recording.store import StoredExchange
from dummy_vllm.settings import MissPolicy

from .test_replay import CHAT, record, responder, stream_of

BAD_EVENTS = [
    b'data: {"choices":"abc"}\n\n',
    b'data: {"choices":[{"index":null,"delta":{"content":"x"}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":"x"}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":5}}]}\n\n',
    b'data: {"choices":[7]}\n\n',
    b'data: {"choices":[{"index":0,"text":["x"]}]}\n\n',
]


@pytest.mark.parametrize("raw", BAD_EVENTS)
def test_events_in_no_vllm_shape_carry_no_token(raw: bytes) -> None:
    assert classify(raw) == (EventKind.ERROR, -1)


def _with_events(exchange: StoredExchange, events: list[bytes], seq: int) -> StoredExchange:
    record = dataclasses.replace(
        exchange.record, events=[(1_000_000 * i, e) for i, e in enumerate(events)]
    )
    return dataclasses.replace(exchange, id=seq, seq=seq, record=record)


def test_malformed_recordings_are_left_out_and_the_rest_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    streamed = {**CHAT, "stream": True}
    good = record(CHAT_ROUTE, streamed, seq=1)
    other = {**streamed, "messages": [{"role": "user", "content": "malformed"}]}
    template = record(CHAT_ROUTE, other, seq=2)
    # A token event without the id/created/model a rebuilt answer needs.
    no_meta = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
    error = b'data: {"error": {"message": "boom", "type": "BadRequestError", "code": 400}}\n\n'
    malformed = [
        _with_events(template, [*BAD_EVENTS, error, b"data: [DONE]\n\n"], seq=2),
        _with_events(template, [no_meta, b"data: [DONE]\n\n"], seq=3),
    ]
    body_record = record(COMPLETIONS_ROUTE, {"prompt": "p", "max_tokens": 2}, seq=4)
    broken_body = dataclasses.replace(
        body_record,
        record=dataclasses.replace(body_record.record, response_body=b'{"choices":"abc"}'),
    )
    with caplog.at_level(logging.WARNING, logger="dummy_vllm.replay"):
        replay = responder([good, *malformed, broken_body], on_miss=MissPolicy.ERROR)
    assert "not replaying s#3" in caplog.text
    assert "not replaying s#4" in caplog.text
    # A stream that failed before its first token (events in no shape, then an error) is
    # replayed byte for byte; asked for without a stream, it answers its error.
    plan = replay.respond(CHAT_ROUTE, other, None)
    assert [data for _, data in stream_of(plan)][:-2] == BAD_EVENTS
    with pytest.raises(APIError) as failed:
        replay.respond(CHAT_ROUTE, {**other, "stream": False}, None)
    assert (failed.value.status, failed.value.message) == (400, "boom")
    served = replay.respond(CHAT_ROUTE, streamed, None)
    assert stream_of(served)
    with pytest.raises(APIError) as missed:
        replay.respond(COMPLETIONS_ROUTE, {"prompt": "p", "max_tokens": 2}, None)
    assert missed.value.status == 404


def test_a_relaxed_match_cut_of_a_recording_with_odd_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    streamed: dict[str, Any] = {**CHAT, "stream": True, "max_tokens": 6}
    exchange = record(CHAT_ROUTE, streamed)
    events = [data for _, data in exchange.record.events]
    odd = _with_events(exchange, [events[0], BAD_EVENTS[0], *events[1:]], seq=1)
    replay = responder([odd])
    plan = replay.respond(CHAT_ROUTE, {**streamed, "max_tokens": 2}, None)
    assert [data for _, data in stream_of(plan)][-1] == b"data: [DONE]\n\n"


def test_a_relaxed_match_cut_to_no_token_still_rebuilds_its_usage() -> None:
    # Found by the fuzz test: an echo request for 0 tokens, matched to a longer recording.
    body: dict[str, Any] = {
        "prompt": [1, 2, 3],
        "max_tokens": 2,
        "echo": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    replay = responder([record(COMPLETIONS_ROUTE, body)])
    plan = replay.respond(COMPLETIONS_ROUTE, {**body, "max_tokens": 0}, None)
    events = [data for _, data in stream_of(plan)]
    assert events[-1] == b"data: [DONE]\n\n"
    assert b'"completion_tokens":0' in events[-2]
    unstreamed = replay.respond(COMPLETIONS_ROUTE, {**body, "max_tokens": 0, "stream": False}, None)
    assert unstreamed.completion_tokens == 0
