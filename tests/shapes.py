"""Helpers to read responses and compare their shapes (key order, nesting, nulls) and timing
with real vLLM captures and recordings."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest


def shape(value: Any) -> Any:
    """Keys in order and the kind of every leaf; lists are represented by their first item."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return ["list", shape(value[0])] if value else ["list"]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def sse_events(raw: bytes) -> list[bytes]:
    """Split an SSE body on blank lines; each item is the payload after ``data: ``."""
    assert raw.endswith(b"\n\n"), raw[-40:]
    events = raw[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events), events
    return [event[len(b"data: ") :] for event in events]


def capture_events(path: Path) -> list[dict[str, Any]]:
    """JSON events of a capture file, skipping elisions, blank lines and [DONE]."""
    events = []
    for line in path.read_text().splitlines():
        if line.startswith("data: {"):
            events.append(json.loads(line[len("data: ") :]))
    return events


@dataclass
class TimedStream:
    """A streamed answer as its client saw it, in seconds after the request was sent."""

    headers: httpx.Headers
    headers_at: float
    # Each raw SSE event (with its blank line) and when its last byte arrived.
    events: list[tuple[float, bytes]]

    @property
    def payloads(self) -> list[bytes]:
        """What follows ``data: `` in each event, ``[DONE]`` included."""
        return sse_events(b"".join(raw for _, raw in self.events))

    def json_events(self) -> list[tuple[float, dict[str, Any]]]:
        """Each JSON event (token, usage or error) with its arrival."""
        return [
            (at, json.loads(raw[len(b"data: ") :]))
            for at, raw in self.events
            if raw.startswith(b"data: {")
        ]


async def read_timed(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    deadline: float = 60.0,
) -> TimedStream:
    """POST a streaming request and time the headers and every SSE event as they arrive. Fails
    the test unless the answer is a 200 that ends within ``deadline`` seconds: a read timeout
    alone would let a server that keeps dripping hold the test forever."""
    events: list[tuple[float, bytes]] = []
    start = time.perf_counter()
    try:
        async with (
            asyncio.timeout(deadline),
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            headers_at = time.perf_counter() - start
            assert response.status_code == 200, (await response.aread())[:500]
            buffer = b""
            async for chunk in response.aiter_raw():
                now = time.perf_counter() - start
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    events.append((now, event + b"\n\n"))
    except TimeoutError:
        pytest.fail(f"the stream from {url} did not end within {deadline:g} s: {events[-3:]}")
    return TimedStream(response.headers, headers_at, events)


def timed_stream(server_url: str, path: str, body: dict[str, Any]) -> TimedStream:
    """``read_timed`` on a connection opened beforehand, so that connecting is not counted as
    the server's latency."""

    async def run() -> TimedStream:
        async with httpx.AsyncClient(timeout=30) as client:
            (await client.get(f"{server_url}/health")).raise_for_status()
            return await read_timed(client, f"{server_url}{path}", body)

    return asyncio.run(run())


# Timing checks hold on a busy 2-core box. Nothing may come early: only clock granularity is
# allowed that way. Lateness is bounded generously: a few scheduler slices for the server and the
# client while another process competes for the cores, plus a share of the wait, since a longer
# wait is more likely to be hit by a stall.
EARLY_S = 0.002
LATE_S = 0.15
LATE_SHARE = 0.25


def assert_due(observed: float, due: float, what: str) -> None:
    """``observed`` seconds is not before ``due`` and at most a busy box's lateness after it."""
    late = LATE_S + LATE_SHARE * due
    assert due - EARLY_S <= observed <= due + late, (
        f"{what}: {observed * 1000:.1f} ms, due at {due * 1000:.1f} ms "
        f"(-{EARLY_S * 1000:g}/+{late * 1000:.0f} ms allowed)"
    )


def assert_on_recorded_offsets(
    arrivals: Sequence[tuple[float, bytes]], recorded: Sequence[tuple[int, bytes]]
) -> None:
    """The recorded events, each arriving on its recorded offset (ns): none early, none later
    than a busy box makes them. How close they typically are is benchmarks.replay_bench's to
    measure, on an idle machine."""
    assert [raw for _, raw in arrivals] == [raw for _, raw in recorded]
    for (at, raw), (ns, _) in zip(arrivals, recorded, strict=True):
        assert_due(at, ns * 1e-9, f"event {raw[:60]!r}")
