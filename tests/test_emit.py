"""The per-worker stream clock, on a real event loop with recording transports."""

from __future__ import annotations

import asyncio
import gc
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from dummy_vllm.emit import DUE_EARLY, MAX_WRITE_BYTES, Delivery, StreamClock, _Stream
from dummy_vllm.plan import PlanEvent, ResponsePlan

CHUNK = re.compile(rb"([0-9a-f]+)\r\n")


@pytest.fixture(autouse=True)
def no_collection_pauses() -> Iterator[None]:
    """These tests time events to the millisecond. The server freezes what it starts with and
    rarely collects the oldest generation (app.py); here a full collection of what earlier tests
    left (50-80 ms after tests/engine) made a stream's first event due before it was handed over."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@dataclass
class RecordingTransport:
    loop: asyncio.AbstractEventLoop
    writes: list[tuple[float, bytes]] = field(default_factory=list)
    buffered: int = 0
    closing: bool = False

    def write(self, data: bytes) -> None:
        self.writes.append((self.loop.time(), data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


@dataclass
class FakeRequest:
    transport: RecordingTransport


def unchunk(data: bytes) -> bytes:
    """The payload of one chunked-encoding chunk, checking its framing."""
    match = CHUNK.match(data)
    assert match is not None, data
    size = int(match.group(1), 16)
    body = data[match.end() :]
    assert size > 0, data  # an empty chunk would end the response
    assert body[size:] == b"\r\n", data
    return body[:size]


def plan_of(offsets: list[float]) -> ResponsePlan:
    events = [PlanEvent(offset, b"e%d;" % i, 1) for i, offset in enumerate(offsets)]
    return ResponsePlan(stream=True, events=events)


async def run_stream(
    clock: StreamClock, transport: RecordingTransport, plan: ResponsePlan, start: float
) -> tuple[_Stream, Delivery, bool]:
    """Hand a stream to the clock as the emitter does once nothing is due."""
    delivery = Delivery()
    stream = _Stream(FakeRequest(transport), plan, start, delivery)  # type: ignore[arg-type]
    assert not stream.collect(transport.loop.time() + DUE_EARLY)
    assert not stream.pending
    finished = await clock.hand_over(stream)
    return stream, delivery, finished


async def test_clock_writes_each_event_when_due_on_absolute_deadlines() -> None:
    loop = asyncio.get_running_loop()
    clock = StreamClock(loop)
    start = loop.time()
    itl = 0.003
    plans = [plan_of([0.02 + shift + i * itl for i in range(60)]) for shift in (0, 0.001, 0.0015)]
    transports = [RecordingTransport(loop) for _ in plans]
    results = await asyncio.gather(
        *(run_stream(clock, t, p, start) for t, p in zip(transports, plans, strict=True))
    )
    for (stream, delivery, finished), transport, plan in zip(
        results, transports, plans, strict=True
    ):
        assert finished
        # Every event in order; the last batch (the last event, and any late ones due with it)
        # is left for the handler, which ends the response with it.
        written = b"".join(unchunk(data) for _, data in transport.writes)
        assert written + b"".join(stream.pending) == b"".join(b"e%d;" % i for i in range(60))
        assert stream.pending[-1] == b"e59;"
        dues = [start + event.offset for event in plan.events]
        for when, data in transport.writes:
            first = int(unchunk(data).split(b";")[0][1:])
            # Never early (beyond the loop clock's rounding), and late wake-ups do not add up:
            # every write is measured against its own absolute deadline.
            assert when >= dues[first] - DUE_EARLY - 1e-6
            assert when - dues[first] < 0.25
        # Each write is accounted at its tick's time, taken just before it went out.
        assert len(delivery.token_writes) == len(transport.writes)
        for stamped, (when, _) in zip(delivery.token_writes, transport.writes, strict=True):
            assert 0 <= when - stamped < 0.01
        assert delivery.tokens == 60 - len(stream.pending)


async def test_events_due_together_go_out_in_one_write() -> None:
    loop = asyncio.get_running_loop()
    clock = StreamClock(loop)
    transport = RecordingTransport(loop)
    plan = plan_of([0.01, 0.01, 0.01, 0.02, 0.02])
    stream, _, finished = await run_stream(clock, transport, plan, loop.time())
    assert finished
    assert [unchunk(data) for _, data in transport.writes] == [b"e0;e1;e2;"]
    assert stream.pending == [b"e3;", b"e4;"]


async def test_one_timer_serves_every_stream_due_in_the_same_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    clock = StreamClock(loop)
    timers = 0
    call_at = loop.call_at

    def counting_call_at(when: float, callback, *args):  # type: ignore[no-untyped-def]
        nonlocal timers
        timers += 1
        return call_at(when, callback, *args)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    start = loop.time()
    plan_offsets = [0.05 + i * 0.004 for i in range(10)]
    streams = 200
    await asyncio.gather(
        *(
            run_stream(clock, RecordingTransport(loop), plan_of(plan_offsets), start)
            for _ in range(streams)
        )
    )
    # 200 streams x 9 waits each would be 1,800 timers; the clock arms about one per step.
    assert timers <= 3 * len(plan_offsets)


async def test_a_slow_client_goes_back_to_the_handler_with_its_batch() -> None:
    loop = asyncio.get_running_loop()
    clock = StreamClock(loop)
    transport = RecordingTransport(loop, buffered=MAX_WRITE_BYTES + 1)
    stream, delivery, finished = await run_stream(
        clock, transport, plan_of([0.005, 0.5, 0.6]), loop.time()
    )
    assert not finished
    assert transport.writes == []
    # The handler writes the due batch through Sanic's flow control.
    assert stream.pending[0] == b"e0;"
    assert delivery.tokens == 0


async def test_a_closing_connection_goes_back_to_the_handler() -> None:
    loop = asyncio.get_running_loop()
    clock = StreamClock(loop)
    transport = RecordingTransport(loop, closing=True)
    _, _, finished = await run_stream(clock, transport, plan_of([0.005, 0.5]), loop.time())
    assert not finished
    assert transport.writes == []


async def test_a_cancelled_stream_leaves_the_clock_and_others_go_on() -> None:
    loop = asyncio.get_running_loop()
    clock = StreamClock(loop)
    start = loop.time()
    offsets = [0.005 + i * 0.005 for i in range(8)]
    gone, staying = RecordingTransport(loop), RecordingTransport(loop)
    leaving = asyncio.ensure_future(run_stream(clock, gone, plan_of(offsets), start))
    remaining = asyncio.ensure_future(run_stream(clock, staying, plan_of(offsets), start))
    await asyncio.sleep(0.012)
    leaving.cancel()  # what Sanic does when the client disconnects
    written_before = len(gone.writes)
    _, _, finished = await remaining
    assert finished
    assert leaving.cancelled()
    assert len(gone.writes) == written_before
    assert len(staying.writes) > 0


async def test_a_batch_stops_growing_when_its_turn_is_over_but_takes_one_event() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    stream = _Stream(
        FakeRequest(RecordingTransport(loop)),  # type: ignore[arg-type]
        plan_of([0.0] * 10),
        start,
        Delivery(),
    )
    # A turn already over still takes one event: every turn makes progress.
    assert not stream.collect(start + DUE_EARLY, until=0.0)
    assert stream.pending == [b"e0;"]
    # With time left, all that is due, and the plan is exhausted.
    assert stream.collect(start + DUE_EARLY, until=math.inf)
    assert len(stream.pending) == 10
