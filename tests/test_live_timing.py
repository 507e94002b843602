"""Configured TTFT and ITL, observed over a real socket. Tolerances hold on a busy 2-core box:
lateness is bounded generously, but earliness is not tolerated beyond clock granularity."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from dummy_vllm.protocol.requests import CHAT_ROUTE

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


def test_jitter_is_seeded_and_reproducible(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(
        "--model",
        "timed",
        "--token-delay",
        "20",
        "--token-delay-jitter",
        "8",
        "--jitter-distribution",
        "lognormal",
    )
    body = {**BODY, "stream": True, "seed": 11, "max_tokens": 30}
    first = token_arrivals(server, body)
    second = token_arrivals(server, body)
    gaps_first = [(b - a) * 1000 for a, b in itertools.pairwise(first)]
    gaps_second = [(b - a) * 1000 for a, b in itertools.pairwise(second)]
    assert statistics.pstdev(gaps_first) > 2  # the spread is real, not constant
    # The same seed gives the same schedule; observed gaps agree within scheduling noise.
    assert statistics.median(abs(a - b) for a, b in zip(gaps_first, gaps_second, strict=True)) < 3
