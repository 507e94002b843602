"""Configured TTFT and ITL, observed over a real socket. Tolerances hold on a busy 2-core box:
lateness is bounded generously, but earliness is not tolerated beyond clock granularity."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import LiveServer

TTFT_MS = 150.0
ITL_MS = 30.0
TOKENS = 20
BODY = {
    "model": "timed",
    "messages": [{"role": "user", "content": "time me"}],
    "max_tokens": TOKENS,
    "ignore_eos": True,
}


def stream_arrivals(server: LiveServer, body: dict[str, object]) -> tuple[float, list[float]]:
    """Seconds from sending to each token event (role event excluded), and the start time."""
    arrivals: list[float] = []
    with httpx.Client(timeout=30) as client:
        start = time.perf_counter()
        with client.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if event["choices"] and "role" not in event["choices"][0]["delta"]:
                    arrivals.append(time.perf_counter() - start)
    return start, arrivals


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
    stream_arrivals(server, {**BODY, "stream": True})  # warm the connection path
    _, arrivals = stream_arrivals(server, {**BODY, "stream": True})
    assert len(arrivals) == TOKENS
    ttft_ms = arrivals[0] * 1000
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
    assert TTFT_MS - 2 <= ttft_ms <= TTFT_MS + 60, ttft_ms
    assert abs(statistics.median(gaps_ms) - ITL_MS) <= 5, gaps_ms
    # Deadlines are absolute: the last token is due at TTFT + (N-1) * ITL, drift does not add up.
    expected_last = TTFT_MS + (TOKENS - 1) * ITL_MS
    assert expected_last - 2 <= arrivals[-1] * 1000 <= expected_last + 80, arrivals[-1]


def test_non_stream_answers_when_last_token_is_due(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(
        "--model", "timed", "--ttft-delay", str(TTFT_MS), "--token-delay", str(ITL_MS)
    )
    with httpx.Client(timeout=30) as client:
        client.get(f"{server.url}/health")
        start = time.perf_counter()
        response = client.post(f"{server.url}/v1/chat/completions", json=BODY)
        elapsed_ms = (time.perf_counter() - start) * 1000
    assert response.json()["usage"]["completion_tokens"] == TOKENS
    expected = TTFT_MS + (TOKENS - 1) * ITL_MS
    assert expected - 2 <= elapsed_ms <= expected + 80, elapsed_ms


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
    _, first = stream_arrivals(server, body)
    _, second = stream_arrivals(server, body)
    gaps_first = [(b - a) * 1000 for a, b in itertools.pairwise(first)]
    gaps_second = [(b - a) * 1000 for a, b in itertools.pairwise(second)]
    assert statistics.pstdev(gaps_first) > 2  # the spread is real, not constant
    # The same seed gives the same schedule; observed gaps agree within scheduling noise.
    assert statistics.median(abs(a - b) for a, b in zip(gaps_first, gaps_second, strict=True)) < 3


def test_many_streams_keep_absolute_deadlines(start_server: Callable[..., LiveServer]) -> None:
    """Concurrent long streams share the worker's clock: no token comes early, and lateness
    does not add up over hundreds of tokens (a relative sleep per token would drift by about
    half a millisecond each)."""
    ttft_ms, itl_ms, tokens, streams = 40.0, 5.0, 300, 12
    server = start_server("--model", "timed", "--ttft-delay", str(ttft_ms), "--token-delay", "5")
    body = {**BODY, "stream": True, "max_tokens": tokens}
    stream_arrivals(server, {**body, "max_tokens": 2})  # warm the connection path
    with ThreadPoolExecutor(streams) as pool:
        runs = list(pool.map(lambda _: stream_arrivals(server, body)[1], range(streams)))
    expected_last = ttft_ms + (tokens - 1) * itl_ms
    for arrivals in runs:
        assert len(arrivals) == tokens
        # Measured from before the request was sent, so the server's deadlines are later.
        assert all(arrival * 1000 >= ttft_ms + k * itl_ms - 2 for k, arrival in enumerate(arrivals))
        assert arrivals[-1] * 1000 <= expected_last + 100, arrivals[-1]
        gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
        assert abs(statistics.median(gaps_ms) - itl_ms) <= 1.5
