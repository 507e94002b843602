"""The timed-plan emitter: writes a plan of (due offset, bytes) events to a client.

Every event is due at ``arrival + offset`` on the event loop's monotonic clock. Sleeping until an
absolute deadline (rather than chaining relative sleeps) keeps late wake-ups from accumulating.
Events already due go out in one write; otherwise each step is its own write, so a client sees
one token per read, as from vLLM. A client that disconnects cancels the handler task (Sanic does
that in ``connection_lost``), which ends the plan at the next await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from sanic import HTTPResponse, Request
from sanic.response import raw

from .plan import PlanEvent, ResponsePlan
from .protocol.responses import JSON_CONTENT_TYPE, SSE_CONTENT_TYPE

# Bound on one write when many events are due at once (instant mode, large n).
MAX_WRITE_BYTES = 64 * 1024


async def sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def deliver(request: Request, plan: ResponsePlan, start: float) -> HTTPResponse | None:
    """Answer ``request`` with ``plan``, its offsets counted from ``start`` (loop time)."""
    if plan.stream:
        await stream_events(request, plan.events, start, plan.headers)
        return None
    await sleep_until(start + plan.body_offset)
    return raw(
        plan.body, status=plan.status, headers=dict(plan.headers), content_type=JSON_CONTENT_TYPE
    )


async def stream_events(
    request: Request,
    events: Iterable[PlanEvent],
    start: float,
    headers: Mapping[str, str],
) -> None:
    response = await request.respond(content_type=SSE_CONTENT_TYPE, headers=dict(headers))
    # Headers go out now, before the first token, as vLLM's StreamingResponse does.
    await response.send(b"")
    clock = asyncio.get_running_loop().time
    pending: list[bytes] = []
    pending_bytes = 0
    for offset, data, _ in events:
        deadline = start + offset
        if deadline > clock():
            if pending:
                await response.send(b"".join(pending))
                pending.clear()
                pending_bytes = 0
            await sleep_until(deadline)
        pending.append(data)
        pending_bytes += len(data)
        if pending_bytes >= MAX_WRITE_BYTES:
            await response.send(b"".join(pending))
            pending.clear()
            pending_bytes = 0
    await response.send(b"".join(pending), end_stream=True)
