"""What every planned answer goes through, whatever produced it: fault injection, the
scheduler's limits and load, timed delivery, and the metrics of what the client saw."""

from __future__ import annotations

import asyncio

from sanic import HTTPResponse

from .emit import AnyRequest, Delivery, StreamClock, deliver
from .faults import FAULT_HEADER, FaultInjector
from .metrics import Metrics
from .plan import ResponsePlan
from .protocol.requests import ServedModel
from .scheduler import Scheduler, stretched

# What vLLM's sleep mode offloads or discards, and /wake_up's tags name.
SLEEPING_PARTS = ("weights", "kv_cache")


class Pipeline:
    """One per worker."""

    def __init__(
        self, scheduler: Scheduler, metrics: Metrics, faults: FaultInjector, served: ServedModel
    ) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self.faults = faults
        # The era and context length injected errors are shaped and worded for.
        self.served = served
        # Built in the worker's running loop (the app's before_server_start).
        self.clock = StreamClock(asyncio.get_running_loop())
        # Requests being answered, for /load (vLLM's server_load).
        self.in_flight = 0
        # Cleared while any part of the engine sleeps (/sleep, /wake_up).
        self.awake = asyncio.Event()
        self.awake.set()
        self._asleep: set[str] = set()

    def sleep(self) -> None:
        """Put the weights and the KV cache to sleep: new requests wait until both wake."""
        self._asleep = set(SLEEPING_PARTS)
        self.awake.clear()

    def wake_up(self, tags: list[str] | None) -> bool:
        """Wake the parts named (all without tags); True once nothing sleeps."""
        self._asleep -= set(SLEEPING_PARTS if tags is None else tags)
        if not self._asleep:
            self.awake.set()
        return not self._asleep

    async def serve(
        self, request: AnyRequest, plan: ResponsePlan, arrival: float
    ) -> HTTPResponse | None:
        """Answer ``request`` with ``plan`` once the scheduler admits it; offsets count from
        admission, so time spent waiting shows in the client's TTFT. A sleeping server holds
        new requests until it wakes, as vLLM's paused scheduler does."""
        self.in_flight += 1
        try:
            if not self.awake.is_set():
                await self.awake.wait()
            fault = self.faults.choose(request.headers.get(FAULT_HEADER))
            if fault is not None:
                self.metrics.fault_injected(fault.kind)
                error = fault.error(self.served.profile, self.served.max_model_len)
                if error is not None:
                    raise error
            scheduler = self.scheduler
            if not scheduler.try_acquire():
                await scheduler.acquire()
            try:
                admitted = asyncio.get_running_loop().time()
                if scheduler.settings.load_factor:
                    plan = stretched(plan, scheduler.load_multiplier())
                if fault is not None:
                    plan = fault.apply(plan, self.served.profile, request.path)
                held = plan.prompt_tokens + plan.completion_tokens
                scheduler.kv_tokens += held
                delivery = Delivery()
                try:
                    return await deliver(request, plan, admitted, delivery, self.clock)
                finally:
                    scheduler.kv_tokens -= held
                    self.metrics.request_finished(plan, delivery, arrival, admitted)
            finally:
                scheduler.release()
        finally:
            self.in_flight -= 1
