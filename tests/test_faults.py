"""Fault injection as pure plan transformations and seeded choices: no server needed."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import pytest

from dummy_vllm.engine import Tokenizer
from dummy_vllm.faults import Fault, FaultInjector, parse_fault
from dummy_vllm.plan import ResponsePlan
from dummy_vllm.protocol.errors import APIError
from dummy_vllm.protocol.profiles import DEFAULT_PROFILE, V0_17, V0_33, Profile
from dummy_vllm.protocol.requests import (
    CHAT_ROUTE,
    COMPLETIONS_ROUTE,
    MESSAGES_ROUTE,
    RESPONSES_ROUTE,
    ServedModel,
)
from dummy_vllm.protocol.sse import DONE_EVENT, event_data
from dummy_vllm.settings import (
    FaultSettings,
    FaultType,
    LatencySettings,
    Limits,
    SettingsError,
    SyntheticSettings,
)
from dummy_vllm.synthetic import SyntheticModel

MODEL = SyntheticModel(
    SyntheticSettings(latency=LatencySettings(ttft=0.1, itl=0.01)),
    ServedModel("m", "m", 2048, Tokenizer(), Limits()),
    seed=0,
)
FAULTS = FaultSettings(after_tokens=3, stall=2.0, delay=1.5)


def plan(stream: bool, max_tokens: int = 6, route: str = COMPLETIONS_ROUTE) -> ResponsePlan:
    body: dict[str, Any] = {"model": "m", "max_tokens": max_tokens, "stream": stream}
    if route == CHAT_ROUTE:
        body["messages"] = [{"role": "user", "content": "hi"}]
    else:
        body["prompt"] = "hi"
    planned = MODEL.respond(route, body, None)
    # Events as a list, so a test can read the original after a fault read it.
    return dataclasses.replace(planned, events=list(planned.events))


def token_events(events: list[Any]) -> list[Any]:
    return [event for event in events if event.tokens]


# --- choosing ---------------------------------------------------------------------------------


def test_header_selects_a_fault_with_parameters() -> None:
    assert parse_fault("cut", FAULTS) == Fault(FaultType.CUT, 3, 1.5)
    assert parse_fault("stall;ms=2500;after=5", FAULTS) == Fault(FaultType.STALL, 5, 2.5)
    assert parse_fault("stall", FAULTS) == Fault(FaultType.STALL, 3, 2.0)
    assert parse_fault(" slow-first-byte ; ms=40 ", FAULTS) == Fault(
        FaultType.SLOW_FIRST_BYTE, 3, 0.04
    )
    assert parse_fault("503", FAULTS) == Fault(FaultType.UNAVAILABLE, 3, 1.5)
    assert parse_fault("none", FAULTS) is None


@pytest.mark.parametrize("header", ["bogus", "cut;after=-1", "stall;ms=x", "stall;len=3", "cut;²"])
def test_malformed_header_is_a_400_naming_the_header(header: str) -> None:
    with pytest.raises(APIError) as caught:
        parse_fault(header, FAULTS)
    assert caught.value.status == 400
    assert caught.value.param == "X-Dummy-Fault"


def test_header_wins_over_the_rate_and_draws_nothing() -> None:
    settings = FaultSettings(rate=1.0, types=(FaultType.INTERNAL_ERROR,))
    injector = FaultInjector(settings, seed=1)
    assert injector.choose("none") is None
    assert injector.choose("cut") == Fault(FaultType.CUT, 3, 2.0)
    reference = FaultInjector(settings, seed=1)
    assert injector.choose(None) == reference.choose(None)


def test_draws_are_seeded_reproducible_and_follow_the_rate() -> None:
    settings = FaultSettings(rate=0.3, types=(FaultType.CUT, FaultType.RATE_LIMITED))

    def sequence(seed: int) -> list[Fault | None]:
        injector = FaultInjector(settings, seed)
        return [injector.choose(None) for _ in range(2000)]

    first = sequence(7)
    assert first == sequence(7)
    assert first != sequence(8)
    kinds = Counter(fault.kind for fault in first if fault is not None)
    assert 500 < sum(kinds.values()) < 700
    assert set(kinds) == {FaultType.CUT, FaultType.RATE_LIMITED}
    assert FaultInjector(FaultSettings(), seed=7).choose(None) is None


def test_a_fault_rate_above_one_is_refused() -> None:
    with pytest.raises(SettingsError):
        FaultSettings(rate=1.5)


# --- errors before the plan -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        (FaultType.RATE_LIMITED, 429, "RateLimitError"),
        (FaultType.INTERNAL_ERROR, 500, "InternalServerError"),
        (FaultType.UNAVAILABLE, 503, "ServiceUnavailableError"),
        (FaultType.CONTEXT_LENGTH, 400, "BadRequestError"),
    ],
)
def test_error_faults_answer_in_vllms_envelope(
    kind: FaultType, status: int, error_type: str
) -> None:
    error = Fault(kind, 3, 0.0).error(DEFAULT_PROFILE, max_model_len=2048)
    assert error is not None
    body = json.loads(error.body())
    assert body["error"]["code"] == status
    assert body["error"]["type"] == error_type
    if kind is FaultType.CONTEXT_LENGTH:
        assert body["error"]["message"].startswith(
            "This model's maximum context length is 2048 tokens. However, your request has 2048"
        )


def test_plan_faults_raise_no_error() -> None:
    for kind in (FaultType.CUT, FaultType.ERROR_EVENT, FaultType.STALL, FaultType.SLOW_FIRST_BYTE):
        assert Fault(kind, 3, 1.0).error(DEFAULT_PROFILE, 2048) is None


# --- plan transformations ---------------------------------------------------------------------


@pytest.mark.parametrize("route", [CHAT_ROUTE, COMPLETIONS_ROUTE])
def test_cut_keeps_n_tokens_and_drops_the_connection(route: str) -> None:
    original = plan(stream=True, route=route)
    cut = Fault(FaultType.CUT, 3, 0.0).apply(original, DEFAULT_PROFILE, route)
    events = list(cut.events)
    assert len(token_events(events)) == 3
    assert all(event.data != DONE_EVENT for event in events)
    assert cut.drop_connection
    assert cut.finish_reasons == ("abort",)
    # A pure transformation: the original plan still runs in full.
    assert original.finish_reasons == ("length",)
    assert not original.drop_connection
    assert list(original.events)[-1].data == DONE_EVENT


def test_error_event_follows_n_tokens_then_done() -> None:
    faulted = Fault(FaultType.ERROR_EVENT, 2, 0.0).apply(
        plan(stream=True), DEFAULT_PROFILE, COMPLETIONS_ROUTE
    )
    events = list(faulted.events)
    assert len(token_events(events)) == 2
    error, done = events[-2:]
    assert done.data == DONE_EVENT
    assert error.data.startswith(b'data: {"error": {"message": ')
    envelope = json.loads(error.data[len(b"data: ") :])
    assert envelope["error"]["type"] == "InternalServerError"
    assert envelope["error"]["code"] == 500
    # Sent when the third token would have been due.
    assert error.offset == pytest.approx(0.1 + 2 * 0.01)
    assert not faulted.drop_connection


def test_faults_strike_before_done_when_the_stream_is_shorter() -> None:
    events = list(
        Fault(FaultType.CUT, 50, 0.0)
        .apply(plan(stream=True, max_tokens=4), DEFAULT_PROFILE, COMPLETIONS_ROUTE)
        .events
    )
    assert len(token_events(events)) == 4
    assert events[-1].data != DONE_EVENT


def test_stall_delays_every_event_after_n_tokens() -> None:
    planned = plan(stream=True)
    stalled = list(
        Fault(FaultType.STALL, 3, 2.0).apply(planned, DEFAULT_PROFILE, COMPLETIONS_ROUTE).events
    )
    original = list(planned.events)
    assert [event.data for event in stalled] == [event.data for event in original]
    shifts = [b.offset - a.offset for a, b in zip(original, stalled, strict=True)]
    assert shifts[:3] == [0.0, 0.0, 0.0]
    assert shifts[3:] == pytest.approx([2.0] * (len(shifts) - 3))


def test_slow_first_byte_holds_the_headers() -> None:
    assert (
        Fault(FaultType.SLOW_FIRST_BYTE, 3, 1.5)
        .apply(plan(stream=True), DEFAULT_PROFILE, COMPLETIONS_ROUTE)
        .headers_offset
        == 1.5
    )


def test_non_streamed_answers_are_broken_too() -> None:
    original = plan(stream=False)
    stalled = Fault(FaultType.STALL, 3, 2.0).apply(original, DEFAULT_PROFILE, COMPLETIONS_ROUTE)
    assert stalled.body_offset == pytest.approx(original.body_offset + 2.0)
    assert stalled.body == original.body
    assert list(stalled.token_offsets[:3]) == list(original.token_offsets[:3])
    assert stalled.token_offsets[3] == pytest.approx(original.token_offsets[3] + 2.0)

    cut = Fault(FaultType.CUT, 3, 0.0).apply(original, DEFAULT_PROFILE, COMPLETIONS_ROUTE)
    assert cut.drop_connection
    assert cut.body == b""

    failed = Fault(FaultType.ERROR_EVENT, 3, 0.0).apply(
        original, DEFAULT_PROFILE, COMPLETIONS_ROUTE
    )
    assert failed.status == 500
    assert json.loads(failed.body)["error"]["type"] == "InternalServerError"
    assert failed.body_offset == original.body_offset
    assert failed.completion_tokens == 0
    assert failed.finish_reasons == ("abort",)


def named_plan(profile: Profile, route: str, stream: bool = True) -> ResponsePlan:
    served = SyntheticModel(
        SyntheticSettings(), ServedModel("m", "m", 2048, Tokenizer(), Limits(), profile=profile), 0
    )
    if route == RESPONSES_ROUTE:
        body: dict[str, Any] = {"input": "hi", "max_output_tokens": 6}
    else:
        body = {"model": "m", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}
    return served.respond(route, {**body, "stream": stream}, None)


def test_error_events_take_the_shape_of_the_route() -> None:
    fault = Fault(FaultType.ERROR_EVENT, 2, 0.0)
    events = list(fault.apply(named_plan(V0_33, RESPONSES_ROUTE), V0_33, RESPONSES_ROUTE).events)
    assert len(token_events(events)) == 2
    assert events[-1].data.startswith(b"event: error\ndata: ")
    error = json.loads(event_data(events[-1].data))
    # Numbered after every event before it; no [DONE] in a Responses stream.
    assert error["sequence_number"] == len(events) - 1
    assert error["type"] == "error"
    events = list(fault.apply(named_plan(V0_17, MESSAGES_ROUTE), V0_17, MESSAGES_ROUTE).events)
    error_event, done = events[-2:]
    assert json.loads(event_data(error_event.data))["error"]["type"] == "internal_error"
    assert done.data == DONE_EVENT
    failed = fault.apply(named_plan(V0_33, MESSAGES_ROUTE, False), V0_33, MESSAGES_ROUTE)
    assert failed.status == 500
    assert json.loads(failed.body)["error"]["type"] == "api_error"


def test_a_short_named_stream_is_struck_before_its_last_event() -> None:
    cut = Fault(FaultType.CUT, 50, 0.0).apply(
        named_plan(V0_33, RESPONSES_ROUTE), V0_33, RESPONSES_ROUTE
    )
    events = list(cut.events)
    assert len(token_events(events)) == 6
    assert not any(b"response.incomplete" in event.data for event in events)
