"""Helpers to read responses and compare their shapes (key order, nesting, nulls) and timing
with real vLLM captures and recordings."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx


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


def timed_events(
    client: httpx.Client, url: str, body: dict[str, Any]
) -> tuple[httpx.Headers, list[tuple[float, bytes]]]:
    """POST a streaming request; each raw SSE event with its arrival, seconds after sending."""
    arrivals: list[tuple[float, bytes]] = []
    start = time.perf_counter()
    with client.stream("POST", url, json=body) as response:
        buffer = b""
        for chunk in response.iter_raw():
            now = time.perf_counter() - start
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                arrivals.append((now, event + b"\n\n"))
    return response.headers, arrivals


def arrival_errors_ms(
    arrivals: list[tuple[float, bytes]], recorded: Sequence[tuple[int, bytes]]
) -> list[float]:
    """Arrival minus recorded offset (ns) of each event, in ms."""
    return [(at - ns * 1e-9) * 1000 for (at, _), (ns, _) in zip(arrivals, recorded, strict=True)]
