"""Server-sent events as vLLM writes them: ``data: <json>\\n\\n`` per event, ``data: [DONE]``
last. The Responses and Anthropic routes name their events (``event: <name>\\ndata: <json>``)
and end without ``[DONE]`` (Anthropic sends one anyway up to 0.17). The one place that knows
the framing: responses build events with it, record mode splits upstream bytes with it, replay
and the store read recorded events with it."""

from __future__ import annotations

SSE_MEDIA_TYPE = "text/event-stream"
SSE_CONTENT_TYPE = f"{SSE_MEDIA_TYPE}; charset=utf-8"
EVENT_SEPARATOR = b"\n\n"
DATA_PREFIX = b"data: "
EVENT_PREFIX = b"event: "
DONE_PAYLOAD = b"[DONE]"
# The last event as it starts on the wire (a prefix to look for in stored events).
DONE_LINE = DATA_PREFIX + DONE_PAYLOAD
DONE_EVENT = DONE_LINE + EVENT_SEPARATOR


def frame(payload: bytes) -> bytes:
    """One event carrying ``payload``."""
    return DATA_PREFIX + payload + EVENT_SEPARATOR


def named_frame(name: str, payload: bytes) -> bytes:
    """One named event carrying ``payload``."""
    return b"%b%b\n%b%b%b" % (EVENT_PREFIX, name.encode(), DATA_PREFIX, payload, EVENT_SEPARATOR)


def event_name(event: bytes) -> str | None:
    """The name of an event (its ``event:`` line), None for an unnamed one."""
    for line in event.splitlines():
        if line.startswith(b"event:"):
            return line[6:].strip().decode(errors="replace")
    return None


def event_data(event: bytes) -> bytes:
    """The payload of an event: its ``data:`` lines joined, as an SSE client reads them."""
    return b"\n".join(
        line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")
    )


def is_done(event: bytes) -> bool:
    return event_data(event).strip() == DONE_PAYLOAD


class EventTooLarge(Exception):
    """An event longer than allowed; ``events`` are the whole ones that came before it."""

    def __init__(self, limit: int, events: list[bytes]) -> None:
        super().__init__(f"an SSE event exceeds {limit} bytes")
        self.limit = limit
        self.events = events


class EventSplitter:
    """Splits a byte stream into whole events (separator included) as chunks arrive.

    Each byte is searched once: a chunk is scanned from where the previous search stopped, so
    an event arriving in many small pieces costs linear, not quadratic, time. An event may hold
    at most ``max_event_bytes``: beyond, ``feed`` raises ``EventTooLarge`` instead of buffering
    (a body that is no SSE at all would otherwise be kept whole).
    """

    __slots__ = ("_max", "_parts", "_scanned")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._parts = bytearray()
        # Where the next separator search starts (a separator may straddle two chunks).
        self._scanned = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events completed by ``chunk``."""
        buffer = self._parts
        buffer += chunk
        events: list[bytes] = []
        start = 0
        search = max(self._scanned - len(EVENT_SEPARATOR) + 1, 0)
        limit = self._max
        while (end := buffer.find(EVENT_SEPARATOR, search)) >= 0:
            stop = end + len(EVENT_SEPARATOR)
            if limit is not None and stop - start > limit:
                raise EventTooLarge(limit, events)
            events.append(bytes(buffer[start:stop]))
            start = search = stop
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        if limit is not None and len(buffer) > limit:
            raise EventTooLarge(limit, events)
        return events

    @property
    def pending(self) -> int:
        """Bytes received since the last whole event."""
        return len(self._parts)

    def rest(self) -> bytes:
        """Bytes after the last separator (an event cut off when the stream ended)."""
        rest = bytes(self._parts)
        self._parts.clear()
        self._scanned = 0
        return rest
