"""The timed-plan emitter: writes a plan of (due offset, bytes) events to a client.

Every event is due at ``arrival + offset`` on the event loop's monotonic clock. Sleeping until an
absolute deadline (rather than chaining relative sleeps) keeps late wake-ups from accumulating.
Events already due go out in one write; otherwise each step is its own write, so a client sees
one token per read, as from vLLM. A client that disconnects cancels the handler task (Sanic does
that in ``connection_lost``), which ends the plan at the next await.

The emitter also notes when tokens actually went out (``Delivery``), so that metrics report what
clients saw rather than what was planned.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sanic import HTTPResponse, Request
from sanic.response import raw

from .plan import ResponsePlan
from .protocol.responses import JSON_CONTENT_TYPE
from .protocol.sse import SSE_CONTENT_TYPE

# Whatever the app and its context: the emitter only writes to the connection.
AnyRequest = Request[Any, Any]
# Bound on one write when many events are due at once (instant mode, large n).
MAX_WRITE_BYTES = 64 * 1024
# Longest the emitter computes events without giving the loop back (events already due, as in
# instant mode, are built back to back: a long answer would hold the worker). Shared by the
# streams of a worker, so that a round of all of them stays about this long and other requests
# (/health) wait for a few rounds, not a few hundred slices; at least MIN_SLICE_SECONDS each.
SLICE_SECONDS = 0.002
MIN_SLICE_SECONDS = 0.0001


class _Streams:
    """Streams being written by this worker (its loop is single-threaded: a plain count)."""

    active = 0


# A dropped connection cancels the handler once its buffer is flushed; Sanic aborts a
# connection that does not close within GRACEFUL_TCP_CLOSE_TIMEOUT (5 s), so this is a backstop.
DROP_GRACE_SECONDS = 30.0


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


async def deliver(
    request: AnyRequest, plan: ResponsePlan, start: float, delivery: Delivery
) -> HTTPResponse | None:
    """Answer ``request`` with ``plan``, its offsets counted from ``start`` (loop time)."""
    try:
        if plan.stream:
            await stream_events(request, plan, start, delivery)
            return None
        await sleep_until(start + max(plan.body_offset, plan.headers_offset))
        delivery.end = asyncio.get_running_loop().time()
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
    request: AnyRequest, plan: ResponsePlan, start: float, delivery: Delivery
) -> None:
    if plan.headers_offset:
        await sleep_until(start + plan.headers_offset)
    response = await request.respond(content_type=SSE_CONTENT_TYPE, headers=dict(plan.headers))
    # Headers go out now, before the first token, as vLLM's StreamingResponse does.
    await response.send(b"")
    _Streams.active += 1
    try:
        await _write_events(response, plan, start, delivery)
    finally:
        _Streams.active -= 1
    if plan.drop_connection:
        await drop_connection(request)


async def _write_events(
    response: HTTPResponse, plan: ResponsePlan, start: float, delivery: Delivery
) -> None:
    clock = asyncio.get_running_loop().time
    token_writes = delivery.token_writes
    pending: list[bytes] = []
    pending_bytes = pending_tokens = 0
    resumed = clock()
    for offset, data, tokens in plan.events:
        deadline = start + offset
        now = clock()
        if pending and (deadline > now or pending_bytes >= MAX_WRITE_BYTES):
            await response.send(b"".join(pending))
            if pending_tokens:
                token_writes.append(now)
                delivery.tokens += pending_tokens
            pending.clear()
            pending_bytes = pending_tokens = 0
        if deadline > now:
            # Inline rather than through sleep_until: one coroutine less per token.
            await asyncio.sleep(deadline - now)
            resumed = clock()
        elif now - resumed > max(SLICE_SECONDS / _Streams.active, MIN_SLICE_SECONDS):
            await asyncio.sleep(0)
            resumed = clock()
        pending.append(data)
        pending_bytes += len(data)
        pending_tokens += tokens
    delivery.end = now = clock()
    if pending_tokens:
        token_writes.append(now)
        delivery.tokens += pending_tokens
    if plan.drop_connection:
        await response.send(b"".join(pending))
        return
    await response.send(b"".join(pending), end_stream=True)
    delivery.complete = True


async def drop_connection(request: AnyRequest) -> None:
    """Close the connection without ending the response, as a crashed server would."""
    # Sanic flushes what was written, closes, then cancels this handler from connection_lost.
    request.protocol.close()
    await asyncio.sleep(DROP_GRACE_SECONDS)
