"""Configured TTFT and ITL, observed over a real socket. Tolerances hold on a busy 2-core box:
lateness is bounded generously, but earliness is not tolerated beyond clock granularity."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.requests import CHAT_ROUTE, ServedModel
from dummy_vllm.settings import JitterDistribution, LatencySettings, Limits, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel

from .conftest import LiveServer
from .shapes import assert_due, timed_stream

TTFT_MS = 150.0
ITL_MS = 30.0
TOKENS = 20
BODY = {
    "model": "timed",
    "messages": [{"role": "user", "content": "time me"}],
    "max_tokens": TOKENS,
    "ignore_eos": True,
}


def token_arrivals(server: LiveServer, body: dict[str, Any]) -> list[float]:
    """Seconds from sending to each token event (the role event excluded)."""
    stream = timed_stream(server.url, CHAT_ROUTE, body)
    return [
        at
        for at, event in stream.json_events()
        if event["choices"] and "role" not in event["choices"][0]["delta"]
    ]


def test_stream_ttft_and_itl_match_configuration(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(
        "--model",
        "timed",
        "--ttft-delay",
        str(TTFT_MS),
        "--token-delay",
        str(ITL_MS),
        "--token-delay-jitter",
        "0",
    )
    token_arrivals(server, {**BODY, "stream": True})  # warm the connection path
    arrivals = token_arrivals(server, {**BODY, "stream": True})
    assert len(arrivals) == TOKENS
    # Deadlines are absolute: token k is due at TTFT + k * ITL, drift does not add up.
    for k, arrival in enumerate(arrivals):
        assert_due(arrival, (TTFT_MS + k * ITL_MS) / 1000, f"token {k}")
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
    assert abs(statistics.median(gaps_ms) - ITL_MS) <= 5, gaps_ms


def test_non_stream_answers_when_last_token_is_due(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(
        "--model", "timed", "--ttft-delay", str(TTFT_MS), "--token-delay", str(ITL_MS)
    )
    with httpx.Client(timeout=30) as client:
        client.get(f"{server.url}/health")
        start = time.perf_counter()
        response = client.post(f"{server.url}/v1/chat/completions", json=BODY)
        elapsed = time.perf_counter() - start
    assert response.json()["usage"]["completion_tokens"] == TOKENS
    assert_due(elapsed, (TTFT_MS + (TOKENS - 1) * ITL_MS) / 1000, "the answer")


def test_jittered_schedule_is_the_seeds_and_is_followed(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(
        *("--model", "timed", "--token-delay", "20", "--token-delay-jitter", "8"),
        *("--jitter-distribution", "lognormal"),
    )
    body = {**BODY, "stream": True, "seed": 11, "max_tokens": 30}
    # The schedule a seed stands for, computed here as the server computes it: comparing the
    # two streams' gaps with each other cannot tell jitter from a busy box's noise, while a
    # token ahead of its due time is unmistakable.
    latency = LatencySettings(itl=0.02, itl_jitter=0.008, distribution=JitterDistribution.LOGNORMAL)
    served = ServedModel("timed", "timed", 4096, Tokenizer(), Limits())
    model = SyntheticModel(SyntheticSettings(latency=latency), served, seed=0)
    due = list(model.respond(CHAT_ROUTE, body, None).token_offsets)
    assert due == list(model.respond(CHAT_ROUTE, body, None).token_offsets)
    assert due != list(model.respond(CHAT_ROUTE, {**body, "seed": 12}, None).token_offsets)
    assert statistics.pstdev(b - a for a, b in itertools.pairwise(due)) > 0.002  # real spread
    for attempt in ("first", "second"):
        arrivals = token_arrivals(server, body)
        assert len(arrivals) == len(due)
        for k, (arrival, at) in enumerate(zip(arrivals, due, strict=True)):
            assert_due(arrival, at, f"{attempt} stream, token {k}")


def test_many_streams_keep_absolute_deadlines(start_server: Callable[..., LiveServer]) -> None:
    """Concurrent long streams share the worker's clock: no token comes early, and lateness
    does not add up over hundreds of tokens (a relative sleep per token would drift by about
    half a millisecond each)."""
    ttft, itl, tokens, streams = 0.04, 0.005, 300, 12
    server = start_server("--model", "timed", "--ttft-delay", "40", "--token-delay", "5")
    body = {**BODY, "stream": True, "max_tokens": tokens}
    token_arrivals(server, {**body, "max_tokens": 2})  # warm the connection path
    with ThreadPoolExecutor(streams) as pool:
        runs = list(pool.map(lambda _: token_arrivals(server, body), range(streams)))
    for run, arrivals in enumerate(runs):
        assert len(arrivals) == tokens
        # Measured from before the request was sent, so the server's deadlines are later.
        for k, arrival in enumerate(arrivals):
            assert_due(arrival, ttft + k * itl, f"stream {run}, token {k}")
