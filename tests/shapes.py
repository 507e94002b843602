"""Helpers to compare JSON shapes (key order, nesting, nulls) with real vLLM captures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
