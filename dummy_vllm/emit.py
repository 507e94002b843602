"""The timed-plan emitter: writes a plan of (due offset, bytes) events to a client.

Every event is due at ``arrival + offset`` on the event loop's monotonic clock. Deadlines are
absolute, so late wake-ups never accumulate. Events already due go out in one write; otherwise
each step is its own write, so a client sees one token per read, as from vLLM.

Streams wait on one ``StreamClock`` per worker instead of a timer each: the clock keeps the
waiting streams in millisecond slots, wakes once per slot that has streams due, and writes
each of them straight to its connection. The handler's task sleeps until its stream ends (or
the client reads too slowly, when writes go back through Sanic, which waits for the socket to
drain), so thousands of streams cost one timer and no task switch per token. A client that
disconnects cancels the handler task (Sanic does that in ``connection_lost``), which takes its
stream off the clock.

The emitter also notes when tokens actually went out (``Delivery``), so that metrics report what
clients saw rather than what was planned.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from heapq import heappop, heappush
from time import perf_counter
from typing import Any, cast

from sanic import HTTPResponse, Request
from sanic.http import Http
from sanic.response import raw

from .plan import PlanEvent, ResponsePlan
from .protocol.responses import JSON_CONTENT_TYPE
from .protocol.sse import SSE_CONTENT_TYPE

# Whatever the app and its context: the emitter only writes to the connection.
AnyRequest = Request[Any, Any]
# Bound on one write when many events are due at once (instant mode, large n); also how much
# may wait in a connection's buffer before writes go back through Sanic's flow control.
MAX_WRITE_BYTES = 64 * 1024
# Longest the emitter computes events without giving the loop back (events already due, as in
# instant mode, are built back to back: a long answer would hold the worker). Shared by the
# streams of a worker, so that a round of all of them stays about this long and other requests
# (/health) wait for a few rounds, not a few hundred slices; at least MIN_SLICE_SECONDS each.
# Measured on perf_counter: uvloop's clock reads whole milliseconds, and shares under one ran
# until it ticked (8-19 ms rounds with 100 instant streams a worker; BOMBS_RESULTS.md).
SLICE_SECONDS = 0.002
MIN_SLICE_SECONDS = 0.00005


class _Streams:
    """Streams being written by this worker (its loop is single-threaded: a plain count)."""

    active = 0


# A dropped connection cancels the handler once its buffer is flushed; Sanic aborts a
# connection that does not close within GRACEFUL_TCP_CLOSE_TIMEOUT (5 s), so this is a backstop.
DROP_GRACE_SECONDS = 30.0
# uvloop's clock and timers tick in whole milliseconds and round a timer's delay to the nearest
# one, so a timer fires up to half a millisecond before its deadline: an event is due then.
DUE_EARLY = 0.0005


@dataclass(slots=True)
class Delivery:
    """What a client was sent, and when (loop time), filled in as the emitter writes."""

    # When each write carrying tokens went out: a stream's TTFT and inter-token gaps.
    token_writes: list[float] = field(default_factory=list)
    tokens: int = 0
    # The last write (the end of a stream, a non-streamed answer's body), or when the client
    # left.
    end: float = 0.0
    # The whole plan went out (False when the client left or the connection was dropped).
    complete: bool = False


async def sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


class _Stream:
    """A stream being written: its remaining events and the batch due to go out next."""

    __slots__ = (
        "delivery",
        "due",
        "events",
        "pending",
        "pending_bytes",
        "pending_tokens",
        "start",
        "transport",
        "upcoming",
        "waiter",
    )

    def __init__(self, request: AnyRequest, plan: ResponsePlan, start: float, delivery: Delivery):
        # uvloop's transport, which asyncio's class describes (it does not subclass it).
        self.transport = cast(asyncio.Transport, request.transport)
        self.events: Iterator[PlanEvent] = iter(plan.events)
        self.start = start
        self.delivery = delivery
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.pending_tokens = 0
        # The next event not yet in the batch, and its deadline (loop time).
        self.upcoming = next(self.events, None)
        self.due = start + self.upcoming.offset if self.upcoming is not None else 0.0
        # Set while the clock writes this stream: resolves True at the end of the plan, False
        # when the handler must write (slow client, closing connection).
        self.waiter: asyncio.Future[bool] | None = None

    def collect(self, horizon: float, until: float = math.inf) -> bool:
        """Batch the events due by ``horizon`` (up to MAX_WRITE_BYTES, and no more once
        ``perf_counter()`` passes ``until``, though always one); True once the plan is exhausted,
        its last batch pending."""
        event = self.upcoming
        while event is not None and self.due <= horizon:
            if self.pending_bytes >= MAX_WRITE_BYTES or (self.pending and perf_counter() > until):
                return False
            self.pending.append(event.data)
            self.pending_bytes += len(event.data)
            self.pending_tokens += event.tokens
            event = self.upcoming = next(self.events, None)
            if event is not None:
                self.due = self.start + event.offset
        return event is None

    def take(self, now: float) -> bytes:
        """The pending batch, accounted as written at ``now``."""
        data = b"".join(self.pending)
        if self.pending_tokens:
            self.delivery.token_writes.append(now)
            self.delivery.tokens += self.pending_tokens
        self.pending.clear()
        self.pending_bytes = self.pending_tokens = 0
        return data


class StreamClock:
    """One per worker: the streams waiting for their next event, in slots of one millisecond
    (the loop clock's resolution), and one timer for the earliest slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, list[_Stream]] = {}
        # The occupied slots' keys, earliest first.
        self._keys: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        # The slot the timer is armed for; -inf while a tick runs (it arms once, at its end).
        self._timer_key = math.inf

    async def hand_over(self, stream: _Stream) -> bool:
        """Let the clock write ``stream`` from its next deadline on; True at the end of the
        plan (the last batch pending), False when the handler must write the pending batch."""
        stream.waiter = waiter = self._loop.create_future()
        self._add(stream)
        try:
            finished: bool = await waiter
            return finished
        finally:
            stream.waiter = None

    def _add(self, stream: _Stream) -> None:
        # The millisecond the deadline rounds to, as a loop timer for it would fire.
        key = math.floor(stream.due * 1000 + 0.5)
        slot = self._slots.get(key)
        if slot is not None:
            slot.append(stream)
            return
        self._slots[key] = [stream]
        heappush(self._keys, key)
        if key < self._timer_key:
            self._arm(key)

    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(key / 1000, self._tick)
        self._timer_key = key

    def _tick(self) -> None:
        self._timer, self._timer_key = None, -math.inf
        now = self._loop.time()
        # The millisecond now is in (uvloop's clock reads whole ones; the nudge absorbs their
        # float rounding): its slot and the earlier ones hold the deadlines due by the horizon.
        now_key = math.floor(now * 1000 + 1e-6)
        horizon = now + DUE_EARLY
        keys, slots = self._keys, self._slots
        due: list[_Stream] = []
        while keys and keys[0] <= now_key:
            due += slots.pop(heappop(keys))
        for stream in due:
            # A stream whose handler was cancelled (client gone) is dropped here.
            if stream.waiter is not None and not stream.waiter.done():
                self._advance(stream, now, horizon)
        self._timer_key = math.inf
        if keys:
            # Never this millisecond again: a deadline within rounding of it waits one more.
            self._arm(max(keys[0], now_key + 1))

    def _advance(self, stream: _Stream, now: float, horizon: float) -> None:
        transport = stream.transport
        while True:
            if stream.collect(horizon):
                return self._release(stream, True)
            if not stream.pending:
                return self._add(stream)
            if transport.is_closing() or transport.get_write_buffer_size() > MAX_WRITE_BYTES:
                return self._release(stream, False)
            data = stream.take(now)
            if data:
                # Sanic's chunked framing (Http.http1_response_chunked), without its coroutine.
                transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    @staticmethod
    def _release(stream: _Stream, finished: bool) -> None:
        assert stream.waiter is not None
        stream.waiter.set_result(finished)


async def deliver(
    request: AnyRequest,
    plan: ResponsePlan,
    start: float,
    delivery: Delivery,
    clock: StreamClock | None = None,
) -> HTTPResponse | None:
    """Answer ``request`` with ``plan``, its offsets counted from ``start`` (loop time); streams
    wait on ``clock`` when given, else on a timer each."""
    try:
        if plan.stream:
            await stream_events(request, plan, start, delivery, clock)
            return None
        loop = asyncio.get_running_loop()
        delay = start + max(plan.body_offset, plan.headers_offset) - loop.time()
        if delay > 0:  # inline: an instant answer creates no sleeping coroutine
            await asyncio.sleep(delay)
        delivery.end = loop.time()
        if plan.drop_connection:
            await drop_connection(request)
            return None
        delivery.tokens = plan.completion_tokens
        delivery.complete = True
        return raw(
            plan.body,
            status=plan.status,
            headers=dict(plan.headers),
            content_type=JSON_CONTENT_TYPE,
        )
    finally:
        if not delivery.end:  # abandoned before the end: when the client left
            delivery.end = asyncio.get_running_loop().time()


async def stream_events(
    request: AnyRequest,
    plan: ResponsePlan,
    start: float,
    delivery: Delivery,
    clock: StreamClock | None = None,
) -> None:
    if plan.headers_offset:
        await sleep_until(start + plan.headers_offset)
    response = await request.respond(content_type=SSE_CONTENT_TYPE, headers=dict(plan.headers))
    # Headers go out now, before the first token, as vLLM's StreamingResponse does.
    await response.send(b"")
    http = request.stream
    # The clock writes chunked framing itself; any other framing (an HTTP/1.0 client) goes
    # through Sanic.
    if not isinstance(http, Http) or http.response_func != http.http1_response_chunked:
        clock = None
    _Streams.active += 1
    try:
        last = await _write_events(response, _Stream(request, plan, start, delivery), clock)
    finally:
        _Streams.active -= 1
    if plan.drop_connection:
        await response.send(last)
        await drop_connection(request)
        return
    await response.send(last, end_stream=True)
    delivery.complete = True


async def _write_events(
    response: HTTPResponse, stream: _Stream, clock: StreamClock | None
) -> bytes:
    """Write ``stream`` up to its last batch, which is returned unwritten."""
    loop_time = asyncio.get_running_loop().time
    share_end = _share_end()
    while True:
        now = loop_time()
        if stream.collect(now + DUE_EARLY, share_end):
            break
        if stream.pending:
            await response.send(stream.take(now))
            # Sending does not yield while the socket takes the bytes: events already due are
            # built back to back, so give the loop back once this stream's share is used.
            if perf_counter() > share_end:
                await asyncio.sleep(0)
                share_end = _share_end()
            continue
        if clock is None:
            await asyncio.sleep(stream.due - now)
        elif await clock.hand_over(stream):
            break
        share_end = _share_end()
    stream.delivery.end = now = loop_time()
    return stream.take(now)


def _share_end() -> float:
    """When the turn starting now ends (perf_counter)."""
    return perf_counter() + max(SLICE_SECONDS / max(_Streams.active, 1), MIN_SLICE_SECONDS)


async def drop_connection(request: AnyRequest) -> None:
    """Close the connection without ending the response, as a crashed server would."""
    # Sanic flushes what was written, closes, then cancels this handler from connection_lost.
    request.protocol.close()
    await asyncio.sleep(DROP_GRACE_SECONDS)
