"""The SSE framing: building, reading and splitting events."""

from __future__ import annotations

import random

from dummy_vllm.protocol.sse import (
    DONE_EVENT,
    EventSplitter,
    event_data,
    event_name,
    frame,
    is_done,
    named_frame,
)


def test_frame_and_read_back() -> None:
    event = frame(b'{"a":1}')
    assert event == b'data: {"a":1}\n\n'
    assert event_data(event) == b'{"a":1}'
    assert is_done(DONE_EVENT)
    assert is_done(b"data:[DONE]\n\n")
    assert not is_done(event)


def test_multiline_data_is_joined_and_comments_ignored() -> None:
    assert event_data(b": keep-alive\ndata: a\ndata:b\n\n") == b"a\nb"


def test_splitter_yields_whole_events_however_the_bytes_are_cut() -> None:
    events = [frame(b'{"i":%d}' % i) for i in range(50)] + [DONE_EVENT]
    stream = b"".join(events)
    rng = random.Random(3)
    for _ in range(20):
        splitter = EventSplitter()
        got: list[bytes] = []
        position = 0
        while position < len(stream):
            size = rng.randint(1, 7)
            got += splitter.feed(stream[position : position + size])
            position += size
        assert got == events
        assert splitter.pending == 0
        assert splitter.rest() == b""


def test_splitter_keeps_a_cut_off_event_as_the_rest() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: 1\n\ndata: 2\n") == [b"data: 1\n\n"]
    assert splitter.pending == len(b"data: 2\n")
    assert splitter.rest() == b"data: 2\n"
    assert splitter.pending == 0


def test_named_events_frame_and_read_back() -> None:
    event = named_frame("response.created", b'{"a":1}')
    assert event == b'event: response.created\ndata: {"a":1}\n\n'
    assert event_name(event) == "response.created"
    assert event_data(event) == b'{"a":1}'
    assert event_name(frame(b"{}")) is None
    assert not is_done(event)
    splitter = EventSplitter()
    assert splitter.feed(event[:9]) == []
    assert splitter.feed(event[9:] + DONE_EVENT) == [event, DONE_EVENT]
