"""vLLM-like admission: a bounded batch of running requests with a FIFO queue before it.

Each Sanic worker schedules on its own, like one vLLM engine: the limits hold per worker, so W
workers run up to W x ``max_num_seqs`` requests. Keeping them global would need a lock shared
across processes on every request.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from contextlib import suppress

from .plan import PlanEvent, ResponsePlan
from .protocol.errors import too_many_requests
from .settings import SchedulerSettings


class Scheduler:
    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.running = 0
        # Prompt and output tokens of the running requests: the KV cache they hold.
        self.kv_tokens = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a running slot if one is free and nobody waits for it: no coroutine then."""
        limit = self.settings.max_num_seqs
        if limit is None or (self.running < limit and not self._waiters):
            self.running += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a running slot, waiting in arrival order for one; 429 when the queue is full."""
        if self.try_acquire():
            return
        max_waiting = self.settings.max_waiting
        if max_waiting is not None and len(self._waiters) >= max_waiting:
            raise too_many_requests(
                f"The server is overloaded: {max_waiting} requests are already waiting. "
                "Please retry later."
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                # ``release`` may have skipped and dropped it already.
                with suppress(ValueError):
                    self._waiters.remove(waiter)
            else:
                # The slot was handed over just as the client left: pass it on.
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # The slot goes straight to the oldest waiter, so newcomers cannot jump the queue.
                waiter.set_result(None)
                return
        self.running -= 1

    def load_multiplier(self) -> float:
        """How much batching stretches TTFT and ITL for the requests running now."""
        settings = self.settings
        return 1.0 + settings.load_factor * self.running / settings.batch_size


def stretched(plan: ResponsePlan, factor: float) -> ResponsePlan:
    """``plan`` with its timing multiplied by ``factor``: TTFT and every ITL grow alike."""
    if factor == 1.0:
        return plan
    if plan.stream:
        events = (PlanEvent(offset * factor, data, tokens) for offset, data, tokens in plan.events)
        return dataclasses.replace(plan, events=events)
    return dataclasses.replace(
        plan,
        body_offset=plan.body_offset * factor,
        token_offsets=[offset * factor for offset in plan.token_offsets],
    )
